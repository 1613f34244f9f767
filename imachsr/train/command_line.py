"""The command line of ``imachsr train`` (``imachsr train --help``): arguments to a
:class:`~imachsr.train.TrainConfig`, then one run or a comparison; bad arguments exit with 2 and
a one-line message."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import torch.distributed as dist

import tapfinder.zoo
from tapfinder.taps.positions import POSITIONS

from ..adapters import CAPACITIES
from ..data.splits import DATA_NAMES
from ..losses import ESTIMATOR_ALIASES, ESTIMATORS
from ..weighting import SCHEDULES
from .comparison import compare
from .config import TrainConfig, UsageError
from .loop import train

__all__ = ["main"]


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imachsr train", description="Train a segmentation model with iMacHSR "
        "(or output-only with --plain, or both with --compare), evaluate it and write metrics, "
        "checkpoints and figures.", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    defaults = TrainConfig()
    model = parser.add_argument_group("model and data")
    model.add_argument("--model", default=defaults.model, help=tapfinder.zoo.SPEC_HELP)
    model.add_argument("--data", choices=DATA_NAMES, default=defaults.data,
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
    scheme.add_argument("--position", choices=POSITIONS, default=defaults.position,
                        help="where auto taps go: uniform spreads them over the depth")
    scheme.add_argument("--mi", choices=(*ESTIMATORS, *ESTIMATOR_ALIASES), default=defaults.mi,
                        metavar="{" + ",".join(ESTIMATORS) + "}",
                        help="the estimator of each tap's Eq. 1 term: eq1 is the paper's (the "
                        "tap adapter's cross-entropy over every pixel, a lower bound on the "
                        "tap's mutual information with the labels); joint-image and "
                        "variational-image are this project's per-image alternatives, which "
                        "measured worse; joint-batch (the joint MI over the whole batch), "
                        "rmi (region MI beside cross-entropy) and contrast (pixel contrast on "
                        "each head's embedding beside cross-entropy) are heterogeneous losses "
                        "from the literature, not yet measured here (earlier names ce, joint, "
                        "variational also work)")
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
    arguments = vars(parser().parse_args(argv))
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
