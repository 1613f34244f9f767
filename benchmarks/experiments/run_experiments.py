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

# The regimes: a model family, its model and a training protocol. The digits96 regimes are the
# DigitCanvas protocol at two data sizes with the same number of optimiser steps and the learning
# rate decayed to 0 (cosine), so every run ends on its plateau; their horizontal flips stay on, as
# when their records were made (imachsr train no longer flips digits). The digits64 regimes are
# the demo's own settings (imachsr train's defaults: 64x64, 1,024 canvases, 8 epochs at batch 8),
# evaluated on 256 canvases; small enough for a 2-core CPU (about 3 to 10 minutes a run). The
# scenes128 regimes need a GPU: ShapeScenes at 128x128, 1,024 scenes, 16 epochs at batch 16.
DIGITS96 = {"data": "digits", "size": 96, "train_length": 1024, "eval_length": 256, "epochs": 10, "batch_size": 16,
            "lr": 1e-3, "lr_schedule": "cosine", "flip": True}
DIGITS64 = {"data": "digits", "size": 64, "train_length": 1024, "eval_length": 256, "epochs": 8, "batch_size": 8,
            "lr": 2e-3, "lr_schedule": "cosine", "flip": None}
SCENES128 = {"data": "scenes", "size": 128, "train_length": 1024, "eval_length": 256,
             "epochs": 16, "batch_size": 16, "lr": 1e-3, "lr_schedule": "cosine", "flip": None}
REGIMES: dict[str, dict] = {
    "digits96": {"family": "deeplabv3plus", "model": "smp:DeepLabV3Plus:resnet18", **DIGITS96},
    "digits96-lowdata": {"family": "deeplabv3plus", "model": "smp:DeepLabV3Plus:resnet18",
                         **DIGITS96, "train_length": 256, "epochs": 40},
    # The demo's regime: its model and settings (README's main command).
    "deeplabv3plus-digits64": {"family": "deeplabv3plus",
                               "model": "smp:DeepLabV3Plus:tu-resnet10t", **DIGITS64},
    "unet-digits64": {"family": "unet", "model": "smp:Unet:tu-resnet10t", **DIGITS64},
    # A second U-Net, held out from the choice of the decoder rule (made on the one above).
    "unet-convnext-digits64": {"family": "unet", "model": "smp:Unet:tu-convnext_atto",
                               **DIGITS64},
    "pvt-fpn-digits64": {"family": "pvt-fpn", "model": "smp:FPN:tu-pvt_v2_b0", **DIGITS64},
    "convnext-fpn-digits64": {"family": "convnext-fpn", "model": "smp:FPN:tu-convnext_atto",
                              **DIGITS64},
    "hf-segformer-digits64": {"family": "hf-segformer",
                              "model": "hf:SegformerForSemanticSegmentation", **DIGITS64},
    # The harder data set: ShapeScenes (21 classes occluding each other on textures) at 128x128.
    "unet-scenes128": {"family": "unet", "model": "smp:Unet:tu-resnet10t", **SCENES128},
    "convnext-fpn-scenes128": {"family": "convnext-fpn", "model": "smp:FPN:tu-convnext_atto",
                               **SCENES128},
}

