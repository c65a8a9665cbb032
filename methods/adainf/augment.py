"""AdaInf's augmentation strengths: the solo-learn CIFAR defaults and AdaInf's weaker ones.

From ``solo-learn/scripts/pretrain/cifar/augmentations/*.yaml`` of the official code:

    symmetric (SimCLR, MoCo)        crop min 0.08, jitter p 0.8, (b, c, s, h) = (0.8, 0.8, 0.8, 0.2), blur p 0.5
    symmetric_adainf                crop min 0.2,  jitter p 0.4, (b, c, s, h) = (0.4, 0.4, 0.4, 0.1), blur p 0.5
    asymmetric (BYOL, Barlow)       crop min 0.08, jitter p 0.8, (b, c, s, h) = (0.4, 0.4, 0.2, 0.1), no blur;
                                    solarisation p 0 on view 1, p 0.2 on view 2
    asymmetric_adainf               crop min 0.2,  jitter p 0.4, (b, c, s, h) = (0.4, 0.4, 0.2, 0.1), no blur;
                                    solarisation p 0 on view 1, p 0.2 on view 2

Unchanged in all: grayscale p 0.2, horizontal flip p 0.5, 32 px crops. The symmetric yamls list one
view (both views alike), the asymmetric ones two (``ASYMMETRIC = (view 1, view 2)``). The theory
behind it: inflation adds data, which already improves the connectivity of the augmentation graph, so the labelling
error of strong augmentation is no longer worth paying for — more inflation, weaker augmentation.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.augment import AugmentConfig


@dataclass(frozen=True)
class ViewAugmentation:
    """One yaml of the official code (the parameters AdaInf changes, and those it keeps)."""

    crop_min_scale: float
    jitter_p: float
    brightness: float
    contrast: float
    saturation: float
    hue: float
    grayscale_p: float = 0.2
    blur_p: float = 0.5
    flip_p: float = 0.5
    solarize_p: float = 0.0

    @property
    def jitter(self) -> tuple[float, float, float, float]:
        return (self.brightness, self.contrast, self.saturation, self.hue)

    def to_config(self, image_size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> AugmentConfig:
        """The batched SimCLR augmentation of ``shared.augment`` with these parameters.

        ``shared.augment`` draws jitter as s·(0.8, 0.8, 0.8, 0.2); the symmetric yamls are of that
        form (s = 1 and s = 0.5), the asymmetric ones are not and raise ``ValueError``, as does
        solarisation (not in ``shared.augment``).
        """
        if self.solarize_p > 0:
            raise ValueError(f"solarisation (p {self.solarize_p}) is not one of shared.augment's operations")
        s = self.brightness / 0.8
        expected = (0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)
        if any(abs(a - b) > 1e-9 for a, b in zip(self.jitter, expected, strict=True)):
            raise ValueError(
                f"jitter {self.jitter} is not of the form s·(0.8, 0.8, 0.8, 0.2) that shared.augment draws"
            )
        return AugmentConfig(
            image_size=image_size,
            crop_scale=(self.crop_min_scale, 1.0),
            flip_p=self.flip_p,
            jitter_strength=s,
            jitter_p=self.jitter_p,
            grayscale_p=self.grayscale_p,
            blur_p=self.blur_p,
            mean=tuple(mean),
            std=tuple(std),
        )


SYMMETRIC = ViewAugmentation(0.08, 0.8, 0.8, 0.8, 0.8, 0.2)
SYMMETRIC_ADAINF = ViewAugmentation(0.2, 0.4, 0.4, 0.4, 0.4, 0.1)
ASYMMETRIC = (
    ViewAugmentation(0.08, 0.8, 0.4, 0.4, 0.2, 0.1, blur_p=0.0),
    ViewAugmentation(0.08, 0.8, 0.4, 0.4, 0.2, 0.1, blur_p=0.0, solarize_p=0.2),
)
ASYMMETRIC_ADAINF = (
    ViewAugmentation(0.2, 0.4, 0.4, 0.4, 0.2, 0.1, blur_p=0.0),
    ViewAugmentation(0.2, 0.4, 0.4, 0.4, 0.2, 0.1, blur_p=0.0, solarize_p=0.2),
)
"""(view 1, view 2) of the asymmetric yamls (BYOL, Barlow Twins): constants only, not trained here."""

STRENGTHS = {"strong": SYMMETRIC, "weak": SYMMETRIC_ADAINF}
"""The two strengths of the SimCLR grid: the default (strong) and AdaInf's (weak)."""


def strength(name: str) -> ViewAugmentation:
    if name not in STRENGTHS:
        raise ValueError(f"unknown augmentation strength {name!r}; choose from {tuple(STRENGTHS)}")
    return STRENGTHS[name]
