"""The paper's comparison and ablations on DigitCanvas, 3 seeds each, as markdown tables.

Every run is one ``python -m imachsr.train`` subprocess on one CPU thread with the same budget
(canvas size, canvases, epochs); runs that share a configuration (the default iMacHSR set-up is
in every ablation) run once. Finished runs are kept under ``--out`` and skipped when the command
is repeated, so an interrupted sweep resumes. Usage::

    python benchmarks/experiments/run_experiments.py [--experiments compare,taps,spacing,position,resolution]
        [--seeds 0,1,2] [--workers 2] [--epochs 8] [--size 64] [--out runs/experiments]

Validation mIoU is the number to choose defaults by; test mIoU is reported beside it. A
difference "exceeds the seed noise" when it is larger than twice the standard error of the
difference of the two means.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

DLV3 = "smp:DeepLabV3Plus:resnet18"
SEGFORMER = "smp:Segformer:mit_b0"
METHODS = [("output-only", {"plain": True}), ("iMacHSR joint MI", {"mi": "joint"}),
           ("iMacHSR variational MI", {"mi": "variational"}),
           ("deep supervision (CE per tap)", {"mi": "ce"})]
EXPERIMENTS: dict[str, list[tuple[str, dict]]] = {
    "compare": [(f"{model.split(':', 1)[1]} / {label}", {"model": model, **overrides})
                for model in (DLV3, SEGFORMER) for label, overrides in METHODS],
    "taps": [("output-only", {"plain": True})] + [(f"K = {k}", {"k": k}) for k in range(1, 6)],
    "spacing": [(f"spacing {s}", {"spacing": s}) for s in (1, 2, 3, 8, 12)],
    "position": [(p, {"position": p}) for p in ("input", "central", "output")],
    "resolution": [(f"MI at the {r} size", {"resolution": r}) for r in ("label", "feature")],
}


# The protocol's iMacHSR settings, spelled out so "K = 3" and "spacing 2" are the same run. The
# runs compare taps with labels at the label size (imachsr's default when they were made).
SCHEME_DEFAULTS = {"mi": "joint", "k": 3, "spacing": 2, "position": "input", "resolution": "label"}


def normalised(arguments: dict) -> dict:
    return arguments if arguments.get("plain") else {**SCHEME_DEFAULTS, **arguments}


def run_id(arguments: dict) -> str:
    """A run's folder name. ``--resolution label`` is left out: the option came after the first
    runs, which used label resolution without naming it."""
    named = {k: v for k, v in arguments.items() if (k, v) != ("resolution", "label")}
    return hashlib.sha1(json.dumps(named, sort_keys=True).encode()).hexdigest()[:12]


def command_line(arguments: dict) -> list[str]:
    words = [sys.executable, "-m", "imachsr.train"]
    for key, value in sorted(arguments.items()):
        flag = "--" + key.replace("_", "-")
        words += [flag] if value is True else [flag, str(value)]
    return words


def run_one(arguments: dict, out: Path, launch: bool = True) -> dict | None:
    """The run's metrics.json, or None when it failed (the log's last line is printed) or, with
    ``launch`` off, has not run yet."""
    folder = out / run_id(arguments)
    metrics = folder / "metrics.json"
    if not metrics.is_file():
        if not launch:
            return None
        command = command_line({**arguments, "out": str(folder)})
        environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "log.txt", "w") as log:
            log.write(" ".join(command) + "\n")
            log.flush()
            code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT,
                                  env=environment).returncode
        if code:
            last = (folder / "log.txt").read_text().strip().splitlines()[-1]
            print(f"FAILED ({code}) {' '.join(command[2:])}\n  {last}", flush=True)
            return None
    print(f"{time.strftime('%H:%M:%S')} done {folder.name}", flush=True)
    return json.loads(metrics.read_text())


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def exceeds_noise(a: list[float], b: list[float]) -> bool:
    (mean_a, sd_a), (mean_b, sd_b) = mean_std(a), mean_std(b)
    error = math.sqrt(sd_a ** 2 / len(a) + sd_b ** 2 / len(b))
    return abs(mean_a - mean_b) > 2 * error


def pm(fractions: list[float]) -> str:
    """Mean ± standard deviation of fractions, as percentages."""
    mean, sd = mean_std([v * 100 for v in fractions])
    return f"{mean:.2f} ± {sd:.2f}"


def table(name: str, rows: list[tuple[str, list[dict]]]) -> str:
    """One markdown table: mean +- std over seeds; the change is against the table's first row
    (of the same model, for the comparison)."""
    lines = [f"### {name}", "",
             "| set-up | val mIoU | test mIoU | test mF1 | test mPre | test mRec | "
             "test mIoU vs first row | beyond noise? | s / run |",
             "|---|---|---|---|---|---|---|---|---|"]
    references: dict[str, list[float]] = {}
    for label, runs in rows:
        results = [r for r in runs if r is not None]
        if not results:
            lines.append(f"| {label} | not run | | | | | | | |")
            continue
        label = label if len(results) == len(runs) else f"{label} ({len(results)} seeds)"
        test = {key: [r["test"][key] for r in results] for key in ("mIoU", "mF1", "mPre", "mRec")}
        val = [r["history"][-1]["val"]["mIoU"] for r in results]
        group = label.split(" / ")[0] if " / " in label else ""
        reference = references.setdefault(group, test["mIoU"])
        change = (statistics.fmean(test["mIoU"]) - statistics.fmean(reference)) * 100
        noise = "—" if reference is test["mIoU"] else (
            "yes" if exceeds_noise(test["mIoU"], reference) else "no")
        seconds = statistics.fmean(r["seconds"] for r in results)
        lines.append(f"| {label} | {pm(val)} | {pm(test['mIoU'])} | {pm(test['mF1'])} | "
                     f"{pm(test['mPre'])} | {pm(test['mRec'])} | {change:+.2f} | {noise} | "
                     f"{seconds:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", default=",".join(EXPERIMENTS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--train-length", type=int, default=512)
    parser.add_argument("--eval-length", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path("runs/experiments"))
    parser.add_argument("--report-only", action="store_true",
                        help="print the tables from the runs finished so far; launch nothing")
    options = parser.parse_args()
    budget = {"epochs": options.epochs, "size": options.size, "data": "digits",
              "train_length": options.train_length, "eval_length": options.eval_length}
    seeds = [int(s) for s in options.seeds.split(",")]
    plan = {name: [(label, [normalised({"model": DLV3, **budget, **overrides, "seed": seed})
                            for seed in seeds]) for label, overrides in EXPERIMENTS[name]]
            for name in options.experiments.split(",")}
    unique = {run_id(a): a for rows in plan.values() for _, runs in rows for a in runs}
    print(f"{len(unique)} distinct runs, {options.workers} at a time", flush=True)
    start = time.perf_counter()
    with ThreadPoolExecutor(options.workers) as pool:
        results = dict(zip(unique, pool.map(
            lambda a: run_one(a, options.out, launch=not options.report_only), unique.values())))
    print(f"done in {(time.perf_counter() - start) / 60:.1f} min\n")
    for name, rows in plan.items():
        print(table(name, [(label, [results[run_id(a)] for a in runs]) for label, runs in rows]))
        print()


if __name__ == "__main__":
    main()
