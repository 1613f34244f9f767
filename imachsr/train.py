"""``imachsr train``: train a segmentation model with or without iMacHSR, evaluate, and write
metrics, checkpoints and figures; ``--compare`` runs both from the same seed and data order.

Runs as it is on one process, and under ``torchrun --nproc_per_node=N`` with the same command
(DDP: gloo on the CPU, nccl on GPUs). Every source of randomness is keyed by (seed, epoch,
index), so a run resumed with ``--resume`` ends exactly where the uninterrupted run would. The
decaying schedules (``--schedule``, ``--lr-schedule``) run over ``--epochs``: resume with the
same ``--epochs`` for that to hold.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

import tapfinder
from tapfinder.errors import InvalidInputError, TapfinderError
from tapfinder.zoo import build_model

from .adapters import CAPACITIES, HEAD_WIDTH
from .losses import ESTIMATOR_ALIASES, ESTIMATORS, canonical_estimator
from .data import CamVid, Cityscapes, DigitCanvas, PairedTransform, ShapeScenes, SynthiaSF
from .metrics import SegmentationMetrics
from .scheme import IMacHSR, SchemeOutput, masked_cross_entropy, model_logits
from .weighting import SCHEDULES, schedule_factor

__all__ = ["TrainConfig", "train", "compare", "main", "build_model_for"]

DATASETS = ("digits", "scenes", "cityscapes", "camvid", "synthia")


class UsageError(ValueError):
    """A bad argument: reported as a one-line message with exit code 2."""


@dataclass
class TrainConfig:
    """Everything a run depends on; saved with its results.

    The defaults are the demo: DigitCanvas at 64x64 and an smp DeepLabV3Plus on timm's
    ResNet-10-T, which recognises the digits (test mIoU above 50) in about 2 minutes of 2-core
    CPU. For your own data set, set at least the model, size, epochs and learning rate.
    """

    model: str = "smp:DeepLabV3Plus:tu-resnet10t"
    data: str = "digits"
    data_root: str | None = None
    method: str = "imachsr"  # or "plain": output cross-entropy only
    taps: str = "auto"
    k: int = 3
    spacing: int = 1
    position: str = "uniform"
    mi: str = "eq1"
    resolution: str = "feature"
    adapter: str = "head"
    head_width: int = HEAD_WIDTH
    schedule: str = "constant"
    normalize_weights: bool = False
    alpha: float = 0.4
    beta: float = 0.0
    epochs: int = 8
    batch_size: int = 8
    lr: float = 2e-3
    lr_schedule: str = "cosine"
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
    config: dict
    history: list[dict] = field(default_factory=list)
    test: dict = field(default_factory=dict)
    seconds: float = 0.0
    taps: list[str] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)


class PlainObjective(nn.Module):
    """Output-only cross-entropy with the same interface as :class:`IMacHSR`."""

    def __init__(self, model: nn.Module, ignore_index: int = 255) -> None:
        super().__init__()
        self.model, self.ignore_index = model, ignore_index

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None) -> Any:
        output = self.model(x)
        if target is None:
            return output
        logits = model_logits(output)
        sized = F.interpolate(logits, size=target.shape[1:], mode="bilinear", align_corners=False) \
            if logits.shape[2:] != target.shape[1:] else logits
        loss = masked_cross_entropy(sized, target, self.ignore_index)
        return SchemeOutput(loss, {"loss": loss, "ce": loss}, logits)


class Augmented(Dataset):
    """A data set with a paired transform whose randomness is keyed by (seed, epoch, index)."""

    def __init__(self, base: Dataset, transform: PairedTransform, seed: int) -> None:
        self.base, self.transform, self.seed, self.epoch = base, transform, seed, 0

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, labels = self.base[index]
        rng = random.Random(f"{self.seed}/{self.epoch}/{index}")
        return self.transform(image, labels, rng)


def _datasets(config: TrainConfig) -> tuple[Dataset, Dataset, Dataset, int]:
    """Train, validation and test sets and the number of classes."""
    if config.data == "digits":
        def canvas(split: str, length: int) -> DigitCanvas:
            return DigitCanvas(split, length=length, size=config.size, seed=config.seed, cache=True)

        parts = canvas("train", config.train_length), canvas("val", config.eval_length), \
            canvas("test", config.eval_length)
        classes = DigitCanvas.num_classes
    elif config.data == "scenes":
        def scene(split: str, length: int) -> ShapeScenes:
            return ShapeScenes(split, length=length, size=config.size, seed=config.seed, cache=True)

        parts = scene("train", config.train_length), scene("val", config.eval_length), \
            scene("test", config.eval_length)
        classes = ShapeScenes.num_classes
    else:
        if not config.data_root:
            raise UsageError(f"--data {config.data} needs --data-root PATH (the data set's folder).")
        kind = {"cityscapes": Cityscapes, "camvid": CamVid, "synthia": SynthiaSF}[config.data]
        try:
            if kind is SynthiaSF:
                train_set, test_set = kind(config.data_root, "train"), kind(config.data_root, "test")
                parts = train_set, test_set, test_set
            else:
                parts = kind(config.data_root, "train"), kind(config.data_root, "val"), \
                    kind(config.data_root, "test" if kind is CamVid else "val")
        except (FileNotFoundError, ValueError) as error:
            raise UsageError(str(error)) from error
        classes = kind.num_classes
    crop = (config.size, config.size)
    flip = getattr(parts[0], "mirror_invariant", True) if config.flip is None else config.flip
    train_set = Augmented(parts[0], PairedTransform(train=True, crop=crop, flip=flip), config.seed)
    evaluation = PairedTransform(train=False)
    return train_set, Augmented(parts[1], evaluation, config.seed), \
        Augmented(parts[2], evaluation, config.seed), classes


def class_names(dataset: Augmented, classes: int) -> list[str]:
    """The data set's class names, or the class indices where it names none."""
    return list(getattr(dataset.base, "class_names", None) or map(str, range(classes)))


