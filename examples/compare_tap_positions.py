"""Where should deep supervision go? Compare the tap positions on your model.

``position`` decides which depths ``select_taps`` favours: ``uniform`` (the default: spread
over the network), ``input`` (the first half, as in the iMacHSR paper), ``central`` or
``output``. This prints the taps each position picks, then trains one model per position and
seed (plus output-only as the baseline) on DigitCanvas and prints validation mIoU, each arm's
mean difference to output-only over the seeds, and the spread of that difference.

Runs of the same seed start from the same weights and see the same batches, so differences
between arms are paired. Two or three seeds only show a direction; docs/results.md uses eight,
with confidence intervals (benchmarks/experiments/run_experiments.py does that at scale).

Run:  python examples/compare_tap_positions.py                     (about 25 minutes on a CPU)
      python examples/compare_tap_positions.py --seeds 4 --model smp:FPN:resnet18
      python examples/compare_tap_positions.py --smoke               (to check it runs)
"""

from __future__ import annotations

import argparse
import statistics

import tapfinder
from imachsr.train import TrainConfig, train
from tapfinder.taps.positions import POSITIONS
from tapfinder.zoo import build_model


def show_taps(spec: str, size: int, k: int) -> None:
    arch = tapfinder.trace(build_model(spec), (2, 3, size, size))
    candidates = tapfinder.find_candidates(arch)
    print(f"{spec}: the taps each position picks (relative depth in brackets)")
    for position in POSITIONS:
        taps = tapfinder.select_taps(arch, candidates, k=k, position=position)
        print(f"  {position:8} " + ", ".join(f"{t.node} ({arch[t.node]['depth']:.2f})" for t in taps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    demo = TrainConfig()  # imachsr train's defaults: DigitCanvas 64x64, 8 epochs
    parser.add_argument("--model", default=demo.model)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=demo.epochs)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="a few steps on tiny canvases")
    options = parser.parse_args()
    size, length, steps = (32, 8, 1) if options.smoke else (demo.size, demo.train_length, None)
    epochs = 1 if options.smoke else options.epochs
    seeds = range(1 if options.smoke else options.seeds)

    show_taps(options.model, size, options.k)
    arms = {"output-only": {"method": "plain"}, **{p: {"position": p} for p in POSITIONS}}
    scores: dict[str, list[float]] = {arm: [] for arm in arms}
    for seed in seeds:
        for arm, options_of_arm in arms.items():
            config = TrainConfig(model=options.model, k=options.k, seed=seed, size=size,
                                 epochs=epochs, train_length=length,
                                 eval_length=length if options.smoke else demo.eval_length,
                                 limit_steps=steps, write_artefacts=False, **options_of_arm)
            result = train(config)  # prints its taps and one line per epoch
            scores[arm].append(result.history[-1]["val"]["mIoU"] * 100)

    print(f"\nvalidation mIoU after {epochs} epochs, {len(seeds)} seed(s):")
    baseline = scores["output-only"]
    for arm, values in scores.items():
        line = f"  {arm:12} {statistics.mean(values):6.2f}"
        if arm != "output-only":
            differences = [a - b for a, b in zip(values, baseline)]
            spread = f" (seeds: {', '.join(f'{d:+.1f}' for d in differences)})"
            line += f"   vs output-only {statistics.mean(differences):+.2f}{spread}"
        print(line)


if __name__ == "__main__":
    main()
