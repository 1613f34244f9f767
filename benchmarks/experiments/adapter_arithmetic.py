"""What the default's heads add to each family's arithmetic, beside what its runs took in time.

For every DigitCanvas 64x64 regime of ``run_experiments.py``: the regime's model with random
weights, the default scheme on its automatic taps, and :func:`imachsr.adapter_arithmetic` at the
regime's batch (per image: the model's forward operations, each head's, their ratio); then,
from the records, the median ratio of ``default-auto``'s wall-clock to output-only's over paired
seeds (the ratio the compute-matched arm trains by). The counts are exact and load-free; the
times were measured on a shared CPU. Usage::

    python benchmarks/experiments/adapter_arithmetic.py [--records docs/results]
        [--json docs/results/adapter_arithmetic_digits64.json]
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import torch
from run_experiments import REGIMES, matched_epochs

from imachsr import IMacHSR, adapter_arithmetic
from imachsr.data import DigitCanvas
from imachsr.train.loop import build_model_for


def regime_arithmetic(regime: str, records: Path) -> dict:
    """The default's per-image arithmetic in ``regime`` and its recorded time ratio."""
    setting = REGIMES[regime]
    torch.manual_seed(0)
    model = build_model_for(setting["model"], DigitCanvas.num_classes)
    example = (setting["batch_size"], 3, setting["size"], setting["size"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # timm/transformers deprecation chatter
        scheme = IMacHSR(model, DigitCanvas.num_classes, example_inputs=example)
    counted = adapter_arithmetic(scheme, example)
    matched = matched_epochs(records, regime)
    return {"regime": regime, "family": setting["family"], "model": setting["model"],
            "model_gflops": counted.model / 1e9,
            "adapter_gflops": {tap: flops / 1e9 for tap, flops in counted.adapters.items()},
            "ratio": counted.ratio, "time_ratio": matched[1] if matched else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=Path, default=Path("docs/results"))
    parser.add_argument("--json", type=Path,
                        default=Path("docs/results/adapter_arithmetic_digits64.json"))
    options = parser.parse_args()
    regimes = [name for name, setting in REGIMES.items()
               if setting["data"] == "digits" and setting["size"] == 64]
    rows = [regime_arithmetic(regime, options.records) for regime in regimes]
    print("| regime | model GFLOPs/image | heads GFLOPs/image (largest tap) | heads/model | "
          "recorded time ratio |\n|---|---|---|---|---|")
    for row in rows:
        largest = max(row["adapter_gflops"], key=row["adapter_gflops"].get)
        time_ratio = f"{row['time_ratio']:.2f}" if row["time_ratio"] else "—"
        print(f"| `{row['regime']}` | {row['model_gflops']:.3f} | "
              f"{sum(row['adapter_gflops'].values()):.3f} (`{largest}` "
              f"{row['adapter_gflops'][largest]:.3f}) | {row['ratio']:.2f}x | {time_ratio} |")
    options.json.write_text(json.dumps(rows, indent=1) + "\n")
    print(f"wrote {options.json}")


if __name__ == "__main__":
    main()