# Taps named by hand, per model: (nodes, why). ``expert`` is what a practitioner would pick for
# the family: the encoder's stage outputs at strides 8 and 16 and the decoder's fusion output
# (mmsegmentation and PSPNet put their auxiliary head on the stride-16 stage), or, for a U-Net,
# the decoder's outputs at strides 8, 4 and 2 (nnU-Net supervises every decoder scale).
# ``mid-block`` is what position="uniform" chose before 2026-12-03, when a node inside a residual
# block could be a tap (the arms recorded before then ran on it); ``block-end`` moves its middle
# tap to the output of the same block, so the two differ in that alone.
TAP_SETS: dict[str, dict[str, tuple[tuple[str, ...], str]]] = {
    "smp:DeepLabV3Plus:resnet18": {
        "expert": (("encoder_layer2_1_relu_1", "encoder_layer3_1_relu_1", "decoder_block2_2"),
                   "the outputs of ResNet layer2 (stride 8) and layer3 (stride 16) and of the "
                   "decoder's 3x3 fusion convolution after the skip join"),
        "mid-block": (("encoder_layer1_1_relu_1", "encoder_layer3_0_relu", "cat_1"),
                      "layer1's output, the first ReLU inside layer3's first block, the "
                      "decoder's skip join"),
        "block-end": (("encoder_layer1_1_relu_1", "encoder_layer3_0_relu_1", "cat_1"),
                      "as mid-block with layer3's first block read at its output"),
    },
    "smp:DeepLabV3Plus:tu-resnet10t": {
        "expert": (("encoder_model_layer2_0_act2", "encoder_model_layer3_0_act2",
                    "decoder_block2_2"),
                   "the outputs of ResNet layer2 (stride 8) and layer3 (stride 16) and of the "
                   "decoder's 3x3 fusion convolution after the skip join"),
        "mid-block": (("encoder_model_maxpool", "encoder_model_layer3_0_act1", "cat_1"),
                      "the stem's max-pool, the first activation inside layer3's block (the "
                      "anti-aliasing placeholder the old choice named passes it on), the "
                      "decoder's skip join"),
        "block-end": (("encoder_model_maxpool", "encoder_model_layer3_0_act2", "cat_1"),
                      "as mid-block with layer3's block read at its output"),
    },
    "smp:Unet:tu-resnet10t": {
        "expert": (("decoder_blocks_1_conv2_2", "decoder_blocks_2_conv2_2",
                    "decoder_blocks_3_conv2_2"),
                   "the decoder blocks' outputs at strides 8, 4 and 2, as nnU-Net supervises "
                   "every decoder scale but the last"),
        "depth-spread": (("encoder_model_act1", "encoder_model_layer4_0_act2", "cat_3"),
                         "what position='uniform' chose on a U-Net before it tapped a U-shaped "
                         "decoder's scales: the stem's activation, the stride-32 bottleneck "
                         "block (2x2 at 64x64) and the decoder's last skip join"),
    },
    "smp:Unet:tu-convnext_atto": {
        "depth-spread": (("add_1", "add_7", "cat_2"),
                         "what position='uniform' chose on this U-Net before it tapped a "
                         "U-shaped decoder's scales: the output of ConvNeXt's first stage "
                         "(stride 4), the fourth of the six blocks of its third (stride 16) "
                         "and the decoder's skip join at stride 4"),
    },
    "smp:FPN:tu-pvt_v2_b0": {
        "expert": (("contiguous_1", "contiguous_2", "sum_1"),
                   "the outputs of PVTv2's stages 2 (stride 8) and 3 (stride 16) and the FPN's "
                   "merge of its pyramid levels"),
    },
    "smp:FPN:tu-convnext_atto": {
        "expert": (("add_3", "add_9", "sum_1"),
                   "the outputs of ConvNeXt's stages 2 (stride 8) and 3 (stride 16) and the "
                   "FPN's merge of its pyramid levels"),
    },
    "hf:SegformerForSemanticSegmentation": {
        "expert": (("contiguous_9", "contiguous_14", "decode_head_activation"),
                   "the outputs of MiT's stages 2 (stride 8) and 3 (stride 16) and the decode "
                   "head's fusion (its 1x1 convolution, norm and activation after the concat)"),
    },
}

# The arms: (options, description). Every scheme option is spelled out, so an arm means the same
# run whatever the library's defaults are; the arm whose options equal the defaults is marked
# ``default`` in its records. ``taps_from`` says where the taps come from: ``auto`` (the
# library's choice), a set of TAP_SETS, or ``random`` (3 of the candidate nodes that pass the
# guards, drawn uniformly with a seed per run); ``compute_matched`` gives output-only training
# the default's extra time as extra epochs.
# The records of the PAPER arms hold "spacing": 2, in layers, the unit before bases; on their
# model 1 base picks the same taps (tests/benchmarks/test_experiments.py checks every arm's
# recorded taps).
PAPER = {"method": "imachsr", "k": 3, "spacing": 1, "resolution": "feature", "alpha": 0.4,
         "beta": 0.01, "normalize_weights": False, "head_width": 256}
