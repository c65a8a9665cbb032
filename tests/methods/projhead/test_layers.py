"""Per-layer extraction: the right layers, shapes and values, hooks removed, modes restored."""

import pytest
import torch
from torch import nn

from methods.projhead import ReweightHead, backbone_stages, build_head, extract_layers, image_batches, layer_names
from shared.backbones import SmallConvNet, cifar_resnet


def _net():
    torch.manual_seed(0)
    return SmallConvNet(1, (8, 16, 32)), build_head("mlp", 32, 16, 8)


def test_names_and_shapes_for_each_head():
    backbone, mlp = _net()
    x = torch.randn(5, 1, 28, 28)
    feats = extract_layers(backbone, mlp, [x[:3], x[3:]])
    assert list(feats) == layer_names(backbone, mlp) == ["stage1", "stage2", "stage3", "head1", "head_out"]
    assert [tuple(f.shape) for f in feats.values()] == [(5, 8), (5, 16), (5, 32), (5, 16), (5, 8)]
    assert layer_names(backbone, nn.Identity()) == ["stage1", "stage2", "stage3"]
    assert layer_names(backbone, ReweightHead(32)) == ["stage1", "stage2", "stage3", "head_out"]
    assert list(extract_layers(backbone, nn.Identity(), [x])) == ["stage1", "stage2", "stage3"]


def test_values_are_the_networks_own_activations():
    backbone, mlp = _net()
    backbone.train(), mlp.train()
    x = torch.randn(4, 1, 28, 28)
    feats = extract_layers(backbone, mlp, [x])
    assert backbone.training and mlp.training  # modes restored
    assert not any(m._forward_hooks for m in backbone.modules()) and not any(m._forward_hooks for m in mlp.modules())
    backbone.eval(), mlp.eval()
    with torch.no_grad():
        h = backbone(x)
        assert torch.allclose(feats["stage3"], h, atol=1e-6)  # the last stage is the pre-projection h
        assert torch.allclose(feats["head1"], torch.relu(mlp[1](mlp[0](h))), atol=1e-6)
        assert torch.allclose(feats["head_out"], mlp(h), atol=1e-6)
        first = backbone.features[2](backbone.features[1](backbone.features[0](x)))  # conv-BN-ReLU, before pool
        assert torch.allclose(feats["stage1"], first.mean(dim=(2, 3)), atol=1e-6)


def test_image_batches_preprocess_and_cover_all_images():
    images = torch.randint(0, 256, (10, 1, 28, 28), dtype=torch.uint8)
    batches = list(image_batches(images, lambda u: u.float() / 255, batch_size=4, channels_last=True))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert batches[0].is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(torch.cat(batches), images.float() / 255)


def test_resnet_stages():
    net = cifar_resnet(18, 3)
    assert backbone_stages(net) == [net.layer1, net.layer2, net.layer3, net.layer4]
    feats = extract_layers(net, build_head("mlp", 512, 32, 16), [torch.randn(2, 3, 32, 32)])
    assert [f.shape[1] for f in feats.values()] == [64, 128, 256, 512, 32, 16]


def test_unknown_backbone():
    with pytest.raises(TypeError, match="no stage definition"):
        backbone_stages(nn.Linear(3, 3))
