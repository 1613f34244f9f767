"""Training-step cost of iMacHSR against a plain output-only step, on the CPU or a CUDA GPU.

smp DeepLabV3Plus(resnet18), Adam, the step as ``imachsr train`` runs it: forward, backward,
one read of the logged terms, optimizer step. Configurations, each in its own subprocess so that
its peak memory is its own:

- ``plain``: output cross-entropy only (``imachsr.output_only.OutputOnly``);
- ``imachsr-K`` for K = 1..5 taps: the library's defaults (auto taps spread over the network,
  a 3x3 conv-BN-ReLU head and a 1x1 per tap, cross-entropy per tap, no negative entropy);
- ``ne-3``: the defaults with the negative-entropy term (``beta=0.01``, the default before
  2026-11-26);
- ``head64-3``: heads at most 64 channels wide (``head_width=64``);
- ``pointwise-3``, ``separable-3``: each head's 3x3 convolution replaced by a 1x1
  (``adapter="pointwise"``) or by a depthwise 3x3 and a 1x1 (``adapter="separable"``);
- ``floor-3``: the arithmetic the defaults cannot avoid, written by hand: the same taps read
  from the same instrumented model, the same heads, plain cross-entropy per tap against labels
  subsampled to the tap's size, no checks and no logged terms. The gap between ``imachsr-3``
  and ``floor-3`` is the cost of the scheme's own machinery;
- ``ce-linear-3``: the same with the paper's 1x1 adapters: classic deep supervision, whose cost
  is the scheme's machinery more than its arithmetic;
- ``paper-3``: the 0.1 defaults (joint MI, 1x1 adapters, taps at position ``input``);
- ``joint-batch-3``, ``rmi-3``, ``contrast-3``: the defaults with the batch-level joint MI,
  region MI beside cross-entropy, or pixel contrast beside cross-entropy as each tap's term
  (the heterogeneous losses of issue 24);
- ``hooks-3``: classic deep supervision written by hand with forward hooks on tapfinder's 3
  taps at position ``input`` (1x1 conv heads, the same cross-entropy on each): what users do
  without the library.

For each it reports:

- time per step (median; on CUDA, of 30 steps after 5 warm-up, each ended by a synchronise);
- peak memory of a step: on CUDA ``torch.cuda.max_memory_allocated`` minus the memory held
  before the step; on the CPU the process's peak RSS minus its RSS before the steps, with glibc
  told to serve every allocation of 64 KiB or more by ``mmap`` so freed tensors leave the RSS at
  once and the peak tracks live tensors;
- operations dispatched per forward and backward pass (the optimizer step excluded: every
  ``aten::`` event of ``torch.profiler``, nested ones included) and host synchronisations in
  them: profiler events that read a value back to the
  host (``aten::_local_scalar_dense`` behind ``item()``/``bool()``/``int()``, ``aten::nonzero``
  behind boolean indexing, ``aten::equal``) plus calls of ``Tensor.tolist``, which the profiler
  does not see. On CUDA the synchronisations are also counted by
  ``torch.cuda.set_sync_debug_mode``.

Usage::

    python benchmarks/bench_train_step.py [--device cpu|cuda] [--batch 4] [--height 256 --width 512]
        [--steps 5] [--configurations plain,imachsr-3] [--json out.json]

Targets (GPU-efficiency issue): K=3 adds at most 600 operations and 1 synchronisation per
forward and backward pass;
K=3 step time at most 1.10x plain on the CPU (peak memory at most 1.15x); on a GPU at most 1.10x
at 512x512 batch 8 and 1.25x at 96x96 batch 16; time growing linearly and gently with K.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator

import torch
from torch import nn
from torch.nn import functional as F

CLASSES = 11
CONFIGURATIONS = ["plain", *(f"imachsr-{k}" for k in range(1, 6)), "ne-3", "head64-3",
                  "pointwise-3", "separable-3", "floor-3", "ce-linear-3", "paper-3", "hooks-3",
                  "joint-batch-3", "rmi-3", "contrast-3"]
VARIANTS = {"imachsr": {}, "ne": {"beta": 0.01}, "head64": {"head_width": 64},
            "pointwise": {"adapter": "pointwise"}, "separable": {"adapter": "separable"},
            "ce-linear": {"adapter": "linear"},
            "joint-batch": {"mi": "joint-batch"}, "rmi": {"mi": "rmi"},
            "contrast": {"mi": "contrast"},
            "paper": {"mi": "joint", "adapter": "linear", "position": "input",
                      "schedule": "constant", "beta": 0.01}}
SYNC_EVENTS = ("aten::_local_scalar_dense", "aten::nonzero", "aten::equal")


def build(seed: int = 0) -> nn.Module:
    import segmentation_models_pytorch as smp

    torch.manual_seed(seed)
    return smp.DeepLabV3Plus("resnet18", encoder_weights=None, classes=CLASSES)


class HookedDeepSupervision(nn.Module):
    """Classic deep supervision as users write it: hooks on the tapped modules, a 1x1 head each."""

    def __init__(self, model: nn.Module, shape: tuple[int, ...]) -> None:
        import tapfinder

        super().__init__()
        self.model = model
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            taps = tapfinder.select_taps(tapfinder.trace(model, shape), k=3, position="input")
        named = dict(model.named_modules())
        self.captured: dict[str, torch.Tensor] = {}
        self.heads = nn.ModuleDict()
        for tap in taps:
            key = tap.module.replace(".", "_")
            self.heads[key] = nn.Conv2d(tap.shape[1], CLASSES, 1)
            named[tap.module].register_forward_hook(
                lambda module, args, output, key=key: self.captured.__setitem__(key, output))

    def forward(self, x: torch.Tensor, y: torch.Tensor):
        from imachsr import SchemeOutput

        logits = self.model(x)
        loss = F.cross_entropy(logits, y, ignore_index=255)
        for key, head in self.heads.items():
            tap_logits = F.interpolate(head(self.captured[key]), size=y.shape[1:], mode="bilinear")
            loss = loss + 0.4 * F.cross_entropy(tap_logits, y, ignore_index=255)
        return SchemeOutput(loss, {"loss": loss}, logits)


class HandWrittenFloor(nn.Module):
    """The defaults' deep supervision with nothing but its arithmetic: the library's taps,
    instrumented model and heads, then plain cross-entropy per tap at the tap's size."""

    def __init__(self, model: nn.Module, shape: tuple[int, ...]) -> None:
        import imachsr

        super().__init__()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scheme = imachsr.IMacHSR(model, CLASSES, example_inputs=shape, beta=0.0)
        self.model, self.adapters, self.alpha = model, scheme.adapters, scheme.alpha
        self.tapped, self.taps = scheme.tapped, scheme.taps

    def forward(self, x: torch.Tensor, y: torch.Tensor):
        from imachsr import SchemeOutput
        from imachsr.adapters import adapter_key

        logits, features = self.tapped(x)
        loss = F.cross_entropy(logits, y, ignore_index=255)
        for name, alpha in zip(self.taps, self.alpha):
            tap_logits = self.adapters[adapter_key(name)](features[name])
            stride = y.shape[-1] // tap_logits.shape[-1]
            loss = loss + alpha * F.cross_entropy(tap_logits, y[:, ::stride, ::stride],
                                                  ignore_index=255)
        return SchemeOutput(loss, {"loss": loss}, logits)


