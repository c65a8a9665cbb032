"""The prototype layer: unit rows, scores, the freeze switch, float32 under autocast, errors."""

import pytest
import torch
import torch.nn.functional as F

from shared.prototypes import Prototypes


def test_normalize_gives_unit_rows_and_scores_are_cosines():
    protos = Prototypes(8, 5)
    assert not torch.allclose(protos.weight.norm(dim=1), torch.ones(5))
    protos.normalize_()
    assert torch.allclose(protos.weight.norm(dim=1), torch.ones(5), atol=1e-6)
    z = F.normalize(torch.randn(4, 8), dim=1)
    scores = protos(z)
    assert scores.shape == (4, 5)
    assert torch.allclose(scores, z @ protos.weight.T, atol=1e-6)
    assert scores.abs().max() <= 1 + 1e-6


def test_frozen_prototypes_get_no_grad_but_embeddings_do():
    protos = Prototypes(6, 4, freeze_iters=2)
    z = torch.randn(3, 6, requires_grad=True)
    assert protos.frozen
    protos(z).sum().backward()
    assert protos.weight.grad is None
    assert z.grad is not None and z.grad.abs().sum() > 0
    protos.step()
    assert protos.frozen and int(protos.iteration) == 1
    protos.set_iteration(2)
    assert not protos.frozen
    protos(z).sum().backward()
    assert protos.weight.grad is not None and protos.weight.grad.abs().sum() > 0


def test_frozen_prototypes_do_not_move_under_sgd():
    protos = Prototypes(6, 4, freeze_iters=1)
    opt = torch.optim.SGD(protos.parameters(), lr=1.0, momentum=0.9, weight_decay=1e-2)
    before = protos.weight.detach().clone()
    protos(torch.randn(3, 6, requires_grad=True)).sum().backward()
    opt.step()
    assert torch.equal(before, protos.weight)


def test_iteration_is_saved_in_the_state_dict():
    protos = Prototypes(4, 3, freeze_iters=10)
    protos.set_iteration(7)
    other = Prototypes(4, 3, freeze_iters=10)
    other.load_state_dict(protos.state_dict())
    assert int(other.iteration) == 7 and torch.equal(other.weight, protos.weight)


def test_float32_scores_under_bf16_autocast():
    protos = Prototypes(8, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        scores = protos(torch.randn(4, 8).bfloat16())
    assert scores.dtype == torch.float32


@pytest.mark.parametrize(
    ("args", "match"),
    [((0, 3), "dim"), ((4, 0), "num_prototypes"), ((4, 3, -1), "freeze_iters"), ((4.0, 3), "dim")],
)
def test_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        Prototypes(*args)


def test_bad_embedding_shape():
    with pytest.raises(ValueError, match=r"\(batch, 4\)"):
        Prototypes(4, 3)(torch.randn(2, 5))
