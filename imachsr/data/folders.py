"""Cityscapes, CamVid and SYNTHIA-SF read from their standard folder layouts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["Cityscapes", "CamVid", "SynthiaSF", "FolderSegmentation"]

IGNORE = 255


def _read_image(path: Path) -> torch.Tensor:
    from PIL import Image

    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def _read_labels(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        array = np.asarray(image)
    return array[..., 0] if array.ndim == 3 else array


class FolderSegmentation(Dataset):
    """Pairs of image and label files, with a label mapping and an optional paired transform.

    Subclasses say where the pairs are (``pairs``) and how raw label values become train ids
    (``mapping``: a 256-entry lookup table, ``IGNORE`` for unused values).
    """

    num_classes: int
    class_names: Sequence[str]
    layout_hint: str
    mirror_invariant = True  # street scenes stay street scenes in a mirror: flips augment

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transform: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> None:
        self.root, self.split, self.transform = Path(root), split, transform
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"{type(self).__name__} root {str(self.root)!r} is not a folder. Expected: {self.layout_hint}"
            )
        self.items = self.pairs()
        if not self.items:
            raise FileNotFoundError(
                f"No {split!r} image/label pairs found under {str(self.root)!r}. "
                f"Expected: {self.layout_hint}"
            )

    def pairs(self) -> list[tuple[Path, Path]]:
        raise NotImplementedError

    def mapping(self) -> np.ndarray:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image_path, label_path = self.items[index]
        image = _read_image(image_path)
        raw = _read_labels(label_path)
        if raw.shape != tuple(image.shape[1:]):
            raise ValueError(
                f"{label_path} is {raw.shape[1]}x{raw.shape[0]} but its image {image_path} is "
                f"{image.shape[2]}x{image.shape[1]}."
            )
        labels = torch.from_numpy(self.mapping()[raw.astype(np.int64).clip(0, 255)].astype(np.int64))
        if self.transform is not None:
            image, labels = self.transform(image, labels)
        return image, labels


def _checked_pair(image: Path, label: Path) -> tuple[Path, Path]:
    if not label.is_file():
        raise FileNotFoundError(f"{image} has no label file {label}.")
    return image, label


def _table(pairs: dict[int, int]) -> np.ndarray:
    table = np.full(256, IGNORE, dtype=np.int64)
    for raw, train_id in pairs.items():
        table[raw] = train_id
    return table


class Cityscapes(FolderSegmentation):
    """``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` with
    ``gtFine/<split>/<city>/*_gtFine_labelIds.png``; label ids map to the 19 train ids."""

    num_classes = 19
    class_names = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
                   "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car",
                   "truck", "bus", "train", "motorcycle", "bicycle")
    layout_hint = ("ROOT/leftImg8bit/SPLIT/CITY/NAME_leftImg8bit.png and "
                   "ROOT/gtFine/SPLIT/CITY/NAME_gtFine_labelIds.png")
    LABEL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)

    def pairs(self) -> list[tuple[Path, Path]]:
        found = []
        for image in sorted((self.root / "leftImg8bit" / self.split).glob("*/*_leftImg8bit.png")):
            name = image.name.replace("_leftImg8bit.png", "_gtFine_labelIds.png")
            found.append(_checked_pair(image, self.root / "gtFine" / self.split / image.parent.name / name))
        return found

    def mapping(self) -> np.ndarray:
        return _table({raw: train_id for train_id, raw in enumerate(self.LABEL_IDS)})


class CamVid(FolderSegmentation):
    """The common 11-class layout: ``<split>/*.png`` with ``<split>annot/*.png`` holding class
    ids 0-10 and 11 for unlabelled (ignored)."""

    num_classes = 11
    class_names = ("sky", "building", "pole", "road", "pavement", "tree", "sign", "fence", "car",
                   "pedestrian", "bicyclist")
    layout_hint = "ROOT/SPLIT/NAME.png and ROOT/SPLITannot/NAME.png (class ids 0-10, 11 = void)"

    def pairs(self) -> list[tuple[Path, Path]]:
        found = []
        for image in sorted((self.root / self.split).glob("*.png")):
            found.append(_checked_pair(image, self.root / f"{self.split}annot" / image.name))
        return found

    def mapping(self) -> np.ndarray:
        return _table({raw: raw for raw in range(11)})


class SynthiaSF(FolderSegmentation):
    """SYNTHIA-SF sequences: ``SEQ*/RGBLeft/*.png`` with ``SEQ*/GTLeft/*.png`` whose first
    channel holds the class id 0-22 (23 classes, as in SYNTHIA's label images); other values
    are ignored. ``split`` selects sequences: ``"train"`` all but the last, ``"test"`` the last,
    ``"all"`` every sequence."""

    num_classes = 23
    class_names = ("void", "sky", "building", "road", "sidewalk", "fence", "vegetation", "pole",
                   "car", "traffic sign", "pedestrian", "bicycle", "motorcycle", "parking slot",
                   "road-work", "traffic light", "terrain", "rider", "truck", "bus", "train",
                   "wall", "lanemarking")
    layout_hint = "ROOT/SEQ*/RGBLeft/NAME.png and ROOT/SEQ*/GTLeft/NAME.png (class id in channel 0)"

    def pairs(self) -> list[tuple[Path, Path]]:
        sequences = sorted(p for p in self.root.glob("SEQ*") if p.is_dir())
        if self.split == "train":
            sequences = sequences[:-1]
        elif self.split == "test":
            sequences = sequences[-1:]
        elif self.split != "all":
            raise ValueError(f"split must be 'train', 'test' or 'all'; got {self.split!r}.")
        found = []
        for sequence in sequences:
            for image in sorted((sequence / "RGBLeft").glob("*.png")):
                found.append(_checked_pair(image, sequence / "GTLeft" / image.name))
        return found

    def mapping(self) -> np.ndarray:
        return _table({raw: raw for raw in range(23)})
