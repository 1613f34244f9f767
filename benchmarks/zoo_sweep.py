"""Sweep tapfinder and imachsr over every torchvision and timm model, a list of Hugging Face
transformers classes and a grid of segmentation-models-pytorch models, one subprocess per worker.

For each model, with random weights: build it (on the ``meta`` device where the model allows it,
so no weights are allocated), trace it with auto-leaf, find candidates and select 3 taps, and,
for models small enough to run on this CPU, build real weights, instrument the taps and check the
instrumented output is bit-identical to the model's. In the same worker and on the same model,
the two baselines run: plain ``torch.fx.symbolic_trace`` and timm's own fx tracer
(``timm.layers.get_graph_node_names``, with timm's registry of leaf modules and wrapped
functions). Usage::

    python benchmarks/zoo_sweep.py [--zoo torchvision,timm,transformers,smp] [--sample 20] [--workers 2]
        [--timeout 180] [--out runs/zoo_sweep.json] [--models timm:resnet50,...]

Targets (robustness issue): every torchvision classification and segmentation model, and at
least 99.5% of timm's models under 400M parameters, analysed end to end; the whole list within
60 minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import multiprocessing
import random
import re
import sys
import threading
import time
import traceback
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

MAX_PARAMS = 400_000_000  # the population: timm models under 400M parameters
STAGES = ("build", "trace", "analyse", "instrument")


# Hugging Face transformers classes across the families users bring, built with hf:CLASS:small
# (every stage one block, four layers): vision backbones, classifiers, semantic segmenters,
# depth estimators, universal segmenters and text encoders (token ids in).
TRANSFORMERS = (
    "ViTModel", "ViTForImageClassification", "DeiTModel", "BeitModel", "Data2VecVisionModel",
    "Dinov2Model", "SwinModel", "Swinv2Model", "ConvNextModel", "ConvNextV2Model", "ResNetModel",
    "RegNetModel", "MobileNetV2Model", "EfficientNetModel", "PoolFormerModel", "CvtModel",
    "PvtModel", "LevitModel", "MobileViTModel", "MobileViTV2Model", "FocalNetModel", "BitModel",
    "SegformerModel", "ConvNextForImageClassification",
    "SegformerForSemanticSegmentation", "BeitForSemanticSegmentation",
    "Data2VecVisionForSemanticSegmentation", "MobileViTForSemanticSegmentation",
    "MobileViTV2ForSemanticSegmentation", "MobileNetV2ForSemanticSegmentation",
    "UperNetForSemanticSegmentation", "DPTForSemanticSegmentation",
    "DPTForDepthEstimation", "GLPNForDepthEstimation", "DepthAnythingForDepthEstimation",
    "MaskFormerForInstanceSegmentation", "Mask2FormerForUniversalSegmentation",
    "BertModel", "RobertaModel", "DistilBertModel", "AlbertModel", "ElectraModel",
    "DebertaV2Model", "T5EncoderModel",
)


# segmentation-models-pytorch: every architecture on encoders of each kind users bring: smp's
# own ResNets, EfficientNet and MobileNet, timm's through ``tu-`` (a ResNet-D, a RegNet with
# squeeze-and-excitation, a ConvNeXt, a PVTv2 transformer) and SegFormer's MiT. Combinations smp
# refuses (DPT takes ViT encoders only, ...) are recorded as build failures with smp's reason.
SMP_ARCHITECTURES = ("Unet", "UnetPlusPlus", "MAnet", "Linknet", "FPN", "PSPNet", "DeepLabV3",
                     "DeepLabV3Plus", "PAN", "UPerNet", "Segformer", "DPT")
SMP_ENCODERS = ("resnet18", "resnet50", "efficientnet-b0", "mobilenet_v2", "tu-resnet10t",
                "tu-regnety_002", "tu-convnext_atto", "tu-pvt_v2_b0", "mit_b0")


def list_specs(zoos: list[str]) -> list[str]:
    """Every torchvision classification/segmentation model, every timm model, the
    transformers classes above and the smp architecture x encoder grid, as specs."""
    specs = []
    if "torchvision" in zoos:
        import torchvision.models as tv

        names = tv.list_models(module=tv) + tv.list_models(module=tv.segmentation)
        specs += [f"torchvision:{name}" for name in names]
    if "timm" in zoos:
        import timm

        specs += [f"timm:{name}" for name in timm.list_models()]
    if "transformers" in zoos:
        specs += [f"hf:{name}:small" for name in TRANSFORMERS]
    if "smp" in zoos:
        specs += [f"smp:{arch}:{encoder}" for arch in SMP_ARCHITECTURES for encoder in SMP_ENCODERS]
    return specs


# --- worker side -----------------------------------------------------------------------------


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


def _example(spec: str, model: Any) -> Any:
    """The model's example input: a shape of its own input size where it declares one (timm's
    pretrained_cfg, a transformers config's image_size), else 224; token ids (a meta tensor of
    int64) for transformers text models."""
    import torch

    config = getattr(model, "pretrained_cfg", None) or {}
    channels, height, width = config.get("input_size", (3, 224, 224))
    if spec.startswith("torchvision:") and "inception" in spec:
        height = width = 299
    if spec.startswith("smp:"):  # sides divisible by 32 and PAN's pyramid not below 1x1
        return (1, channels, 256, 256)
    hf_config = getattr(model, "config", None)
    if spec.startswith("hf:") and hf_config is not None:
        if getattr(hf_config, "vocab_size", None) and not hasattr(hf_config, "num_channels"):
            return torch.empty((1, 16), dtype=torch.long, device="meta")
        size = getattr(hf_config, "image_size", 224)
        height = width = size if isinstance(size, int) else 224
    return (1, channels, height, width)


def _real(example: Any) -> Any:
    """Real values for an example: a random image, or zeros as token ids."""
    import torch

    generator = torch.Generator().manual_seed(0)
    if isinstance(example, torch.Tensor):
        return torch.zeros(example.shape, dtype=example.dtype)
    return torch.randn(example, generator=generator)


def _build(spec: str, device: str) -> Any:
    import torch

    from tapfinder.zoo import build_model

    torch.manual_seed(0)
    with torch.device(device):
        return build_model(spec)


def _timed(record: dict, key: str, function: Any) -> Any:
    start = time.perf_counter()
    try:
        return function()
    finally:
        record["seconds"][key] = round(time.perf_counter() - start, 3)


def _baselines(record: dict, model: Any) -> None:
    """Plain ``torch.fx.symbolic_trace`` and timm's registry-based tracer on the same model.
    timm's tracer switches the model between train and eval mode and leaves it in train mode
    when it fails, so the modes are put back after each."""
    import torch

    modules = list(model.modules())
    modes = [module.training for module in modules]
    for key, function in (("fx", torch.fx.symbolic_trace), ("timm_fx", _timm_trace)):
        try:
            _timed(record, key, lambda function=function: function(model))
            record[key] = "ok"
        except Exception as error:  # noqa: BLE001 - a baseline's failure is a measurement
            record[key] = _first_line(error)
        finally:
            for module, mode in zip(modules, modes):
                module.training = mode


def _timm_trace(model: Any) -> Any:
    from timm.layers import get_graph_node_names

    return get_graph_node_names(model)


def sweep_one(spec: str, run_params: int) -> dict:
    """Run every stage on one model; the record says which stage failed and why."""
    import tapfinder
    from tapfinder.taps.quality import tap_quality

    record: dict[str, Any] = {"model": spec, "outcome": "ok", "seconds": {}}
    stage = "build"
    try:
        try:
            model = _timed(record, "build", lambda: _build(spec, "meta"))
            record["built_on"] = "meta"
        except Exception as error:  # noqa: BLE001 - some models compute on tensors in __init__
            record["meta_error"] = _first_line(error)
            model = _timed(record, "build", lambda: _build(spec, "cpu"))
            record["built_on"] = "cpu"
        params = sum(p.numel() for p in model.parameters())
        record["params"] = params
        if params >= MAX_PARAMS:
            record["outcome"] = "skipped"
            return record
        shape = _example(spec, model)
        record["input_shape"] = tuple(getattr(shape, "shape", shape))
        _baselines(record, model)

        stage = "trace"
        arch = _timed(record, "trace", lambda: tapfinder.trace(model, shape))
        record["nodes"] = arch.graph.number_of_nodes()
        record["auto_leaves"] = len(arch.leaves)
        record["shape_mode"] = arch.shape_mode

        stage = "analyse"
        taps = _timed(record, "analyse", lambda: tapfinder.select_taps(arch, k=3))
        record["taps"] = [tap.node for tap in taps]
        for tap in taps:
            if arch.graph.nodes[tap.node].get("shape") is None:
                raise AssertionError(f"tap {tap.node} has no tensor shape")
        if len(taps) < 3:
            raise AssertionError(f"only {len(taps)} of 3 taps fit ({record['nodes']} nodes, "
                                 f"{record['auto_leaves']} auto-leaves)")
        record["tap_quality"] = dataclasses.asdict(tap_quality(arch, taps))

        if params <= run_params:
            stage = "instrument"
            _timed(record, "instrument", lambda: _check_instrument(spec, shape, record["taps"]))
            record["bit_identical"] = True
    except Exception as error:  # noqa: BLE001 - every failure is recorded, none ends the sweep
        record["outcome"] = f"failed:{stage}"
        record["error"] = _first_line(error)
        record["where"] = _user_frame(error)
    return record


def _check_instrument(spec: str, shape: Any, taps: list[str]) -> None:
    import torch

    import imachsr

    model = _build(spec, "cpu")
    example = _real(shape)
    tapped = imachsr.instrument(model, taps, example)
    with torch.no_grad():
        expected = model(example)
        actual, features = tapped(example)
    if not _tree_equal(expected, actual):
        raise AssertionError("instrumented output differs from the model's")
    if list(features) != taps:
        raise AssertionError(f"features {list(features)} != taps {taps}")


def _tree_equal(a: Any, b: Any) -> bool:
    import torch

    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):  # a ModelOutput must stay one: compare the classes too
        return type(a) is type(b) and a.keys() == b.keys() and all(
            _tree_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_tree_equal(x, y) for x, y in zip(a, b))
    return a == b


def _user_frame(error: BaseException) -> str:
    """The innermost frame in tapfinder/imachsr, so failure reasons group by cause."""
    frames = [f for f in traceback.extract_tb(error.__traceback__)
              if "/tapfinder/" in f.filename or "/imachsr/" in f.filename]
    if not frames:
        return ""
    frame = frames[-1]
    return f"{Path(frame.filename).name}:{frame.lineno}"


def worker_loop(connection: Any, run_params: int) -> None:
    """Serve specs from the parent until it sends ``None``."""
    import torch

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    while (spec := connection.recv()) is not None:
        connection.send(sweep_one(spec, run_params))


# --- parent side -----------------------------------------------------------------------------


class Worker:
    """One long-lived subprocess; replaced when a model times out or kills it."""

    def __init__(self, run_params: int) -> None:
        self.run_params = run_params
        self._start()

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.connection, child = context.Pipe()
        self.process = context.Process(target=worker_loop, args=(child, self.run_params),
                                       daemon=True)
        self.process.start()

    def run(self, spec: str, timeout: float) -> dict:
        start = time.perf_counter()
        self.connection.send(spec)
        try:
            if self.connection.poll(timeout):
                return self.connection.recv()
            outcome, error = "timeout", f"no result within {timeout:.0f} s"
        except EOFError:
            outcome, error = "crashed", f"worker exited with code {self.process.exitcode}"
        self.process.kill()
        self.process.join()
        self._start()
        return {"model": spec, "outcome": outcome, "error": error,
                "seconds": {"total": round(time.perf_counter() - start, 1)}}

    def close(self) -> None:
        self.connection.send(None)
        self.process.join(timeout=10)


def run_sweep(specs: list[str], workers: int, timeout: float, run_params: int,
              out: Path) -> list[dict]:
    records: list[dict] = []
    lock = threading.Lock()
    pending = collections.deque(specs)
    start = time.perf_counter()

    def serve() -> None:
        worker = Worker(run_params)
        try:
            while True:
                with lock:
                    if not pending:
                        return
                    spec = pending.popleft()
                record = worker.run(spec, timeout)
                with lock:
                    records.append(record)
                    done = len(records)
                    elapsed = time.perf_counter() - start
                    print(f"[{done}/{len(specs)} {elapsed:6.0f}s] {record['outcome']:18} {spec}"
                          + (f"  {record.get('error', '')[:120]}" if record["outcome"] not in
                             ("ok", "skipped") else ""), flush=True)
                    if done % 25 == 0:
                        _write(out, records, elapsed)
        finally:
            worker.close()

    with ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(serve) for _ in range(workers)]:
            future.result()
    _write(out, records, time.perf_counter() - start)
    return records


def _write(out: Path, records: list[dict], elapsed: float) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    ordered = sorted(records, key=lambda r: r["model"])
    out.write_text(json.dumps({"elapsed_s": round(elapsed, 1), "models": ordered}, indent=1))


# --- report ----------------------------------------------------------------------------------


def _reason(record: dict) -> str:
    """A failure's message with names and numbers blanked, so equal causes group together."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", record.get("error", ""))
    return re.sub(r"\d+", "N", text)[:110]


