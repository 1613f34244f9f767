"""What a run of ``imachsr train`` depends on (:class:`TrainConfig`) and what it gives back
(:class:`RunResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from tapfinder.taps.positions import Position

from ..adapters import HEAD_WIDTH, AdapterKind
from ..data.splits import DataName
from ..scheme import Resolution
from ..weighting import Schedule

__all__ = ["TrainConfig", "RunResult", "Method", "UsageError"]

# "imachsr": the iMacHSR objective; "plain": the output's cross-entropy alone.
Method = Literal["imachsr", "plain"]


class UsageError(ValueError):
    """A bad argument: the command line reports it as a one-line message with exit code 2."""


@dataclass
class TrainConfig:
    """Everything a run depends on; saved with its results.

    The defaults are the demo: DigitCanvas at 64x64 and an smp DeepLabV3Plus on timm's
    ResNet-10-T, which recognises the digits in a few minutes of a 2-core CPU. For your own
    data set, set at least the model, size, epochs and learning rate. ``mi`` takes an
    estimator's current or earlier name (:data:`imachsr.losses.ESTIMATOR_ALIASES`).
    """

    model: str = "smp:DeepLabV3Plus:tu-resnet10t"
    data: DataName = "digits"
    data_root: str | None = None
    method: Method = "imachsr"
    taps: str = "auto"  # or fx node names / module paths, comma-separated
    k: int = 3
    spacing: int = 1
    position: Position = "uniform"
    mi: str = "eq1"
    resolution: Resolution = "feature"
    adapter: AdapterKind = "head"
    head_width: int = HEAD_WIDTH
    schedule: Schedule = "constant"
    normalize_weights: bool = False
    alpha: float = 0.4
    beta: float = 0.0
    epochs: int = 8
    batch_size: int = 8
    lr: float = 2e-3
    lr_schedule: Schedule = "cosine"
    seed: int = 0
    out: str = "runs/imachsr"
    limit_steps: int | None = None
    size: int = 64
    flip: bool | None = None  # horizontal flips in training; None: the data set's choice
    train_length: int = 1024
    eval_length: int = 128
    resume: bool = False
    keep_state: bool = False  # keep state.pt after the last epoch (to extend the run later)
    ignore_index: int = 255
    write_artefacts: bool = True  # off: return the results and write no file (experiment sweeps)


@dataclass
class RunResult:
    """A finished run: its configuration (as a dict), one record per epoch (losses and
    validation metrics), the test metrics, the training time, the taps and the class names."""

    config: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    test: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    taps: list[str] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)
