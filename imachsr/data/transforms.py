"""Paired transforms: the same geometry for an image and its label map."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import cast

import torch
from torch.nn import functional as F

__all__ = ["PairedTransform", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PairedTransform:
    """Random scale, random crop (labels padded with ``ignore_index``), horizontal flip, then
    normalisation; geometry is applied to image ``(3, H, W)`` and labels ``(H, W)`` alike.

    With ``train=False`` only normalisation is applied.
    """

    def __init__(
        self,
        *,
        train: bool,
        crop: Sequence[int] | None = None,
        scale: tuple[float, float] = (0.75, 1.25),
        flip: bool = True,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        ignore_index: int = 255,
    ) -> None:
        self.train, self.crop, self.scale, self.flip = train, crop, scale, flip
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)
        self.ignore_index = ignore_index

    def __call__(
        self, image: torch.Tensor, labels: torch.Tensor, rng: random.Random | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # Without a generator, the module's global one (seeded by random.seed).
        draw = rng if rng is not None else cast(random.Random, random)
        if self.train:
            factor = draw.uniform(*self.scale)
            if factor != 1.0:
                size = [max(1, round(s * factor)) for s in image.shape[1:]]
                image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
                labels = F.interpolate(labels[None, None].float(), size=size, mode="nearest")[0, 0].long()
            if self.crop is not None:
                image, labels = self._random_crop(image, labels, self.crop, draw)
            if self.flip and draw.random() < 0.5:
                image, labels = image.flip(-1), labels.flip(-1)
        return (image - self.mean) / self.std, labels

    def _random_crop(
        self, image: torch.Tensor, labels: torch.Tensor, crop: Sequence[int], rng: random.Random
    ) -> tuple[torch.Tensor, torch.Tensor]:
        height, width = crop
        pad_h, pad_w = max(0, height - image.shape[1]), max(0, width - image.shape[2])
        if pad_h or pad_w:
            image = F.pad(image, (0, pad_w, 0, pad_h))
            labels = F.pad(labels, (0, pad_w, 0, pad_h), value=self.ignore_index)
        top = rng.randint(0, image.shape[1] - height)
        left = rng.randint(0, image.shape[2] - width)
        return (image[:, top:top + height, left:left + width],
                labels[top:top + height, left:left + width])
