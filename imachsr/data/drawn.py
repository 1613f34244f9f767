"""What the generated data sets share: samples drawn on demand from their index, optionally
kept after the first draw, and handed out as copies."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

__all__ = ["DrawnDataset"]


class DrawnDataset(Dataset):
    """A data set of ``length`` (image, labels) pairs that ``_draw(index)`` makes
    deterministically; with ``cache``, each pair is drawn once and kept."""

    length: int

    def __init__(self, length: int, cache: bool) -> None:
        self.length = length
        self._drawn: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = {} if cache else None

    def _draw(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        if self._drawn is None:
            return self._draw(index)
        if index not in self._drawn:
            self._drawn[index] = self._draw(index)
        image, labels = self._drawn[index]
        return image.clone(), labels.clone()  # transforms may write into what they are given