SPREAD = {**PAPER, "position": "uniform", "taps_from": "mid-block"}
DEFAULT = {"method": "imachsr", "k": 3, "spacing": 1, "position": "uniform", "mi": "eq1",
           "adapter": "head", "head_width": 256, "schedule": "constant", "alpha": 0.4,
           "beta": 0.0, "resolution": "feature", "normalize_weights": False}
ARMS: dict[str, tuple[dict, str]] = {
    "output-only": ({"method": "plain"}, "output cross-entropy only."),
    "shipped-0.1": (
        {**PAPER, "mi": "joint", "position": "input", "adapter": "linear", "schedule": "constant"},
        "the defaults as shipped in 0.1: this project's per-image joint MI (`mi='joint'`, now "
        "`joint-image`), 3 taps at position `input`, 1x1 adapters, alpha 0.4 and beta 0.01 "
        "held constant."),
    "joint-spread-head-decay": (
        {**SPREAD, "mi": "joint", "adapter": "head", "schedule": "linear"},
        "this project's per-image joint MI (`joint-image`); 3 taps spread over the network "
        "(`position='uniform'` as it chose before 2026-12-03); a 3x3 conv-BN-ReLU head before "
        "each adapter's 1x1; alpha 0.4 and beta 0.01 decayed linearly to 0."),
    "ce-spread-head-decay": (
        {**SPREAD, "mi": "ce", "adapter": "head", "schedule": "linear"},
        "the paper's Eq. 1 (the head's cross-entropy per tap, `mi='ce'`, now `eq1`: also "
        "classic deep supervision) with the same taps, heads and decay."),
    "ce-spread-linear-decay": (
        {**SPREAD, "mi": "ce", "adapter": "linear", "schedule": "linear"},
        "as `ce-spread-head-decay` with the paper's 1x1 adapters instead of heads."),
    "ce-spread-head64-decay": (
        {**SPREAD, "mi": "ce", "adapter": "head", "schedule": "linear", "head_width": 64},
        "as `ce-spread-head-decay` with heads at most 64 channels wide (the decoder tap's 3x3 "
        "convolution 304->64 instead of 304->256: a quarter of the arithmetic)."),
    "ce-spread-head-decay-no-ne": (
        {**SPREAD, "mi": "ce", "adapter": "head", "schedule": "linear", "beta": 0.0},
        "as `ce-spread-head-decay` without the negative-entropy term (beta 0)."),
    "ce-spread-head-constant-no-ne": (
        {**SPREAD, "mi": "ce", "adapter": "head", "schedule": "constant", "beta": 0.0},
        "the default objective (the paper's Eq. 1 per tap through 3x3 heads, constant weights, "
        "no Eq. 2) on the taps `position='uniform'` chose before 2026-12-03, one of them "
        "inside a residual block (`mid-block`)."),
    "ce-spread-head-constant": (
        {**SPREAD, "mi": "ce", "adapter": "head", "schedule": "constant"},
        "as `ce-spread-head-decay` with alpha and beta held constant."),
    "ce-spread-pointwise-constant-no-ne": (
        {**SPREAD, "mi": "ce", "adapter": "pointwise", "schedule": "constant", "beta": 0.0},
        "as `ce-spread-head-constant-no-ne` with each head's 3x3 convolution replaced by a 1x1 "
        "(`adapter='pointwise'`): as wide, a ninth of the arithmetic."),
    "ce-spread-separable-constant-no-ne": (
        {**SPREAD, "mi": "ce", "adapter": "separable", "schedule": "constant", "beta": 0.0},
        "as `ce-spread-head-constant-no-ne` with each head's 3x3 convolution replaced by a "
        "depthwise 3x3 and a 1x1 (`adapter='separable'`): the same reach, about a ninth of the "
        "arithmetic."),
    "default-auto": (
        {**DEFAULT, "taps_from": "auto"},
        "the library's defaults: the paper's Eq. 1 (cross-entropy) per tap through 3x3 heads, "
        "constant weights 0.4, no Eq. 2, on the 3 taps the library chooses."),
    "default-expert": (
        {**DEFAULT, "taps_from": "expert"},
        "the default objective on the taps a practitioner would pick for the family."),
    "default-random": (
        {**DEFAULT, "taps_from": "random"},
        "the default objective on 3 candidate nodes drawn at random (a seed per run)."),
    "default-depth-spread": (
        {**DEFAULT, "taps_from": "depth-spread"},
        "the default objective on the taps spread over the depth that `position='uniform'` "
        "chose on a U-Net before it tapped a U-shaped decoder's scales (the `default-auto` "
        "records of that model until then)."),
    "default-block-end": (
        {**DEFAULT, "taps_from": "block-end"},
        "the default objective on the `mid-block` taps with the mid-block one moved to its "
        "block's output."),
    "joint-batch-auto": (
        {**DEFAULT, "mi": "joint-batch", "taps_from": "auto"},
        "the default with each tap's term the joint MI over the whole batch (`mi='joint-batch'`, "
        "IIC's form) instead of its cross-entropy: a heterogeneous loss (issue 24)."),
    "rmi-auto": (
        {**DEFAULT, "mi": "rmi", "taps_from": "auto"},
        "the default with each tap's term region MI beside cross-entropy, half and half "
        "(`mi='rmi'`, Zhao et al. 2019): a heterogeneous loss (issue 24)."),
    "contrast-auto": (
        {**DEFAULT, "mi": "contrast", "taps_from": "auto"},
        "the default with supervised pixel contrast on each head's hidden embedding (1,024 "
        "anchors, temperature 0.1, weight 0.1) beside its cross-entropy (`mi='contrast'`, Wang "
        "et al. 2021): a heterogeneous loss (issue 24)."),
    # The paper's three ablations (issue 24), each one option of the default moved: the number
    # of taps, their spacing in bases and where along the depth they are favoured.
    **{f"k{k}-auto": ({**DEFAULT, "k": k, "taps_from": "auto"},
                      f"the default with {k} automatic tap{'s' if k > 1 else ''} instead of 3.")
       for k in (1, 2, 4, 5)},
    # Spread over the depth, taps lie further apart than any spacing asks; near the input
    # (the paper's setting) the spacing decides them: compared with `position-input` (1 base).
    **{f"input-spacing{bases}": ({**DEFAULT, "position": "input", "spacing": bases,
                                  "taps_from": "auto"},
                                 f"as `position-input` with its taps at least {bases} bases "
                                 "apart instead of 1.") for bases in (2, 3)},
    **{f"position-{where}": ({**DEFAULT, "position": where, "taps_from": "auto"},
                             f"the default with its taps favoured {words} (`position="
                             f"'{where}'`) instead of spread over the depth.")
       for where, words in (("input", "near the input, the paper's choice"),
                            ("central", "in the middle of the depth"),
                            ("output", "near the output"))},
    "output-only-matched": (
        {"method": "plain", "compute_matched": True},
        "output-only trained for as much longer as `default-auto` took over output-only in this "
        "regime (the median ratio of their times), in whole epochs."),
}
RUN_KEYS = ("taps_from", "compute_matched")  # arm options that are not TrainConfig fields


