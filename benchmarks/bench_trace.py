"""Time ``tapfinder.trace`` against torchview, torchlens and a plain forward pass.

All four run in the same process on the same models and inputs, so the ratios compare like with
like on whatever machine runs this. Usage::

    python benchmarks/bench_trace.py [--repeats 5] [--batch 1] [--models resnet18,swin_t]

Targets (foundation issue): ``trace`` faster than torchview and torchlens on every model, and no
more than 2x a plain no-grad forward pass.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable

import torch

import tapfinder
from tapfinder.zoo import build_model

MODELS = [
    "torchvision:resnet18", "torchvision:resnet50", "torchvision:vit_b_16", "torchvision:swin_t",
    "torchvision:convnext_tiny", "torchvision:efficientnet_b0", "torchvision:mobilenet_v3_large",
    "torchvision:densenet121", "torchvision:regnet_y_400mf", "torchvision:maxvit_t",
    "torchvision:inception_v3", "torchvision:googlenet", "torchvision:deeplabv3_resnet50",
    "torchvision:lraspp_mobilenet_v3_large", "smp:DeepLabV3Plus:resnet18", "smp:Unet:resnet18",
]


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    start = time.perf_counter()
    run()  # warm-up: first calls pay for imports and caches
    first = time.perf_counter() - start
    if first > 5.0:  # warm-up costs are noise at this scale; one sample is enough
        return first
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--models", default=",".join(MODELS))
    arguments = parser.parse_args()
    import torchlens
    import torchview
    from torchlens.options import CaptureOptions

    torch.set_num_threads(torch.get_num_threads())
    header = (
        f"{'model':38} {'forward':>8} {'trace':>8} {'torchview':>9} {'torchlens':>9} "
        f"{'trace/fwd':>9} {'trace/tv':>8} {'trace/tl':>8}"
    )
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {arguments.batch}, "
          f"median of {arguments.repeats}; times in ms")
    print(header)
    worst = {"fwd": 0.0, "tv": 0.0, "tl": 0.0}
    for spec in arguments.models.split(","):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = build_model(spec)
        side = 299 if "inception" in spec else 224
        shape = (arguments.batch, 3, side, side)
        x = torch.randn(shape)

        def forward() -> None:
            with torch.no_grad():
                model(x)

        def draw() -> None:
            torchview.draw_graph(model, input_size=shape, device="cpu", save_graph=False)

        def log() -> None:
            # torchlens wraps torch's functions globally and, by default, leaves them wrapped,
            # which would slow every later measurement in this process (torchview by 100x).
            torchlens.trace(model, x, save=None, capture=CaptureOptions(unwrap_when_done=True))

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t_forward = median_seconds(forward, arguments.repeats)
            t_trace = median_seconds(lambda: tapfinder.trace(model, shape), arguments.repeats)
            t_view = median_seconds(draw, max(1, arguments.repeats // 2))
            t_lens = median_seconds(log, max(1, arguments.repeats // 2))
        ratios = {"fwd": t_trace / t_forward, "tv": t_trace / t_view, "tl": t_trace / t_lens}
        worst = {k: max(worst[k], v) for k, v in ratios.items()}
        print(
            f"{spec:38} {t_forward * 1e3:8.1f} {t_trace * 1e3:8.1f} {t_view * 1e3:9.1f} "
            f"{t_lens * 1e3:9.1f} {ratios['fwd']:9.2f} {ratios['tv']:8.3f} {ratios['tl']:8.3f}"
        )
    print(
        f"worst ratios: trace/forward {worst['fwd']:.2f} (target <= 2), "
        f"trace/torchview {worst['tv']:.3f} (< 1), trace/torchlens {worst['tl']:.3f} (< 1)"
    )


if __name__ == "__main__":
    main()
