"""``imachsr train --compare``: output-only and iMacHSR from the same seed and data order, the
paper's Table 2 layout with every class's IoU, what the difference means against the
paired-seed evidence, and the figures."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..data.splits import run_data
from .config import RunResult, TrainConfig
from .loop import build_model_for, train

__all__ = ["compare", "comparison_table", "comparison_verdict", "measured_evidence"]


def compare(config: TrainConfig) -> tuple[RunResult, RunResult]:
    """Train output-only and iMacHSR from the same seed and data order; print Table 2."""
    base = Path(config.out)
    runs = []
    for method in ("plain", "imachsr"):
        variant = TrainConfig(**{**asdict(config), "method": method, "out": str(base / method)})
        runs.append(train(variant))
    if not dist.is_initialized() or dist.get_rank() == 0:
        from ..figures import plot_curves, plot_predictions

        print(comparison_table(*runs))
        plot_curves(runs, ["output-only", "iMacHSR"], base)
        data = run_data(config.data, root=config.data_root, size=config.size, seed=config.seed,
                        train_length=config.train_length, eval_length=config.eval_length)
        models = [_trained_model(config, data.classes, base / name / "model.pt")
                  for name in ("plain", "imachsr")]
        figure = plot_predictions(models, ["output-only", "iMacHSR"], data.test,
                                  data.class_names, base / "qualitative.png")
        print(f"figures: {base / 'loss_curve.png'}, {base / 'metric_curve.png'}, {figure}")
    return runs[0], runs[1]


def _trained_model(config: TrainConfig, classes: int, weights: Path) -> nn.Module:
    """The run's model class with the weights a run saved, in eval mode."""
    model = build_model_for(config.model, classes)
    model.load_state_dict(torch.load(weights, map_location="cpu"))
    return model.eval()


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
    worth, against the paired-seed evidence (:func:`measured_evidence`).

    >>> a, b = RunResult({"seed": 0}, test={"mIoU": 0.5}), RunResult({"seed": 0}, test={"mIoU": 0.52})
    >>> comparison_verdict(a, b).split(".")[0]
    'iMacHSR scored 2.0 mIoU points above output-only on this seed'
    """
    difference = (scheme.test["mIoU"] - plain.test["mIoU"]) * 100
    side = "above" if difference > 0 else "below"
    evidence = measured_evidence()
    means = [regime["mean"] for regime in evidence["regimes"].values()]
    seeds = min(regime["n"] for regime in evidence["regimes"].values())
    gain = f"{min(means):.1f} to {max(means):.1f}" if len(means) > 1 else f"{means[0]:.1f}"
    direction = "above" if min(means) >= 0 else "below" if max(means) <= 0 else "around"
    return (f"iMacHSR scored {abs(difference):.1f} mIoU points {side} output-only on this seed "
            f"({plain.config['seed']}). Runs of one seed differ by a few points by chance, so one "
            f"seed does not decide which is better; over {seeds} paired seeds (docs/results.md) "
            f"{evidence['what']} scored {gain} points {direction} output-only "
            f"{evidence['where']}.")


def measured_evidence() -> dict[str, Any]:
    """The paired-seed evidence a comparison quotes: ``what`` was measured, ``where``, and per
    regime the ``mean`` test-mIoU difference to output-only with its 95% interval (``low``,
    ``high``) over ``n`` seeds. ``benchmarks/experiments/report.py`` writes it from the records
    in ``docs/results/``, so the figures follow the records."""
    text = resources.files("imachsr").joinpath("evidence.json").read_text()
    return json.loads(text)