def is_default(options: dict) -> bool:
    """Whether an iMacHSR arm's options are the library's defaults."""
    from imachsr.train import TrainConfig

    from imachsr.losses import canonical_estimator

    defaults = TrainConfig()
    spelled = {**options, "mi": canonical_estimator(options.get("mi", defaults.mi))}
    return (options["method"] == "imachsr" and options.get("taps_from", "auto") == "auto"
            and all(getattr(defaults, key) == value for key, value in spelled.items()
                    if key not in RUN_KEYS))


def named_taps(regime: str, taps_from: str) -> tuple[str, ...]:
    """The taps of a TAP_SETS set for a regime's model."""
    return TAP_SETS[REGIMES[regime]["model"]][taps_from][0]


def random_taps(model_spec: str, size: int, seed: int, k: int = 3) -> list[str]:
    """``k`` of the candidate nodes that pass the guards (what the library chooses among) on
    the model of ``model_spec`` with 11 classes, drawn uniformly with ``seed``, in execution
    order."""
    import random
    import warnings

    import torch

    import tapfinder
    from imachsr.train import build_model_for
    from tapfinder.taps.selection import merge_candidates

    with torch.device("meta"):
        model = build_model_for(model_spec, 11)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arch = tapfinder.trace(model, (2, 3, size, size))
    nodes = sorted(e.node for e in merge_candidates(arch, tapfinder.find_candidates(arch)))
    order = {name: index for index, name in enumerate(arch.graph)}
    return sorted(random.Random(f"random-taps/{seed}").sample(nodes, k), key=order.__getitem__)


