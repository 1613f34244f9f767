"""The CI sample of the zoo sweep: 20 torchvision and timm models, each analysed end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("timm")
pytest.importorskip("torchvision")

SWEEP = Path(__file__).resolve().parents[1] / "benchmarks" / "zoo_sweep.py"


def test_a_twenty_model_sample_of_the_zoo_sweep_analyses_every_model(tmp_path):
    out = tmp_path / "sweep.json"
    completed = subprocess.run(
        [sys.executable, str(SWEEP), "--sample", "20", "--seed", "2026", "--workers", "2",
         "--timeout", "300", "--out", str(out)],
        capture_output=True, text=True, timeout=900,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    records = json.loads(out.read_text())["models"]
    assert len(records) == 20
    failed = [f"{r['model']}: {r['outcome']} {r.get('error', '')}" for r in records
              if r["outcome"] not in ("ok", "skipped")]
    assert not failed, "\n".join(failed)
    checked = [r for r in records if r.get("bit_identical")]
    assert checked, "the sample should include models small enough to instrument on the CPU"
    assert "Most common failures" not in completed.stdout
    violating = {r["model"]: r["tap_quality"]["violations"] for r in records
                 if r.get("tap_quality", {}).get("violations")}
    assert not violating, violating
    assert "guard violations         0 models" in completed.stdout
