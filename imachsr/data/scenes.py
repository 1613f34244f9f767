"""``ShapeScenes``: a harder offline segmentation data set than ``DigitCanvas``: 20 object
classes (ten shapes and the ten digits of scikit-learn's real handwriting) that occlude each
other on textured backgrounds, over a wide range of scales."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

from .digits import SPLITS, _source_digits
from .drawn import DrawnDataset

__all__ = ["ShapeScenes"]


def _polygon(u: np.ndarray, v: np.ndarray, sides: int) -> np.ndarray:
    """A regular polygon of circumradius 1: the polar radius at each angle, against 1."""
    angle = np.arctan2(v, u) % (2 * math.pi / sides) - math.pi / sides
    return np.hypot(u, v) * np.cos(angle) <= math.cos(math.pi / sides)


def _star(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A five-pointed star: the radius falls linearly from 1 at a point to 0.4 between two."""
    sector = 2 * math.pi / 5
    angle = np.abs(np.arctan2(v, u) % sector - sector / 2) / (sector / 2)  # 0 between, 1 at a tip
    return np.hypot(u, v) <= 0.4 + 0.6 * angle


# Each shape is a mask over coordinates (u, v) in [-1, 1]^2, before a random rotation.
SHAPES = {
    "disc": lambda u, v: np.hypot(u, v) <= 1.0,
    "ring": lambda u, v: (np.hypot(u, v) <= 1.0) & (np.hypot(u, v) >= 0.55),
    "square": lambda u, v: np.maximum(np.abs(u), np.abs(v)) <= 0.75,
    "triangle": lambda u, v: _polygon(u, v, 3),
    "hexagon": lambda u, v: _polygon(u, v, 6),
    "star": _star,
    "cross": lambda u, v: ((np.abs(u) <= 0.28) & (np.abs(v) <= 0.95))
    | ((np.abs(v) <= 0.28) & (np.abs(u) <= 0.95)),
    "ellipse": lambda u, v: u ** 2 + (v / 0.45) ** 2 <= 1.0,
    "crescent": lambda u, v: (np.hypot(u, v) <= 0.95) & (np.hypot(u - 0.5, v) > 0.75),
    "corner": lambda u, v: ((u >= -0.85) & (u <= -0.3) & (np.abs(v) <= 0.85))
    | ((v >= 0.3) & (v <= 0.85) & (np.abs(u) <= 0.85)),
}


