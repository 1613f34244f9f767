"""Training-step cost of iMacHSR against a plain output-only step, on the CPU.

smp DeepLabV3Plus(resnet18), batch 4 at 256x512, Adam. Configurations, each measured in its own
subprocess so that peak memory (the process's maximum RSS over the steps, minus its RSS before
them) belongs to that configuration alone:

Times come from a normal run. Peak memory comes from a second run with glibc told to serve every
allocation of 64 KiB or more by ``mmap`` (``MALLOC_MMAP_THRESHOLD_``): freed tensors then leave
the RSS at once, so the process's peak RSS tracks live tensor memory (repeatable to a few KiB;
the default allocator keeps freed memory and makes peak RSS vary by 20% between runs).

- ``plain``: output cross-entropy only;
- ``imachsr-K`` for K = 1..5 taps (tapfinder's auto selection, joint MI, negative entropy);
- ``hooks-3``: classic deep supervision on the same 3 taps' modules via forward hooks
  (1x1 conv heads, the same cross-entropy on each).

It also checks that the stripped model's inference equals the original's. Usage::

    python benchmarks/bench_train_step.py [--steps 5] [--height 256 --width 512] [--resolution feature|label]

Targets (scheme issue): K=3 step time <= 1.10x and peak memory <= 1.15x the plain step;
overhead growing linearly with K.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import warnings

import psutil
import torch
from torch import nn
from torch.nn import functional as F

CLASSES = 11


def build(seed: int = 0) -> nn.Module:
    import segmentation_models_pytorch as smp

    torch.manual_seed(seed)
    return smp.DeepLabV3Plus("resnet18", encoder_weights=None, classes=CLASSES)


def run_configuration(name: str, steps: int, height: int, width: int, resolution: str) -> dict:
    import imachsr
    import tapfinder

    torch.manual_seed(0)
    x = torch.randn(4, 3, height, width)
    y = torch.randint(0, CLASSES, (4, height, width))
    model = build()
    shape = (4, 3, height, width)
    if name == "plain":
        parameters = list(model.parameters())

        def step() -> torch.Tensor:
            return F.cross_entropy(model(x), y, ignore_index=255)
    elif name.startswith("imachsr"):
        k = int(name.split("-")[1])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scheme = imachsr.IMacHSR(model, CLASSES, example_inputs=shape, k=k, resolution=resolution)
        parameters = list(scheme.parameters())

        def step() -> torch.Tensor:
            return scheme(x, y).loss
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            taps = tapfinder.select_taps(tapfinder.trace(model, shape), k=3)
        named = dict(model.named_modules())
        captured: dict[str, torch.Tensor] = {}
        heads = nn.ModuleDict()
        for tap in taps:
            key = tap.module.replace(".", "_")
            heads[key] = nn.Conv2d(tap.shape[1], CLASSES, 1)
            named[tap.module].register_forward_hook(
                lambda module, args, output, key=key: captured.__setitem__(key, output)
            )
        parameters = [*model.parameters(), *heads.parameters()]

        def step() -> torch.Tensor:
            loss = F.cross_entropy(model(x), y, ignore_index=255)
            for key, head in heads.items():
                logits = F.interpolate(head(captured[key]), size=(height, width), mode="bilinear")
                loss = loss + 0.4 * F.cross_entropy(logits, y, ignore_index=255)
            return loss

    optimizer = torch.optim.Adam(parameters, lr=1e-3)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        step().backward()
        optimizer.step()

    train_step()  # warm-up: allocator caches, Adam state
    rss_before = psutil.Process().memory_info().rss
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        train_step()
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"name": name, "median_s": statistics.median(times), "peak_step_bytes": peak - rss_before,
            "peak_bytes": peak}


def check_stripped_inference(height: int, width: int) -> bool:
    import imachsr

    model = build().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scheme = imachsr.IMacHSR(model, CLASSES, example_inputs=(1, 3, height, width), k=3)
    x = torch.randn(1, 3, height, width)
    with torch.no_grad():
        reference = build().eval()(x)
        return torch.equal(scheme.eval()(x), reference) and torch.equal(scheme.model(x), reference)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--resolution", choices=("label", "feature"), default="feature")
    parser.add_argument("--configuration", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.configuration:
        result = run_configuration(arguments.configuration, arguments.steps, arguments.height,
                                   arguments.width, arguments.resolution)
        print(json.dumps(result))
        return

    names = ["plain", *(f"imachsr-{k}" for k in range(1, 6)), "hooks-3"]

    def measure(name: str, steps: int, environment: dict | None) -> dict:
        completed = subprocess.run(
            [sys.executable, __file__, "--configuration", name, "--steps", str(steps),
             "--height", str(arguments.height), "--width", str(arguments.width),
             "--resolution", arguments.resolution],
            capture_output=True, text=True, check=True, env=environment,
        )
        return json.loads(completed.stdout.strip().splitlines()[-1])

    exact_memory = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    print(f"smp DeepLabV3Plus(resnet18), batch 4 at {arguments.height}x{arguments.width}, Adam, "
          f"{torch.get_num_threads()} threads, median of {arguments.steps} steps, "
          f"adapter logits at {arguments.resolution} resolution")
    print(f"{'configuration':14} {'step s':>7} {'x plain':>8} {'peak MiB':>9} {'x plain':>8}")
    results = {}
    for name in names:
        results[name] = measure(name, arguments.steps, None)
        results[name]["peak_step_bytes"] = measure(name, 2, exact_memory)["peak_step_bytes"]
        plain = results["plain"]
        row = results[name]
        print(f"{name:14} {row['median_s']:7.2f} {row['median_s'] / plain['median_s']:8.3f} "
              f"{row['peak_step_bytes'] / 2**20:9.0f} "
              f"{row['peak_step_bytes'] / plain['peak_step_bytes']:8.3f}", flush=True)
    overheads = [results[f"imachsr-{k}"]["median_s"] - results["plain"]["median_s"] for k in range(1, 6)]
    print("overhead per K (s): " + ", ".join(f"{o:.3f}" for o in overheads))
    print(f"stripped model inference identical to the original: "
          f"{check_stripped_inference(arguments.height, arguments.width)}")


if __name__ == "__main__":
    main()