def build_model_for(spec: str, classes: int) -> nn.Module:
    """The model of a zoo spec (:func:`tapfinder.zoo.build_model`) with ``classes`` outputs, in
    training mode: each zoo names the number its own way."""
    zoo = spec.partition(":")[0]
    keyword = {"smp": "classes", "hf": "num_labels"}.get(zoo, "num_classes")
    return build_model(spec, **{keyword: classes}).train()


def _build(config: TrainConfig, classes: int) -> nn.Module:
    try:
        torch.manual_seed(config.seed)
        return build_model_for(config.model, classes)
    except InvalidInputError as error:
        raise UsageError(str(error)) from error


def _objective(config: TrainConfig, model: nn.Module, classes: int) -> nn.Module:
    if config.method == "plain":
        return PlainObjective(model, config.ignore_index)
    taps = "auto" if config.taps == "auto" else [t.strip() for t in config.taps.split(",") if t.strip()]
    example = (2, 3, config.size, config.size)
    try:
        # Recorded, not shown: a shortfall of taps becomes a usage error below.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            scheme = IMacHSR(
                model, classes, example_inputs=example, taps=taps, k=config.k,
                spacing=config.spacing, position=config.position, alpha=config.alpha,
                beta=config.beta, mi=config.mi, resolution=config.resolution,
                adapter=config.adapter, head_width=config.head_width, schedule=config.schedule,
                normalize_weights=config.normalize_weights, ignore_index=config.ignore_index,
            )
    except (ValueError, TapfinderError) as error:
        raise UsageError(str(error)) from error
    shortfall = [w for w in caught if "taps fit" in str(w.message)]
    if shortfall:
        raise UsageError(f"--k {config.k}: {shortfall[0].message}")
    return scheme


