"""Per-layer representations of an encoder + head, extracted once for the layer-wise probes.

Layers, in order of depth:

* ``stage1 … stageK`` — the output of each backbone stage, global-average-pooled to a vector
  (ConvNet: after each conv–BN–ReLU block, before its max-pool; ResNet: after each of
  ``layer1 … layer4``). The last stage, pooled, is exactly the backbone output h
  (the *pre-projection* representation).
* ``head1 … `` — inside an MLP head, the output of each hidden Linear–BN–ReLU block;
* ``head_out`` — the head's output z (the *post-projection* representation; absent without a head).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch
from torch import nn

from shared.backbones import SmallConvNet


def backbone_stages(backbone: nn.Module) -> list[nn.Module]:
    """The modules whose outputs are the backbone's stages (ConvNet ReLUs, ResNet ``layer1..4``)."""
    if isinstance(backbone, SmallConvNet):
        return [m for m in backbone.features if isinstance(m, nn.ReLU)]
    if all(hasattr(backbone, f"layer{i}") for i in range(1, 5)):
        return [getattr(backbone, f"layer{i}") for i in range(1, 5)]
    raise TypeError(f"no stage definition for backbone {type(backbone).__name__}; use SmallConvNet or a ResNet")


def head_layers(head: nn.Module) -> list[nn.Module]:
    """The hidden ReLUs of a Sequential MLP head (the output is taken from the head itself)."""
    if isinstance(head, nn.Sequential):
        return [m for m in head if isinstance(m, nn.ReLU)]
    return []


def layer_names(backbone: nn.Module, head: nn.Module) -> list[str]:
    """``stage1 … stageK, head1 … head_out`` for this encoder and head (in depth order)."""
    names = [f"stage{i + 1}" for i in range(len(backbone_stages(backbone)))]
    names += [f"head{i + 1}" for i in range(len(head_layers(head)))]
    if not isinstance(head, nn.Identity):
        names.append("head_out")
    return names


def _pool(x: torch.Tensor) -> torch.Tensor:
    return x.float().mean(dim=(2, 3)) if x.ndim == 4 else x.float()


@torch.no_grad()
def extract_layers(backbone: nn.Module, head: nn.Module, batches: Iterable[torch.Tensor]) -> dict[str, torch.Tensor]:
    """``{layer: (N, d_layer) float32 on the CPU}`` for every layer of :func:`layer_names`, in one pass.

    ``batches`` yields model-ready input tensors; both modules run in eval mode (restored after).
    """
    names = layer_names(backbone, head)
    taps = backbone_stages(backbone) + head_layers(head)
    store: list[list[torch.Tensor]] = [[] for _ in names]
    slot = {id(m): i for i, m in enumerate(taps)}

    def hook(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        store[slot[id(module)]].append(_pool(output).cpu())

    handles = [m.register_forward_hook(hook) for m in taps]
    modes = (backbone.training, head.training)
    backbone.eval()
    head.eval()
    try:
        for x in batches:
            z = head(backbone(x))
            if not isinstance(head, nn.Identity):
                store[-1].append(z.float().cpu())
    finally:
        for h in handles:
            h.remove()
        backbone.train(modes[0])
        head.train(modes[1])
    return {name: torch.cat(parts) for name, parts in zip(names, store, strict=True)}


def image_batches(
    images: torch.Tensor,
    preprocess: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int = 1024,
    device: torch.device | str = "cpu",
    channels_last: bool = False,
) -> Iterator[torch.Tensor]:
    """Model-ready batches of a uint8 (N, C, H, W) tensor."""
    for i in range(0, len(images), batch_size):
        x = preprocess(images[i : i + batch_size].to(device))
        yield x.contiguous(memory_format=torch.channels_last) if channels_last else x