def objective(name: str, shape: tuple[int, ...]) -> nn.Module:
    import imachsr
    from imachsr.output_only import OutputOnly

    model = build()
    if name == "plain":
        return OutputOnly(model)
    if name == "hooks-3":
        return HookedDeepSupervision(model, shape)
    if name == "floor-3":
        return HandWrittenFloor(model, shape)
    kind, k = name.rsplit("-", 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return imachsr.IMacHSR(model, CLASSES, example_inputs=shape, k=int(k), **VARIANTS[kind])


@contextlib.contextmanager
def counting_tolist() -> Iterator[list[int]]:
    """Count ``Tensor.tolist`` calls (host reads the profiler does not record)."""
    calls = [0]
    original = torch.Tensor.tolist

    def tolist(tensor: torch.Tensor):
        calls[0] += 1
        return original(tensor)

    torch.Tensor.tolist = tolist
    try:
        yield calls
    finally:
        torch.Tensor.tolist = original


def run_configuration(name: str, device: str, batch: int, height: int, width: int,
                      steps: int, warmup: int) -> dict:
    import imachsr

    torch.manual_seed(0)
    shape = (batch, 3, height, width)
    x = torch.randn(shape, device=device)
    y = torch.randint(0, CLASSES, (batch, height, width), device=device)
    step_objective = objective(name, shape).to(device).train()
    if isinstance(step_objective, imachsr.IMacHSR):
        step_objective.set_progress(0.5)  # as a training loop does: mid-schedule weights
    optimizer = torch.optim.Adam(step_objective.parameters(), lr=1e-3)

    def forward_backward() -> None:
        output = step_objective(x, y)
        optimizer.zero_grad(set_to_none=True)
        output.loss.backward()
        output.terms  # the loop's one read, as imachsr train does it

    def train_step() -> None:
        forward_backward()
        optimizer.step()

    synchronise: Callable[[], None] = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(warmup):  # allocator caches, Adam state, the scheme's first-call label check
        train_step()
    synchronise()
    result = {"name": name, "device": device}
    result.update(count_operations(forward_backward, device))
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        held = torch.cuda.memory_allocated()
    else:
        rss_before = _rss()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        train_step()
        synchronise()
        times.append(time.perf_counter() - start)
    if device == "cuda":
        result["peak_step_bytes"] = torch.cuda.max_memory_allocated() - held
        try:
            result.update(device_time(train_step))
        except Exception as error:  # noqa: BLE001 - the timings stand without the profile
            result.update(device_busy_ms=float("nan"), device_top=[[f"no profile: {error}", 0, 0]])
    else:
        result["peak_step_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before
    result["median_ms"] = statistics.median(times) * 1000
    return result


def device_time(train_step: Callable[[], None], steps: int = 3) -> dict:
    """GPU kernel time per step (the device's busy time: against the step's wall time it says
    whether launches or arithmetic set the pace) and the operations that take most of it."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as trace:
        for _ in range(steps):
            train_step()
        torch.cuda.synchronize()
    averages = trace.key_averages()
    # Kernels are the device's events; an aten operation's own device time is its kernels'.
    kernels = [e for e in averages if e.device_type == DeviceType.CUDA]
    busiest = sorted((e for e in averages if e.key.startswith("aten::")), key=_device_us,
                     reverse=True)[:8]
    return {
        "device_busy_ms": sum(_device_us(e) for e in kernels) / steps / 1000,
        "device_top": [[e.key, round(_device_us(e) / steps / 1000, 3), e.count // steps]
                       for e in busiest],
    }


def _device_us(event) -> float:
    """An event's own device time in microseconds (the attribute's name changed in torch 2.4)."""
    return float(getattr(event, "self_device_time_total", None)
                 or getattr(event, "self_cuda_time_total", 0.0))


def count_operations(forward_backward: Callable[[], None], device: str) -> dict:
    """Operations dispatched and host synchronisations in one forward and backward pass."""
    from torch.profiler import ProfilerActivity, profile

    with counting_tolist() as tolist_calls, profile(activities=[ProfilerActivity.CPU]) as trace:
        forward_backward()
    names = [event.name for event in trace.events()]
    counts = {
        "operations": sum(name.startswith("aten::") for name in names),
        "host_syncs": sum(name in SYNC_EVENTS for name in names) + tolist_calls[0],
    }
    if device == "cuda":
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                forward_backward()
            finally:
                torch.cuda.set_sync_debug_mode("default")
        counts["cuda_syncs"] = sum("synchroniz" in str(w.message) for w in caught)
    return counts


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def check_stripped_inference(device: str, height: int, width: int) -> bool:
    """The trained-with model evaluates exactly as a fresh copy of the user's model."""
    import imachsr

    model = build().eval().to(device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scheme = imachsr.IMacHSR(model, CLASSES, example_inputs=(1, 3, height, width), k=3)
    x = torch.randn(1, 3, height, width, device=device)
    with torch.no_grad():
        reference = build().eval().to(device)(x)
        return torch.equal(scheme.eval()(x), reference) and torch.equal(scheme.model(x), reference)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"),
                        default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--steps", type=int, help="timed steps (default 30 on CUDA, 5 on the CPU)")
    parser.add_argument("--configurations", default=",".join(CONFIGURATIONS))
    parser.add_argument("--repeats", type=int, default=1,
                        help="measure the configurations this many times, in turn, and report "
                        "the median (a launch-bound GPU step varies between processes)")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--configuration", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    cuda = arguments.device == "cuda"
    steps = arguments.steps or (30 if cuda else 5)
    warmup = 5 if cuda else 1
    if arguments.configuration:
        print(json.dumps(run_configuration(arguments.configuration, arguments.device,
                                           arguments.batch, arguments.height, arguments.width,
                                           steps, warmup)))
        return

    def measure(name: str, environment: dict | None = None) -> dict:
        completed = subprocess.run(
            [sys.executable, __file__, "--configuration", name, "--device", arguments.device,
             "--batch", str(arguments.batch), "--height", str(arguments.height),
             "--width", str(arguments.width), "--steps", str(steps)],
            capture_output=True, text=True, env=environment,
        )
        if completed.returncode:
            raise SystemExit(f"{name} failed:\n{completed.stderr[-3000:]}")
        return json.loads(completed.stdout.strip().splitlines()[-1])

    where = torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(f"smp DeepLabV3Plus(resnet18), batch {arguments.batch} at {arguments.height}x"
          f"{arguments.width}, Adam, {where}, torch {torch.__version__}, median of {steps} steps")
    header = f"{'configuration':17} {'ms/step':>8} {'x plain':>8} {'peak MiB':>9} {'x plain':>8} " \
             f"{'ops':>6} {'+ops':>6} {'syncs':>6}"
    print(header + (f" {'cuda syncs':>10} {'GPU busy ms':>11}" if cuda else ""))
    rows: list[dict] = []
    record = {"device": where, "torch": torch.__version__, "batch": arguments.batch,
              "height": arguments.height, "width": arguments.width, "rows": rows,
              "stripped_inference_identical": None}

    def save() -> None:  # after every row: a run cut short still leaves what it measured
        if arguments.json:
            with open(arguments.json, "w") as file:
                json.dump(record, file, indent=1)

    names = arguments.configurations.split(",")
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for _ in range(arguments.repeats - 1):  # the earlier rounds; the last one prints the rows
        for name in names:
            runs[name].append(measure(name))
    for name in names:
        row = measure(name)
        if not cuda:  # exact peak RSS needs its own run (see the module docstring)
            exact = measure(name, {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"})
            row["peak_step_bytes"] = exact["peak_step_bytes"]
        if runs[name]:
            row["median_ms_each"] = [r["median_ms"] for r in runs[name]] + [row["median_ms"]]
            row["median_ms"] = statistics.median(row["median_ms_each"])
        rows.append(row)
        save()
        plain = rows[0]
        line = (f"{name:17} {row['median_ms']:8.1f} {row['median_ms'] / plain['median_ms']:8.3f} "
                f"{row['peak_step_bytes'] / 2**20:9.0f} "
                f"{row['peak_step_bytes'] / max(plain['peak_step_bytes'], 1):8.3f} "
                f"{row['operations']:6d} {row['operations'] - plain['operations']:+6d} "
                f"{row['host_syncs']:6d}")
        print(line + (f" {row['cuda_syncs']:10d} {row['device_busy_ms']:11.1f}" if cuda else ""),
              flush=True)
    by_name = {row["name"]: row for row in rows}
    tap_counts = [k for k in range(1, 6) if f"imachsr-{k}" in by_name]
    if "plain" in by_name and len(tap_counts) > 1:
        print("overhead over plain by K (ms): " + ", ".join(
            f"K={k} {by_name[f'imachsr-{k}']['median_ms'] - by_name['plain']['median_ms']:.1f}"
            for k in tap_counts))
    for row in rows if cuda else []:
        print(f"{row['name']}: busiest device operations per step (ms, calls): " + "; ".join(
            f"{name} {ms:.2f} x{count}" for name, ms, count in row["device_top"]))
    record["stripped_inference_identical"] = check_stripped_inference(
        arguments.device, arguments.height, arguments.width)
    print(f"stripped model inference identical to the original: "
          f"{record['stripped_inference_identical']}")
    save()

if __name__ == "__main__":
    main()
