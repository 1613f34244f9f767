"""The train, validation and test sets of a run, by data-set name, with the paired augmentation
whose randomness is keyed by (seed, epoch, index) so that a resumed run sees the same batches."""

from __future__ import annotations

import random
from collections.abc import Sized
from dataclasses import dataclass
from typing import Literal, cast

import torch
from torch.utils.data import Dataset

from .digits import DigitCanvas
from .folders import CamVid, Cityscapes, SynthiaSF
from .scenes import ShapeScenes
from .transforms import PairedTransform

__all__ = ["DataName", "DATA_NAMES", "Augmented", "RunData", "run_data"]

DataName = Literal["digits", "scenes", "cityscapes", "camvid", "synthia"]
DATA_NAMES: tuple[DataName, ...] = ("digits", "scenes", "cityscapes", "camvid", "synthia")


class Augmented(Dataset):
    """A data set with a paired transform whose randomness is keyed by (seed, epoch, index):
    set ``epoch`` before each pass."""

    def __init__(self, base: Dataset, transform: PairedTransform, seed: int) -> None:
        self.base, self.transform, self.seed, self.epoch = base, transform, seed, 0

    def __len__(self) -> int:
        return len(cast(Sized, self.base))  # every data set here has a length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, labels = self.base[index]
        rng = random.Random(f"{self.seed}/{self.epoch}/{index}")
        return self.transform(image, labels, rng)

    @property
    def class_names(self) -> list[str] | None:
        """The base data set's class names, where it has them."""
        names = getattr(self.base, "class_names", None)
        return list(names) if names else None


@dataclass(frozen=True)
class RunData:
    """A run's data: the augmented training set, the validation and test sets (normalised
    only), the number of classes and their names."""

    train: Augmented
    val: Augmented
    test: Augmented
    classes: int
    class_names: list[str]


def run_data(name: str, *, root: str | None = None, size: int = 64, seed: int = 0,
             train_length: int = 1024, eval_length: int = 128,
             flip: bool | None = None) -> RunData:
    """The sets of data set ``name``: the built-in ``digits`` (:class:`DigitCanvas`) and
    ``scenes`` (:class:`ShapeScenes`), drawn at ``size`` with ``train_length`` and
    ``eval_length`` images from ``seed``, or ``cityscapes``, ``camvid`` and ``synthia`` read
    from their folders under ``root``. Training crops ``size`` x ``size``, rescales and, where
    ``flip`` says so (default: unless the data set is not mirror-invariant, as digits are
    not), flips.

    Raises
    ------
    ValueError
        For an unknown name, a folder data set without ``root``, or a folder that does not hold
        the data set's layout (the message says what is missing).
    """
    parts: list[Dataset]
    if name in ("digits", "scenes"):
        kind = DigitCanvas if name == "digits" else ShapeScenes
        parts = [kind(split, length=length, size=size, seed=seed, cache=True) for split, length in
                 (("train", train_length), ("val", eval_length), ("test", eval_length))]
        classes = kind.num_classes
    elif name in ("cityscapes", "camvid", "synthia"):
        if not root:
            raise ValueError(f"--data {name} needs --data-root PATH (the data set's folder).")
        folder = {"cityscapes": Cityscapes, "camvid": CamVid, "synthia": SynthiaSF}[name]
        try:
            if folder is SynthiaSF:
                train_set, test_set = folder(root, "train"), folder(root, "test")
                parts = [train_set, test_set, test_set]
            else:
                parts = [folder(root, "train"), folder(root, "val"),
                         folder(root, "test" if folder is CamVid else "val")]
        except FileNotFoundError as error:
            raise ValueError(str(error)) from error
        classes = folder.num_classes
    else:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(DATA_NAMES)}.")
    mirror = getattr(parts[0], "mirror_invariant", True) if flip is None else flip
    train = Augmented(parts[0], PairedTransform(train=True, crop=(size, size), flip=mirror), seed)
    evaluation = PairedTransform(train=False)
    sets = train, Augmented(parts[1], evaluation, seed), Augmented(parts[2], evaluation, seed)
    names = train.class_names or [str(c) for c in range(classes)]
    return RunData(*sets, classes=classes, class_names=names)