def _distributed() -> tuple[int, int]:
    """Join the process group when started by torchrun; returns (rank, world size)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return (dist.get_rank(), dist.get_world_size()) if world > 1 else (0, 1)


def evaluate(model: nn.Module, dataset: Dataset, classes: int, config: TrainConfig,
             device: torch.device) -> dict:
    """Metrics of ``model`` (eval mode) on ``dataset``, summed over ranks."""
    metrics = SegmentationMetrics(classes, config.ignore_index)
    sampler = DistributedSampler(dataset, shuffle=False) if dist.is_initialized() else None
    loader = DataLoader(dataset, batch_size=config.batch_size, sampler=sampler)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for images, labels in loader:
            logits = model_logits(model(images.to(device)))
            if logits.shape[2:] != labels.shape[1:]:
                logits = F.interpolate(logits, size=labels.shape[1:], mode="bilinear", align_corners=False)
            metrics.update(logits.argmax(1).cpu(), labels)
    model.train(was_training)
    metrics.all_reduce()
    return metrics.compute()


def train(config: TrainConfig) -> RunResult:
    """Train one model as ``config`` says; write artefacts to ``config.out`` on rank 0."""
    rank, world = _distributed()
    device = torch.device(f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu")
    out = Path(config.out)
    train_set, val_set, test_set, classes = _datasets(config)
    model = _build(config, classes)
    objective = _objective(config, model, classes).to(device)
    optimizer = torch.optim.Adam(objective.parameters(), lr=config.lr)
    result = RunResult(config=asdict(config), taps=list(getattr(objective, "taps", ())),
                       class_names=class_names(train_set, classes))
    start_epoch = 0
    state_path = out / "state.pt"
    if config.resume:
        if not state_path.is_file():
            raise UsageError(f"--resume: no training state at {state_path}; start without --resume.")
        state = _load_state(state_path, config, device)
        try:
            objective.load_state_dict(state["objective"])
            optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as error:
            raise UsageError(f"--resume: {state_path} does not fit this model "
                             f"({str(error).splitlines()[0]}); use another --out.") from error
        torch.set_rng_state(state["rng"])
        start_epoch, result.history = state["epoch"] + 1, state["history"]
    runner = nn.parallel.DistributedDataParallel(objective) if world > 1 else objective
    if rank == 0:
        _say(describe_run(config, result.taps))
    began = time.perf_counter()
    for epoch in range(start_epoch, config.epochs):
        train_set.epoch = epoch
        record = _train_epoch(runner, optimizer, train_set, config, epoch, device, rank)
        record["val"] = evaluate(objective.model, val_set, classes, config, device)
        result.history.append(record)
        if rank == 0:
            elapsed = time.perf_counter() - began
            _say(epoch_line(record, config.epochs, elapsed, elapsed / (epoch + 1 - start_epoch)))
        if rank == 0 and config.write_artefacts:
            out.mkdir(parents=True, exist_ok=True)
            torch.save({"objective": objective.state_dict(), "optimizer": optimizer.state_dict(),
                        "rng": torch.get_rng_state(), "epoch": epoch, "history": result.history,
                        "config": asdict(config)}, state_path)
            torch.save(objective.model.state_dict(), out / "model.pt")
    result.seconds = time.perf_counter() - began
    result.test = evaluate(objective.model, test_set, classes, config, device)
    if rank == 0 and config.write_artefacts:
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(asdict(result), indent=1))
        if not config.keep_state:  # only an interrupted run needs it; 3x the model's size
            state_path.unlink(missing_ok=True)
        from .figures import plot_curves

        plot_curves([result], ["output-only" if config.method == "plain" else "iMacHSR"], out)
    return result


# What must match for a saved state to continue this run (epochs, paths and flags may differ).
_RESUME_KEYS = ("model", "data", "method", "taps", "k", "spacing", "position", "mi", "resolution",
                "adapter", "head_width", "schedule", "normalize_weights", "alpha", "beta",
                "batch_size", "lr", "lr_schedule", "seed", "size", "flip", "train_length",
                "ignore_index")


def _load_state(path: Path, config: TrainConfig, device: torch.device) -> dict:
    """The training state at ``path``, refused with a usage error when a different run wrote it."""
    try:
        state = torch.load(path, map_location=device, weights_only=False)
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same advice
        raise UsageError(f"--resume: cannot read {path} ({error}); delete it or start without "
                         "--resume.") from error
    if not isinstance(state, dict) or "objective" not in state:
        raise UsageError(f"--resume: {path} is not a training state written by imachsr train.")
    saved, current = state.get("config", {}), asdict(config)
    if "mi" in saved:  # an earlier name of the same estimator is the same run
        saved = {**saved, "mi": canonical_estimator(saved["mi"])}
        current["mi"] = canonical_estimator(current["mi"])
    differ = [f"--{k.replace('_', '-')} {saved[k]!r} (now {current[k]!r})"
              for k in _RESUME_KEYS if k in saved and saved[k] != current[k]]
    if differ:
        raise UsageError(f"--resume: {path} was written by a different run: {'; '.join(differ)}. "
                         "Resume with the same arguments, or use another --out.")
    return state


def _train_epoch(runner: nn.Module, optimizer: torch.optim.Optimizer, dataset: Augmented,
                 config: TrainConfig, epoch: int, device: torch.device, rank: int) -> dict:
    generator = torch.Generator().manual_seed(config.seed * 1000 + epoch)
    if dist.is_initialized():
        sampler = DistributedSampler(dataset, shuffle=True, seed=config.seed, drop_last=True)
        sampler.set_epoch(epoch)
        loader = DataLoader(dataset, batch_size=config.batch_size, sampler=sampler, drop_last=True)
    else:
        loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True,
                            generator=generator, drop_last=True, pin_memory=device.type == "cuda")
    steps = len(loader) if config.limit_steps is None else min(len(loader), config.limit_steps)
    torch.manual_seed(config.seed * 1000 + epoch)  # dropout and other in-model randomness
    objective = runner.module if isinstance(runner, nn.parallel.DistributedDataParallel) else runner
    total_steps = max(config.epochs * steps - 1, 1)
    sums: dict[str, float] = {}
    progress = _progress(steps, f"{arm_name(config)} epoch {epoch + 1}/{config.epochs}", rank)
    runner.train()
    for step, (images, labels) in enumerate(loader):
        if step >= steps:
            break
        done = min((epoch * steps + step) / total_steps, 1.0)
        if isinstance(objective, IMacHSR):
            objective.set_progress(done)
        for group in optimizer.param_groups:
            group["lr"] = config.lr * schedule_factor(config.lr_schedule, done)
        output = runner(images.to(device, non_blocking=True), labels.to(device, non_blocking=True))
        optimizer.zero_grad(set_to_none=True)
        output.loss.backward()
        terms = output.terms  # the step's one host read; raises before a non-finite update
        optimizer.step()
        for name, value in terms.items():
            sums[name] = sums.get(name, 0.0) + value
        progress.set_postfix(loss=f"{terms['loss']:.3f}", ce=f"{terms['ce']:.3f}")
        progress.update()
    progress.close()
    return {"epoch": epoch, "steps": steps, **{k: v / max(steps, 1) for k, v in sums.items()}}


def arm_name(config: TrainConfig) -> str:
    return "output-only" if config.method == "plain" else "iMacHSR"


def describe_run(config: TrainConfig, taps: Sequence[str]) -> str:
    """The line a run starts with: what trains, on what, and where the taps are."""
    where = f"{config.model} on {config.data}, {config.epochs} epochs at batch {config.batch_size}"
    if config.method == "plain":
        return f"[{arm_name(config)}] {where}: output cross-entropy only"
    estimator = {"eq1": "the paper's Eq. 1 (cross-entropy)"}.get(
        canonical_estimator(config.mi), f"Eq. 1 estimated by {canonical_estimator(config.mi)}")
    return (f"[{arm_name(config)}] {where}: {len(taps)} taps ({', '.join(taps)}), "
            f"{estimator} per tap through {config.adapter} adapters, {config.schedule} weights"
            + (f", Eq. 2 negative entropy at beta {config.beta}" if config.beta else ""))


def epoch_line(record: dict, epochs: int, elapsed: float, per_epoch: float) -> str:
    """One line per epoch: losses, validation mIoU, elapsed time and the estimate to the end.

    >>> epoch_line({"epoch": 1, "loss": 1.5, "ce": 1.2, "val": {"mIoU": 0.25}}, 4, 90.0, 45.0)
    'epoch 2/4  loss 1.500  ce 1.200  val mIoU 25.00  elapsed 1:30  ETA 1:30'
    """
    remaining = per_epoch * (epochs - record["epoch"] - 1)
    return (f"epoch {record['epoch'] + 1}/{epochs}  loss {record['loss']:.3f}  "
            f"ce {record['ce']:.3f}  val mIoU {record['val']['mIoU'] * 100:.2f}  "
            f"elapsed {_clock(elapsed)}  ETA {_clock(remaining)}")


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}" if minutes >= 60 else f"{minutes}:{seconds:02d}"


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _progress(total: int, label: str, rank: int) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=label, disable=rank != 0, leave=False, file=sys.stderr)


def compare(config: TrainConfig) -> tuple[RunResult, RunResult]:
    """Train output-only and iMacHSR from the same seed and data order; print Table 2."""
    base = Path(config.out)
    runs = []
    for method in ("plain", "imachsr"):
        variant = TrainConfig(**{**asdict(config), "method": method, "out": str(base / method)})
        runs.append(train(variant))
    if not dist.is_initialized() or dist.get_rank() == 0:
        from .figures import plot_curves, plot_predictions

        print(comparison_table(*runs))
        plot_curves(runs, ["output-only", "iMacHSR"], base)
        figure = plot_predictions(config, [base / "plain" / "model.pt", base / "imachsr" / "model.pt"],
                                  ["output-only", "iMacHSR"], base / "qualitative.png")
        print(f"figures: {base / 'loss_curve.png'}, {base / 'metric_curve.png'}, {figure}")
    return runs[0], runs[1]


def comparison_table(plain: RunResult, scheme: RunResult) -> str:
    """The paper's Table 2 layout (test mIoU, mF1, mPre, mRec and the relative change), then
    the IoU of every class, then what the difference means."""
    lines = [f"{'metric':8} {'output-only':>12} {'iMacHSR':>9} {'change':>8}"]
    for key in ("mIoU", "mF1", "mPre", "mRec"):
        a, b = plain.test[key], scheme.test[key]
        change = (b - a) / a * 100 if a else math.nan
        lines.append(f"{key:8} {a * 100:12.2f} {b * 100:9.2f} {change:+7.2f}%")
    lines.append(f"{'seconds':8} {plain.seconds:12.1f} {scheme.seconds:9.1f}")
    names = plain.class_names or [str(c) for c in range(len(plain.test["IoU"]))]
    width = max(len(name) for name in names)
    lines += ["", f"test IoU per class   {'':{width}} {'output-only':>12} {'iMacHSR':>9}"]
    for name, a, b in zip(names, plain.test["IoU"], scheme.test["IoU"]):
        lines.append(f"  {name:{width + 19}} {_percent(a):>12} {_percent(b):>9}")
    return "\n".join([*lines, "", comparison_verdict(plain, scheme)])


def _percent(value: float) -> str:
    return "-" if math.isnan(value) else f"{value * 100:.1f}"


def comparison_verdict(plain: RunResult, scheme: RunResult) -> str:
    """What the comparison says, in words: which arm scored higher, and how much one seed is
    worth (the paired-seed experiments in docs/results.md are the evidence).

    >>> a, b = RunResult({"seed": 0}, test={"mIoU": 0.5}), RunResult({"seed": 0}, test={"mIoU": 0.52})
    >>> comparison_verdict(a, b).split(".")[0]
    'iMacHSR scored 2.0 mIoU points above output-only on this seed'
    """
    difference = (scheme.test["mIoU"] - plain.test["mIoU"]) * 100
    side = "above" if difference > 0 else "below"
    return (f"iMacHSR scored {abs(difference):.1f} mIoU points {side} output-only on this seed "
            f"({plain.config['seed']}). Runs of one seed differ by a few points by chance, so one "
            "seed does not decide which is better; over 8 paired seeds (docs/results.md) the "
            "default objective scored 4.3 to 4.8 points above output-only on DeepLabV3Plus"
            "(resnet18) at 96x96, the larger gain with less training data, on the taps chosen "
            "before 2026-12-03 (one inside a residual block; today's block outputs are being "
            "measured).")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imachsr train", description="Train a segmentation model with iMacHSR "
        "(or output-only with --plain, or both with --compare), evaluate it and write metrics, "
        "checkpoints and figures.", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    defaults = TrainConfig()
    model = parser.add_argument_group("model and data")
    model.add_argument("--model", default=defaults.model, help=tapfinder.zoo.SPEC_HELP)
    model.add_argument("--data", choices=DATASETS, default=defaults.data,
                       help="digits (DigitCanvas, 11 classes) and scenes (ShapeScenes: 21 classes "
                       "of shapes and digits occluding each other on textured backgrounds) are "
                       "built in (no download); the others read --data-root")
    model.add_argument("--data-root", help="folder of the data set (not needed for digits)")
    model.add_argument("--size", type=int, default=defaults.size,
                       help="crop side; for digits and scenes also the side they are drawn at")
    # SUPPRESS: the default (None: the data set decides) is not a value to print.
    model.add_argument("--flip", action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                       help="random horizontal flips in training (default: on, except for "
                       "digits, which a mirror changes)")
    model.add_argument("--train-length", type=int, default=defaults.train_length,
                       help="digits, scenes: number of training images")
    model.add_argument("--eval-length", type=int, default=defaults.eval_length,
                       help="digits, scenes: images in the validation and test sets")
    scheme = parser.add_argument_group("iMacHSR (see docs/results.md for the evidence behind "
                                       "the defaults)")
    scheme.add_argument("--taps", default="auto",
                        help="auto, or fx node names / module paths, comma-separated")
    scheme.add_argument("--k", type=int, default=defaults.k, help="number of auto taps")
    scheme.add_argument("--spacing", type=int, default=defaults.spacing,
                        help="minimum distance between auto taps, in bases (the layers a "
                        "typical block spans)")
    scheme.add_argument("--position", choices=tapfinder.taps.positions.POSITIONS, default=defaults.position,
                        help="where auto taps go: uniform spreads them over the depth")
    scheme.add_argument("--mi", choices=(*ESTIMATORS, *ESTIMATOR_ALIASES), default=defaults.mi,
                        metavar="{" + ",".join(ESTIMATORS) + "}",
                        help="the estimator of each tap's Eq. 1 term: eq1 is the paper's (the "
                        "tap adapter's cross-entropy over every pixel, a lower bound on the "
                        "tap's mutual information with the labels); joint-image and "
                        "variational-image are this project's per-image alternatives, which "
                        "measured worse (earlier names ce, joint, variational also work)")
    scheme.add_argument("--adapter", choices=CAPACITIES, default=defaults.adapter,
                        help="linear: a 1x1 convolution per tap; head: 3x3 conv-BN-ReLU then 1x1; "
                        "pointwise, separable: the head with a 1x1, or a depthwise 3x3 and a 1x1, "
                        "for its 3x3 (cheaper, and they scored lower)")
    scheme.add_argument("--head-width", type=int, default=defaults.head_width,
                        help="hidden channels of a head adapter (the tap's channels, at most this)")
    scheme.add_argument("--schedule", choices=SCHEDULES, default=defaults.schedule,
                        help="factor on the taps' weights over training: constant, or decayed to 0")
    scheme.add_argument("--normalize-weights", action="store_true",
                        help="divide the objective by 1 + sum(alpha) (nnU-Net)")
    scheme.add_argument("--alpha", type=float, default=defaults.alpha,
                        help="weight of each tap's Eq. 1 term")
    scheme.add_argument("--beta", type=float, default=defaults.beta,
                        help="weight of each tap's Eq. 2 negative-entropy regulariser (0: none; "
                        "it measured no effect)")
    scheme.add_argument("--resolution", choices=("label", "feature"), default=defaults.resolution,
                        help="compare taps with labels at the label size or at the tap's size")
    training = parser.add_argument_group("training")
    training.add_argument("--epochs", type=int, default=defaults.epochs, help="passes over the data")
    training.add_argument("--batch-size", type=int, default=defaults.batch_size, help="images per step")
    training.add_argument("--lr", type=float, default=defaults.lr, help="Adam's learning rate")
    training.add_argument("--lr-schedule", choices=SCHEDULES, default=defaults.lr_schedule,
                          help="factor on the learning rate over training: constant, or decayed to 0")
    training.add_argument("--seed", type=int, default=defaults.seed,
                          help="sets the weights, the data and its order")
    training.add_argument("--limit-steps", type=int, help="cap the steps per epoch (smoke runs)")
    training.add_argument("--out", default=defaults.out, help="folder for metrics, checkpoints, figures")
    training.add_argument("--plain", action="store_true", help="output-only training (no iMacHSR)")
    training.add_argument("--compare", action="store_true",
                          help="train output-only and iMacHSR from the same seed, print a table")
    training.add_argument("--resume", action="store_true",
                          help="continue an interrupted run from OUT/state.pt (written every "
                          "epoch, deleted when the run ends unless --keep-state)")
    training.add_argument("--keep-state", action="store_true",
                          help="keep OUT/state.pt (model, heads, optimiser: about 3x model.pt) "
                          "after the last epoch, to continue the run later with --resume")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and train; returns the exit code (2 for a bad argument)."""
    arguments = vars(_parser().parse_args(argv))
    compare_both, plain = arguments.pop("compare"), arguments.pop("plain")
    config = TrainConfig(**arguments, method="plain" if plain else "imachsr")
    for name in ("epochs", "batch_size", "k", "size", "train_length", "eval_length"):
        if getattr(config, name) < 1:
            print(f"imachsr train: error: --{name.replace('_', '-')} must be at least 1", file=sys.stderr)
            return 2
    try:
        if compare_both:
            if config.resume:
                raise UsageError("--resume resumes one run; resume each of OUT/plain and OUT/imachsr.")
            compare(config)
        else:
            result = train(config)
            if not dist.is_initialized() or dist.get_rank() == 0:
                test = result.test
                print(f"test mIoU {test['mIoU'] * 100:.2f}  mF1 {test['mF1'] * 100:.2f}  "
                      f"mPre {test['mPre'] * 100:.2f}  mRec {test['mRec'] * 100:.2f}  -> {config.out}")
    except UsageError as error:
        print(f"imachsr train: error: {error}", file=sys.stderr)
        return 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
