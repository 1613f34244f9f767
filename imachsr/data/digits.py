"""``DigitCanvas``: an offline segmentation data set built from scikit-learn's real handwritten
digits, so the main job and the tests need no download."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from .drawn import DrawnDataset

__all__ = ["DigitCanvas"]

SPLITS = {"train": (0.0, 0.6), "val": (0.6, 0.8), "test": (0.8, 1.0)}


def _source_digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The split's share of the 1,797 digits: disjoint across splits, fixed by a seed."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.target))
    low, high = SPLITS[split]
    chosen = order[int(low * len(order)):int(high * len(order))]
    return digits.images[chosen] / 16.0, digits.target[chosen]


class DigitCanvas(DrawnDataset):
    """Canvases with several digits at random positions and scales; label = digit + 1, 0 for
    background (11 classes).

    Parameters
    ----------
    split
        ``"train"``, ``"val"`` or ``"test"``; each draws digits from its own disjoint share of
        the source images.
    length
        Number of canvases. Canvas ``i`` is the same for the same ``seed`` and ``split``.
    size
        Canvas side in pixels.
    digits
        Inclusive range of digits per canvas.
    clutter
        Add unlabelled strokes and blobs, so the background is not trivially dark.
    cache
        Keep each canvas after it is first drawn (a 96x96 canvas holds 147 KB): training
        epochs after the first then cost no drawing.
    """

    num_classes = 11
    class_names = ("background", *(str(d) for d in range(10)))
    mirror_invariant = False  # a mirrored 2 is not a 2: training augmentation must not flip

    def __init__(
        self,
        split: str = "train",
        *,
        length: int = 512,
        size: int = 96,
        digits: tuple[int, int] = (2, 4),
        clutter: bool = True,
        seed: int = 0,
        cache: bool = False,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}.")
        super().__init__(length, cache)
        self.split, self.size = split, size
        self.digits, self.clutter, self.seed = digits, clutter, seed
        self.images, self.targets = _source_digits(split)

    def _draw(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, list(SPLITS).index(self.split), index])
        size = self.size
        image = rng.uniform(0.0, 0.15, (3, size, size)).astype(np.float32)
        labels = np.zeros((size, size), dtype=np.int64)
        if self.clutter:
            self._add_clutter(image, rng)
        for _ in range(rng.integers(self.digits[0], self.digits[1] + 1)):
            pick = rng.integers(len(self.targets))
            side = int(rng.integers(size // 5, size // 2 + 1))
            glyph = F.interpolate(
                torch.from_numpy(self.images[pick]).float()[None, None], size=(side, side),
                mode="bilinear", align_corners=False,
            )[0, 0].numpy()
            top, left = rng.integers(0, size - side + 1, 2)
            ink = glyph > 0.35
            colour = rng.uniform(0.5, 1.0, 3).astype(np.float32)
            window = (slice(top, top + side), slice(left, left + side))
            for channel in range(3):
                patch = image[channel][window]
                patch[ink] = np.clip(glyph[ink] * colour[channel], 0, 1)
            labels[window][ink] = self.targets[pick] + 1
        return torch.from_numpy(image), torch.from_numpy(labels)

    def _add_clutter(self, image: np.ndarray, rng: np.random.Generator) -> None:
        size = self.size
        for _ in range(rng.integers(2, 6)):
            top, left = rng.integers(0, size - 4, 2)
            height, width = rng.integers(2, size // 4, 2)
            image[:, top:top + height, left:left + width] += rng.uniform(0.1, 0.4)
        np.clip(image, 0, 1, out=image)
