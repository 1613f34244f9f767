"""``torch.compile(scheme)`` against the eager scheme: step time, compile time, loss agreement.

The model is the README demo's (smp ``DeepLabV3Plus(tu-resnet10t)``, 11 classes, 64x64,
batch 8) unless ``--model`` names another zoo spec; the scheme has the library's defaults.
Both copies start from the same weights and the same random state, take the same batches with
SGD, and draw the same dropout masks (``fallback_random``), so their losses should agree step for
step within float tolerance (inductor reorders reductions). Reported:

- ``compile_s``: wall-clock of the compiled copy's first step (tracing and code generation);
- ``eager_ms``, ``compiled_ms``: median step time (forward, backward, SGD step) over
  ``--steps`` steps after two warm-up steps;
- ``ratio``: compiled over eager step time (below 1 is faster);
- ``max_loss_difference``: the largest relative loss difference over the steps;
- ``graphs``: the graphs dynamo compiled (one per graph break or recompilation; 3 when the
  step compiles whole: the first step's two, split at the one-off label check, and the step
  after it).

Usage::

    python benchmarks/bench_compile.py [--device cpu|cuda] [--model SPEC] [--size 64]
        [--batch 8] [--steps 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from collections.abc import Callable

import torch
import torch._inductor.config
from torch._dynamo.utils import counters

import imachsr
from tapfinder.zoo import build_model

CLASSES = 11


def timed_steps(scheme: torch.nn.Module, step_fn: Callable[..., imachsr.SchemeOutput],
                batches: list) -> tuple[list[float], list[float]]:
    """Seconds and losses of one SGD step per batch."""
    optimizer = torch.optim.SGD(scheme.parameters(), lr=0.01)
    seconds, losses = [], []
    for images, labels in batches:
        start = time.perf_counter()
        out = step_fn(images, labels)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        losses.append(out.loss.item())  # also waits for the device
        seconds.append(time.perf_counter() - start)
    return seconds, losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="smp:DeepLabV3Plus:tu-resnet10t")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--json", default=None)
    options = parser.parse_args()

    torch._inductor.config.fallback_random = True  # dropout masks as in eager mode
    torch.manual_seed(0)
    model = build_model(options.model, classes=CLASSES).train()
    shape = (options.batch, 3, options.size, options.size)
    eager = imachsr.IMacHSR(model, CLASSES, example_inputs=shape).to(options.device)
    twin = copy.deepcopy(eager)
    compiled = torch.compile(twin)
    generator = torch.Generator().manual_seed(1)
    batches = [(torch.randn(shape, generator=generator).to(options.device),
                torch.randint(0, CLASSES, (options.batch, options.size, options.size),
                              generator=generator).to(options.device))
               for _ in range(options.steps + 2)]

    torch.manual_seed(2)
    eager_seconds, eager_losses = timed_steps(eager, eager, batches)
    torch.manual_seed(2)
    compiled_seconds, compiled_losses = timed_steps(twin, compiled, batches)
    result = {
        "model": options.model, "device": options.device, "shape": list(shape),
        "torch": torch.__version__, "taps": list(eager.taps),
        "compile_s": round(compiled_seconds[0], 1),
        "eager_ms": round(1000 * statistics.median(eager_seconds[2:]), 1),
        "compiled_ms": round(1000 * statistics.median(compiled_seconds[2:]), 1),
        "graphs": counters["stats"]["unique_graphs"],
        "max_loss_difference": max(abs(a - b) / abs(a) for a, b in
                                   zip(eager_losses, compiled_losses)),
    }
    result["ratio"] = round(result["compiled_ms"] / result["eager_ms"], 3)
    print(json.dumps(result, indent=2))
    if options.json:
        with open(options.json, "w") as file:
            json.dump(result, file, indent=2)


if __name__ == "__main__":
    main()
