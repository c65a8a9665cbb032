"""SmallConvNet's ``num_pools`` option and its ``feature_maps`` (backward compatible with the default net)."""

import pytest
import torch

from shared.backbones import SmallConvNet, build_backbone


def test_default_net_is_unchanged():
    net = SmallConvNet(1)
    assert [type(m).__name__ for m in net.features].count("MaxPool2d") == 3
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, 256)
    assert list(net.state_dict())[:3] == ["features.0.weight", "features.1.weight", "features.1.bias"]
    assert build_backbone("convnet", 1).stage_dims == (32, 64, 128, 256)


def test_feature_maps_are_the_blocks_outputs():
    torch.manual_seed(0)
    net = SmallConvNet(1, (4, 8, 8, 16), num_pools=2).eval()
    x = torch.randn(2, 1, 28, 28)
    maps = net.feature_maps(x)
    assert [tuple(m.shape) for m in maps] == [(2, 4, 28, 28), (2, 8, 14, 14), (2, 8, 7, 7), (2, 16, 7, 7)]
    assert torch.allclose(maps[-1].mean(dim=(2, 3)), net(x), atol=1e-6)  # forward = pooled last map
    last_two = net.feature_maps(x, (-2, -1))
    assert all(torch.equal(a, b) for a, b in zip(last_two, maps[2:], strict=True))
    assert build_backbone("convnet", 1, (4, 8), num_pools=0).feature_maps(x)[1].shape == (2, 8, 28, 28)


def test_errors():
    with pytest.raises(ValueError, match="num_pools"):
        SmallConvNet(1, (4, 8), num_pools=2)
    with pytest.raises(ValueError, match="stages"):
        SmallConvNet(1, (4, 8)).feature_maps(torch.randn(1, 1, 8, 8), (2,))
