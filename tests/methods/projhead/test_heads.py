"""The fixed re-weighting head against its equation w_i = κ^{-i}; the head factory."""

import pytest
import torch
from torch import nn

from methods.projhead import ReweightHead, build_head, reweight_weights


def test_weights_follow_the_equation():
    kappa, d = 1.05, 7
    expected = torch.tensor([kappa ** (-i) for i in range(d)], dtype=torch.float64)
    assert torch.allclose(reweight_weights(d, kappa).double(), expected, rtol=1e-6)
    assert reweight_weights(3, 2.0).tolist() == [1.0, 0.5, 0.25]


def test_head_scales_each_coordinate_and_is_not_trainable():
    head = ReweightHead(5, kappa=2.0)
    h = torch.randn(4, 5, requires_grad=True)
    z = head(h)
    for i in range(5):
        assert torch.allclose(z[:, i], h[:, i] / 2.0**i)
    assert list(head.parameters()) == []  # nothing for the optimiser
    assert not head.weights.requires_grad and "weights" in head.state_dict()
    z.sum().backward()
    assert torch.allclose(h.grad, head.weights.expand(4, 5))  # gradient reaches the encoder only


def test_head_is_invertible_and_kappa_one_is_identity():
    head = ReweightHead(256, kappa=1.05)
    h = torch.randn(8, 256, dtype=torch.float64)
    assert torch.allclose(head.invert(head(h)), h, rtol=1e-5)
    assert torch.equal(ReweightHead(6, kappa=1.0)(h[:, :6].float()), h[:, :6].float())


def test_bf16_input_keeps_its_dtype():
    z = ReweightHead(4)(torch.randn(2, 4).bfloat16())
    assert z.dtype == torch.bfloat16


def test_build_head_shapes():
    h = torch.randn(6, 32)
    assert build_head("mlp", 32, 16, 8)(h).shape == (6, 8)
    assert build_head("reweight", 32)(h).shape == (6, 32)
    assert isinstance(build_head("none", 32), nn.Identity)
    assert build_head("mlp", 32)(h).shape == (6, 128)  # SimCLR's 256 → 128 by default
    assert build_head("reweight", 32, kappa=2.0).weights[1] == 0.5


@pytest.mark.parametrize(
    "call, err",
    [
        (lambda: reweight_weights(0, 1.05), "dim must be positive"),
        (lambda: reweight_weights(4, 0.9), "kappa must be >= 1"),
        (lambda: ReweightHead(4)(torch.randn(2, 5)), r"expected \(N, 4\)"),
        (lambda: build_head("attention", 4), "unknown head"),
        (lambda: build_head("reweight", 4, 16, 8), "hidden and out size the 'mlp' head only"),
        (lambda: build_head("reweight", 4, out=8), r"got hidden=None, out=8"),
        (lambda: build_head("none", 4, hidden=16), "'none' head keeps the encoder's dimension"),
    ],
)
def test_errors(call, err):
    with pytest.raises(ValueError, match=err):
        call()
