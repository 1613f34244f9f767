"""The training loop of ``imachsr train``: build the model and its objective, train with the
learning-rate and weight schedules, evaluate every epoch, save and resume the training state,
and run under ``torchrun`` (DDP: gloo on the CPU, nccl on GPUs).

Every source of randomness is keyed by (seed, epoch, index), so a run resumed with ``--resume``
ends exactly where the uninterrupted run would. The decaying schedules (``--schedule``,
``--lr-schedule``) run over ``--epochs``: resume with the same ``--epochs`` for that to hold.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from tapfinder.errors import InvalidInputError, TapfinderError, TapShortfallWarning
from tapfinder.zoo import build_model

from ..arithmetic import AdapterArithmetic, adapter_arithmetic
from ..checkpoints import save_atomically, write_text_atomically
from ..data.splits import Augmented, RunData, run_data
from ..losses import canonical_estimator
from ..metrics import SegmentationMetrics
from ..output_only import OutputOnly
from ..scheme import IMacHSR, model_logits
from ..weighting import schedule_factor
from .config import RunResult, TrainConfig, UsageError

__all__ = ["train", "evaluate", "build_model_for", "describe_run", "epoch_line", "arm_name"]


def _data(config: TrainConfig) -> RunData:
    """The run's data sets (:func:`~imachsr.data.splits.run_data`), a bad choice as a usage
    error."""
    try:
        return run_data(config.data, root=config.data_root, size=config.size, seed=config.seed,
                        train_length=config.train_length, eval_length=config.eval_length,
                        flip=config.flip)
    except ValueError as error:
        raise UsageError(str(error)) from error


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


def _objective(config: TrainConfig, model: nn.Module, classes: int) -> IMacHSR | OutputOnly:
    if config.method == "plain":
        return OutputOnly(model, config.ignore_index)
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
    shortfall = [w for w in caught if issubclass(w.category, TapShortfallWarning)]
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
             device: torch.device) -> dict[str, Any]:
    """Metrics of ``model`` (eval mode) on ``dataset``, summed over ranks."""
    metrics = SegmentationMetrics(classes, config.ignore_index)
    sampler: DistributedSampler | None = (
        DistributedSampler(dataset, shuffle=False) if dist.is_initialized() else None)
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
    data = _data(config)
    train_set, val_set, test_set, classes = data.train, data.val, data.test, data.classes
    model = _build(config, classes)
    objective = _objective(config, model, classes).to(device)
    optimizer = torch.optim.Adam(objective.parameters(), lr=config.lr)
    result = RunResult(config=asdict(config), taps=list(getattr(objective, "taps", ())),
                       class_names=data.class_names)
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
        example = (config.batch_size, 3, config.size, config.size)
        arithmetic = adapter_arithmetic(objective, example) if isinstance(objective, IMacHSR) else None
        _say(describe_run(config, result.taps, arithmetic))
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
            save_atomically({"objective": objective.state_dict(),
                             "optimizer": optimizer.state_dict(), "rng": torch.get_rng_state(),
                             "epoch": epoch, "history": result.history,
                             "config": asdict(config)}, state_path)
            save_atomically(objective.model.state_dict(), out / "model.pt")
    result.seconds = time.perf_counter() - began
    result.test = evaluate(objective.model, test_set, classes, config, device)
    if rank == 0 and config.write_artefacts:
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomically(json.dumps(asdict(result), indent=1), out / "metrics.json")
        if not config.keep_state:  # only an interrupted run needs it; 3x the model's size
            state_path.unlink(missing_ok=True)
        from ..figures import plot_curves

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
        sampler: DistributedSampler = DistributedSampler(dataset, shuffle=True, seed=config.seed,
                                                         drop_last=True)
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


def describe_run(config: TrainConfig, taps: Sequence[str],
                 arithmetic: AdapterArithmetic | None = None) -> str:
    """The line a run starts with: what trains, on what, where the taps are and, given their
    count, what the adapters add to each step's arithmetic."""
    where = f"{config.model} on {config.data}, {config.epochs} epochs at batch {config.batch_size}"
    if config.method == "plain":
        return f"[{arm_name(config)}] {where}: output cross-entropy only"
    estimator = {"eq1": "the paper's Eq. 1 (cross-entropy)"}.get(
        canonical_estimator(config.mi), f"Eq. 1 estimated by {canonical_estimator(config.mi)}")
    return (f"[{arm_name(config)}] {where}: {len(taps)} taps ({', '.join(taps)}), "
            f"{estimator} per tap through {config.adapter} adapters, {config.schedule} weights"
            + (f", Eq. 2 negative entropy at beta {config.beta}" if config.beta else "")
            + (f"; {arithmetic.summary()}" if arithmetic is not None else ""))


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