class ShapeScenes(DrawnDataset):
    """Scenes of 3 to 8 objects of 20 classes that occlude each other on textured backgrounds.

    Label 0 is the background, 1-10 the shapes of :attr:`SHAPES` (disc, ring, square, triangle,
    hexagon, star, cross, ellipse, crescent, corner) and 11-20 the digits 0-9, drawn from
    scikit-learn's handwritten digits like :class:`~imachsr.data.DigitCanvas` (each split from
    its own disjoint share of them). Each object is filled with a coloured texture (flat,
    stripes or a checkerboard), turned, and sized from a twelfth to over half of the scene's
    side; later objects cover earlier ones, and the labels follow what is visible. The
    background is a mix of coloured gratings and smooth noise, with unlabelled strokes.

    Parameters
    ----------
    split
        ``"train"``, ``"val"`` or ``"test"``.
    length
        Number of scenes. Scene ``i`` is the same for the same ``seed``, ``split`` and ``size``.
    size
        Scene side in pixels (128 by default).
    objects
        Inclusive range of objects per scene.
    seed
        Varies every scene.
    cache
        Keep each scene after it is first drawn (a 128x128 scene holds 260 KB).

    Examples
    --------
    >>> image, labels = ShapeScenes("train", length=4)[0]
    >>> tuple(image.shape), tuple(labels.shape), ShapeScenes.num_classes
    ((3, 128, 128), (128, 128), 21)
    """

    num_classes = 21
    class_names = ("background", *SHAPES, *(f"digit {d}" for d in range(10)))
    mirror_invariant = False  # a mirrored digit, crescent or corner is another glyph

    def __init__(
        self,
        split: str = "train",
        *,
        length: int = 1024,
        size: int = 128,
        objects: tuple[int, int] = (3, 8),
        seed: int = 0,
        cache: bool = False,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}.")
        if size < 32:
            raise ValueError(f"size must be at least 32 pixels; got {size}.")
        if not 1 <= objects[0] <= objects[1]:
            raise ValueError(f"objects must be a range (low, high) with 1 <= low <= high; "
                             f"got {objects!r}.")
        super().__init__(length, cache)
        self.split, self.size, self.objects, self.seed = split, size, objects, seed
        self.digits, self.digit_targets = _source_digits(split)

    def _draw(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, 1 + list(SPLITS).index(self.split), index, 21])
        image = self._background(rng)
        labels = np.zeros((self.size, self.size), dtype=np.int64)
        for _ in range(rng.integers(self.objects[0], self.objects[1] + 1)):
            label = int(rng.integers(1, self.num_classes))
            side = int(np.exp(rng.uniform(math.log(self.size / 12), math.log(self.size * 0.6))))
            mask = self._shape_mask(label, side, rng)
            top, left = rng.integers(-side // 4, self.size - 3 * side // 4, 2)
            self._paste(image, labels, mask, label, int(top), int(left), rng)
        return torch.from_numpy(image), torch.from_numpy(labels)

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        """Two coloured gratings over smooth noise, and a few unlabelled strokes."""
        size = self.size
        y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
        image = np.empty((3, size, size), dtype=np.float32)
        noise = F.interpolate(torch.from_numpy(rng.uniform(0, 1, (1, 3, 6, 6)).astype(np.float32)),
                              size=(size, size), mode="bicubic", align_corners=False)[0].numpy()
        base = rng.uniform(0.1, 0.5, 3)
        for channel in range(3):
            image[channel] = base[channel] + 0.25 * (noise[channel] - 0.5)
        for _ in range(2):
            angle, frequency = rng.uniform(0, math.pi), rng.uniform(3, 14)
            wave = np.sin(2 * math.pi * frequency * (x * math.cos(angle) + y * math.sin(angle))
                          + rng.uniform(0, 2 * math.pi))
            image += (rng.uniform(0.03, 0.12, 3)[:, None, None] * wave).astype(np.float32)
        for _ in range(rng.integers(2, 6)):
            top, left = rng.integers(0, size - 4, 2)
            height, width = (rng.integers(1, 4), rng.integers(4, size // 3))[::rng.choice([1, -1])]
            image[:, top:top + height, left:left + width] = rng.uniform(0, 1, (3, 1, 1))
        return np.clip(image, 0, 1)

    def _shape_mask(self, label: int, side: int, rng: np.random.Generator) -> np.ndarray:
        """A ``side`` x ``side`` boolean mask of the class's glyph, turned at random."""
        if label > len(SHAPES):  # a digit: its real handwriting, as DigitCanvas draws it
            picks = np.flatnonzero(self.digit_targets == label - len(SHAPES) - 1)
            glyph = torch.from_numpy(self.digits[rng.choice(picks)]).float()[None, None]
            return F.interpolate(glyph, size=(side, side), mode="bilinear",
                                 align_corners=False)[0, 0].numpy() > 0.35
        v, u = (np.mgrid[0:side, 0:side].astype(np.float32) + 0.5) / side * 2 - 1
        turn = rng.uniform(0, 2 * math.pi)
        u, v = u * math.cos(turn) - v * math.sin(turn), u * math.sin(turn) + v * math.cos(turn)
        return list(SHAPES.values())[label - 1](u, v)

    def _paste(self, image: np.ndarray, labels: np.ndarray, mask: np.ndarray, label: int,
               top: int, left: int, rng: np.random.Generator) -> None:
        """Paint ``mask`` at (``top``, ``left``), clipped to the scene, with a texture."""
        side = mask.shape[0]
        rows = slice(max(top, 0), min(top + side, self.size))
        cols = slice(max(left, 0), min(left + side, self.size))
        inside = mask[rows.start - top:rows.stop - top, cols.start - left:cols.stop - left]
        if not inside.any():
            return
        y, x = np.mgrid[rows, cols].astype(np.float32)
        colour = rng.uniform(0.0, 1.0, 3).astype(np.float32)
        period = rng.uniform(3, 9)
        texture = rng.integers(3)
        if texture == 1:  # stripes
            shade = 0.75 + 0.25 * np.sign(np.sin((x + y * rng.uniform(-1, 1)) / period * math.pi))
        elif texture == 2:  # checkerboard
            shade = 0.75 + 0.25 * ((x // period + y // period) % 2 * 2 - 1)
        else:
            shade = np.ones_like(x)
        for channel in range(3):
            patch = image[channel, rows, cols]
            patch[inside] = np.clip(colour[channel] * shade[inside] + 0.05, 0, 1)
        labels[rows, cols][inside] = label