def matched_epochs(records: Path, regime: str) -> tuple[int, float] | None:
    """Epochs for a compute-matched output-only run: the regime's epochs times the median ratio
    of ``default-auto``'s time to output-only's over the seeds both finished; ``None`` before
    any seed has both."""
    path = records / f"{regime}.jsonl"
    runs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] \
        if path.is_file() else []
    seconds = {(r["arm"], r["seed"]): r["seconds"] for r in runs}
    ratios = [seconds["default-auto", seed] / seconds["output-only", seed]
              for arm, seed in seconds if arm == "output-only"
              and ("default-auto", seed) in seconds]
    if not ratios:
        return None
    import statistics

    ratio = statistics.median(ratios)
    return max(REGIMES[regime]["epochs"], round(REGIMES[regime]["epochs"] * ratio)), ratio


def _matches_nothing(records: Path, regime: str, arm: str) -> bool:
    """A compute-matched arm whose regime's default took no more whole epochs' time than
    output-only: its run would be output-only's again."""
    matched = matched_epochs(records, regime) if ARMS[arm][0].get("compute_matched") else None
    return matched is not None and matched[0] == REGIMES[regime]["epochs"]


def parse_seeds(text: str) -> list[int]:
    """``"0-7"`` or ``"0,2,5"`` -> a list of seeds."""
    if "-" in text:
        low, high = text.split("-")
        return list(range(int(low), int(high) + 1))
    return [int(s) for s in text.split(",")]


def run_one(regime: str, arm: str, seed: int, overrides: dict, records: Path) -> dict:
    """Train one run in this (worker) process; return its record."""
    import sys

    sys.stderr = open(os.devnull, "w")  # many workers' progress bars would interleave
    import torch

    from imachsr.train import TrainConfig, train

    if not torch.cuda.is_available():
        torch.set_num_threads(1)
    options, description = ARMS[arm]
    setting = {key: value for key, value in REGIMES[regime].items() if key != "family"}
    extra = {"family": REGIMES[regime]["family"], "taps_from": None, "compute_matched": False}
    fields = {key: value for key, value in options.items() if key not in RUN_KEYS}
    if options["method"] == "imachsr":
        extra["taps_from"] = taps_from = options.get("taps_from", "auto")
        if taps_from == "random":
            size = overrides.get("size", setting["size"])
            fields["taps"] = ",".join(random_taps(setting["model"], size, seed, options["k"]))
        elif taps_from != "auto":
            fields["taps"] = ",".join(named_taps(regime, taps_from))
    if options.get("compute_matched"):
        matched = matched_epochs(records, regime)
        if matched is None:
            raise RuntimeError("compute-matched: no seed has both output-only and default-auto")
        extra["compute_matched"] = True
        setting["epochs"], extra["matched_ratio"] = matched[0], round(matched[1], 3)
    config = TrainConfig(seed=seed, write_artefacts=False, out=os.devnull,
                         **{**setting, **fields, **overrides})
    started = time.perf_counter()
    result = train(config)
    return {
        "regime": regime, "arm": arm, "seed": seed, **extra,
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
                if _matches_nothing(options.records, *job[:2]):
                    print(f"skipped {job[0]} {job[1]} seed {job[2]}: the default takes no more "
                          "time than output-only here, so it would repeat output-only", flush=True)
                    continue
                running[pool.submit(run_one, *job, overrides, options.records)] = job
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
