"""Time the full analysis (trace, every rule, ranking) against ``torchview.draw_graph``.

Both run in the same process on the same models, so the ratio compares like with like.
Usage::

    python benchmarks/bench_analyze.py [--repeats 5] [--models torchvision:resnet18,...]

Target (rules issue): the whole analysis faster than torchview on every model of the
foundation issue's list.
"""

from __future__ import annotations

import argparse
import warnings

import torch
from bench_trace import MODELS, median_seconds

import tapfinder
from tapfinder.zoo import build_model


def analyse(model: torch.nn.Module, shape: tuple[int, ...]) -> list[tapfinder.Tap]:
    arch = tapfinder.trace(model, shape)
    return tapfinder.select_taps(arch, tapfinder.find_candidates(arch), k=3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", default=",".join(MODELS))
    arguments = parser.parse_args()
    import torchview

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch 1, "
          f"median of {arguments.repeats}; times in ms")
    print(f"{'model':38} {'analysis':>9} {'torchview':>9} {'ratio':>6}")
    worst = 0.0
    for spec in arguments.models.split(","):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = build_model(spec)
            side = 299 if "inception" in spec else 224
            shape = (1, 3, side, side)
            t_analysis = median_seconds(lambda: analyse(model, shape), arguments.repeats)
            t_view = median_seconds(
                lambda: torchview.draw_graph(model, input_size=shape, device="cpu", save_graph=False),
                arguments.repeats,
            )
        worst = max(worst, t_analysis / t_view)
        print(f"{spec:38} {t_analysis * 1e3:9.1f} {t_view * 1e3:9.1f} {t_analysis / t_view:6.2f}")
    print(f"worst ratio analysis/torchview {worst:.2f} (target < 1)")


if __name__ == "__main__":
    main()
