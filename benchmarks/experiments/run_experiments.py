"""Paired-seed experiments: iMacHSR arms against output-only training, many runs at once.

Each run is ``imachsr.train.train`` in a worker process (one GPU shared by all workers, or one
CPU thread each). Seed ``s`` fixes the weights, the canvases and the data order, so every arm of
a seed sees the same model and data: the comparison is paired. Every finished run is appended at
once to ``<records>/<regime>.jsonl`` (see ``report.py`` for the keys); a repeated command skips
the (regime, arm, seed) runs already recorded, so an interrupted sweep resumes. Runs are issued
seed by seed, so whatever finishes forms complete pairs first; ``--deadline`` stops issuing runs
that would not finish in time (judged from the runs finished so far). Usage::

    python benchmarks/experiments/run_experiments.py --regimes digits96,digits96-lowdata \\
        --arms all [--later-arms ARM,...] --seeds 0-7 --workers 14 [--deadline 420]
        [--records docs/results] [--smoke]

then ``python benchmarks/experiments/report.py`` writes ``docs/results.md``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict
from pathlib import Path

# The regimes: the DigitCanvas protocol at two data sizes, the same number of optimiser steps,
# the learning rate decayed to 0 (cosine) so that every run ends on its plateau. Horizontal flips
# stay on, as when the records in docs/results/ were made (imachsr train no longer flips digits).
REGIMES: dict[str, dict] = {
    "digits96": {"size": 96, "train_length": 1024, "eval_length": 256, "epochs": 10,
                 "batch_size": 16, "lr": 1e-3, "lr_schedule": "cosine", "flip": True},
    "digits96-lowdata": {"size": 96, "train_length": 256, "eval_length": 256, "epochs": 40,
                         "batch_size": 16, "lr": 1e-3, "lr_schedule": "cosine", "flip": True},
}
MODEL = "smp:DeepLabV3Plus:resnet18"

# The arms: (options of TrainConfig, description). Every scheme option is spelled out, so an arm
# means the same run whatever the library's defaults are; the arm whose options equal the
# defaults is marked ``default`` in its records.
# The records hold "spacing": 2, in layers, the unit before bases; on this model 1 base picks the
# same taps (tests/benchmarks/test_experiments.py checks every arm's recorded taps).
PAPER = {"method": "imachsr", "k": 3, "spacing": 1, "resolution": "feature", "alpha": 0.4,
         "beta": 0.01, "normalize_weights": False, "head_width": 256}
ARMS: dict[str, tuple[dict, str]] = {
    "output-only": ({"method": "plain"}, "output cross-entropy only."),
    "shipped-0.1": (
        {**PAPER, "mi": "joint", "position": "input", "adapter": "linear", "schedule": "constant"},
        "the defaults as shipped in 0.1: joint MI, 3 taps at position `input`, 1x1 adapters, "
        "alpha 0.4 and beta 0.01 held constant."),
    "joint-spread-head-decay": (
        {**PAPER, "mi": "joint", "position": "uniform", "adapter": "head", "schedule": "linear"},
        "joint MI; 3 taps spread over the network (`position='uniform'`); a 3x3 conv-BN-ReLU "
        "head before each adapter's 1x1; alpha 0.4 and beta 0.01 decayed linearly to 0."),
    "ce-spread-head-decay": (
        {**PAPER, "mi": "ce", "position": "uniform", "adapter": "head", "schedule": "linear"},
        "classic deep supervision (cross-entropy per tap) with the same taps, heads and decay."),
    "ce-spread-linear-decay": (
        {**PAPER, "mi": "ce", "position": "uniform", "adapter": "linear", "schedule": "linear"},
        "as `ce-spread-head-decay` with the paper's 1x1 adapters instead of heads."),
    "ce-spread-head64-decay": (
        {**PAPER, "mi": "ce", "position": "uniform", "adapter": "head", "schedule": "linear",
         "head_width": 64},
        "as `ce-spread-head-decay` with heads at most 64 channels wide (the decoder tap's 3x3 "
        "convolution 304->64 instead of 304->256: a quarter of the arithmetic)."),
    "ce-spread-head-decay-no-ne": (
        {**PAPER, "mi": "ce", "position": "uniform", "adapter": "head", "schedule": "linear",
         "beta": 0.0},
        "as `ce-spread-head-decay` without the negative-entropy term (beta 0)."),
    "ce-spread-head-constant-no-ne": (
        {**PAPER, "mi": "ce", "position": "uniform", "adapter": "head", "schedule": "constant",
         "beta": 0.0},
        "as `ce-spread-head-constant` without the negative-entropy term (beta 0)."),
    "ce-spread-head-constant": (
        {**PAPER, "mi": "ce", "position": "uniform", "adapter": "head", "schedule": "constant"},
        "as `ce-spread-head-decay` with alpha and beta held constant."),
    "ce-spread-pointwise-constant-no-ne": (
        {**PAPER, "mi": "ce", "position": "uniform", "adapter": "pointwise",
         "schedule": "constant", "beta": 0.0},
        "as `ce-spread-head-constant-no-ne` with each head's 3x3 convolution replaced by a 1x1 "
        "(`adapter='pointwise'`): as wide, a ninth of the arithmetic."),
    "ce-spread-separable-constant-no-ne": (
        {**PAPER, "mi": "ce", "position": "uniform", "adapter": "separable",
         "schedule": "constant", "beta": 0.0},
        "as `ce-spread-head-constant-no-ne` with each head's 3x3 convolution replaced by a "
        "depthwise 3x3 and a 1x1 (`adapter='separable'`): the same reach, about a ninth of the "
        "arithmetic."),
}


def is_default(options: dict) -> bool:
    """Whether an iMacHSR arm's options are the library's defaults."""
    from imachsr.train import TrainConfig

    defaults = TrainConfig()
    return options["method"] == "imachsr" and all(
        getattr(defaults, key) == value for key, value in options.items())


def parse_seeds(text: str) -> list[int]:
    """``"0-7"`` or ``"0,2,5"`` -> a list of seeds."""
    if "-" in text:
        low, high = text.split("-")
        return list(range(int(low), int(high) + 1))
    return [int(s) for s in text.split(",")]


def run_one(regime: str, arm: str, seed: int, overrides: dict) -> dict:
    """Train one run in this (worker) process; return its record."""
    import sys

    sys.stderr = open(os.devnull, "w")  # many workers' progress bars would interleave
    import torch

    from imachsr.train import TrainConfig, train

    if not torch.cuda.is_available():
        torch.set_num_threads(1)
    options, description = ARMS[arm]
    config = TrainConfig(model=MODEL, data="digits", seed=seed, write_artefacts=False,
                         out=os.devnull, **{**REGIMES[regime], **options, **overrides})
    started = time.perf_counter()
    result = train(config)
    return {
        "regime": regime, "arm": arm, "seed": seed,
        "default": is_default(options), "baseline": options["method"] == "plain",
        "test": result.test, "val": [epoch["val"]["mIoU"] for epoch in result.history],
        "taps": result.taps, "description": description, "config": asdict(config),
        "seconds": round(time.perf_counter() - started, 1),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
    }


def recorded(records: Path, regime: str) -> set[tuple[str, int]]:
    path = records / f"{regime}.jsonl"
    if not path.is_file():
        return set()
    return {(r["arm"], r["seed"]) for r in map(json.loads, path.read_text().splitlines()) if r}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regimes", default=",".join(REGIMES))
    parser.add_argument("--arms", default="all", help="comma-separated arm names, or all")
    parser.add_argument("--later-arms", default="",
                        help="arms whose runs are issued only after every run of --arms")
    parser.add_argument("--seeds", default="0-7")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--deadline", type=float, help="seconds after which no run is started "
                        "that would not finish in time")
    parser.add_argument("--records", type=Path, default=Path("docs/results"))
    parser.add_argument("--smoke", action="store_true",
                        help="tiny runs (32x32, 16 canvases, 2 epochs) to test the pipeline")
    options = parser.parse_args()
    arms = list(ARMS) if options.arms == "all" else options.arms.split(",")
    overrides = {"size": 32, "train_length": 16, "eval_length": 8, "epochs": 2,
                 "batch_size": 4} if options.smoke else {}
    options.records.mkdir(parents=True, exist_ok=True)
    jobs = [(regime, arm, seed) for group in (arms, [a for a in options.later_arms.split(",") if a])
            for seed in parse_seeds(options.seeds) for regime in options.regimes.split(",")
            for arm in group if (arm, seed) not in recorded(options.records, regime)]
    print(f"{len(jobs)} runs to do, {options.workers} at a time", flush=True)
    started, durations = time.perf_counter(), []
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(options.workers, mp_context=context) as pool:
        running: dict[Future, tuple] = {}
        while jobs or running:
            while jobs and len(running) < options.workers:
                elapsed = time.perf_counter() - started
                expected = max(durations) if durations else 0.0
                if options.deadline is not None and elapsed + expected > options.deadline:
                    print(f"deadline: {len(jobs)} runs not started", flush=True)
                    jobs = []
                    break
                job = jobs.pop(0)
                running[pool.submit(run_one, *job, overrides)] = job
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                regime, arm, seed = running.pop(future)
                try:
                    record = future.result()
                except Exception as error:  # noqa: BLE001 - one failed run must not end the sweep
                    print(f"FAILED {regime} {arm} seed {seed}: {error!r}", flush=True)
                    continue
                durations.append(record["seconds"])
                with open(options.records / f"{regime}.jsonl", "a") as file:
                    file.write(json.dumps(record) + "\n")
                print(f"{time.perf_counter() - started:6.0f}s {regime} {arm} seed {seed}: test mIoU "
                      f"{record['test']['mIoU'] * 100:.2f} ({record['seconds']:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