def report(records: list[dict], elapsed: float) -> str:
    lines = [f"{len(records)} models in {elapsed / 60:.1f} min", ""]
    header = f"{'zoo':12} {'models':>6} {'tapfinder':>10} {'bit-ident.':>10} " \
             f"{'fx':>10} {'timm fx':>10}"
    lines += [header, "-" * len(header)]
    by_zoo = collections.defaultdict(list)
    for record in records:
        if record["outcome"] != "skipped":
            by_zoo[record["model"].split(":")[0]].append(record)
    for zoo, group in sorted(by_zoo.items()):
        n = len(group)
        ok = sum(r["outcome"] == "ok" for r in group)
        checked = [r for r in group if "bit_identical" in r or r["outcome"] == "failed:instrument"]
        identical = sum(bool(r.get("bit_identical")) for r in checked)
        fx = sum(r.get("fx") == "ok" for r in group)
        timm_fx = sum(r.get("timm_fx") == "ok" for r in group)

        def percent(count: int, total: int = n) -> str:
            return f"{count}/{total}" if total else "-"

        lines.append(f"{zoo:12} {n:>6} {percent(ok):>10} {percent(identical, len(checked)):>10} "
                     f"{percent(fx):>10} {percent(timm_fx):>10}")
    skipped = sum(r["outcome"] == "skipped" for r in records)
    lines.append(f"(skipped: {skipped} models of {MAX_PARAMS / 1e6:.0f}M parameters or more)")
    failures = collections.Counter(
        (r["outcome"], _reason(r)) for r in records if r["outcome"] not in ("ok", "skipped"))
    if failures:
        lines += ["", "Most common failures:"]
        lines += [f"{count:5}  {outcome:18} {reason}" for (outcome, reason), count
                  in failures.most_common(15)]
    return "\n".join([*lines, "", *tap_quality_report(records)])


def tap_quality_report(records: list[dict]) -> list[str]:
    """Totals of the default taps' structural quality (tapfinder.taps.quality) over the models whose
    taps were chosen."""
    measured = [r["tap_quality"] for r in records if "tap_quality" in r]
    if not measured:
        return []
    taps = sum(q["taps"] for q in measured)
    blocks = sum(q["block_outputs"] for q in measured)
    main = sum(q["on_main_path"] for q in measured)
    staged = [q for q in measured if q["model_strides"] >= 2]
    covering = sum(len(q["strides"]) >= 2 for q in staged)
    violating = [(r["model"], r["tap_quality"]["violations"]) for r in records
                 if r.get("tap_quality", {}).get("violations")]
    placeholders = sum(q.get("placeholders", 0) for q in measured)
    u_shaped = [q for q in measured if q.get("decoder_scales")]
    lines = [f"Default taps (k=3) on {len(measured)} models:",
             f"  block or stage outputs   {blocks}/{taps} taps",
             f"  on the main path         {main}/{taps} taps",
             f"  identity placeholders    {placeholders}/{taps} taps",
             f"  two or more resolutions  {covering}/{len(staged)} models with several strides",
             f"  guard violations         {len(violating)} models",
             f"  U-shaped decoders        {len(u_shaped)} models, "
             f"{sum(q['on_decoder_scales'] for q in u_shaped)}/"
             f"{sum(q['taps'] for q in u_shaped)} of their taps on the decoder's scales"]
    lines += [f"    {model}: {violations}" for model, violations in violating[:10]]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", default="torchvision,timm,transformers")
    parser.add_argument("--models", default="", help="comma-separated specs instead of --zoo")
    parser.add_argument("--sample", type=int, default=0, help="a random sample of this size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=180.0)
    parser.add_argument("--run-params", type=float, default=30e6,
                        help="instrument and compare outputs for models up to this many params")
    parser.add_argument("--out", type=Path, default=Path("runs/zoo_sweep.json"))
    arguments = parser.parse_args()
    specs = arguments.models.split(",") if arguments.models else list_specs(
        arguments.zoo.split(","))
    if arguments.sample:
        specs = random.Random(arguments.seed).sample(specs, min(arguments.sample, len(specs)))
    start = time.perf_counter()
    records = run_sweep(specs, arguments.workers, arguments.timeout, int(arguments.run_params),
                        arguments.out)
    print()
    print(report(records, time.perf_counter() - start))
    print(f"\nper-model records: {arguments.out}")
    sys.exit(0)


if __name__ == "__main__":
    main()
