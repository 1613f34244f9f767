"""The scheme under the engines users train with: torch.compile, autocast, Lightning with DDP
and torchrun (the Hugging Face Trainer has its own module; the Accelerate and single-process
Lightning snippets run from docs/engines.md)."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from support import TinySegmenter, batch

import imachsr

ROOT = Path(__file__).resolve().parents[2]
LIGHTNING_EXAMPLE = ROOT / "examples" / "lightning_module.py"


def sgd_losses(step, scheme: imachsr.IMacHSR, steps: int = 3) -> list[float]:
    optimizer = torch.optim.SGD(scheme.parameters(), lr=0.1)
    losses = []
    for index in range(steps):
        x, y = batch()
        x = x + index  # a different batch each step
        out = step(x, y)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.loss.item())
    return losses


def test_a_compiled_scheme_trains_to_the_eager_losses():
    torch.manual_seed(0)
    eager = imachsr.IMacHSR(TinySegmenter(), 3, example_inputs=(2, 3, 16, 16))
    twin = copy.deepcopy(eager)
    compiled = torch.compile(twin)
    expected = sgd_losses(eager, eager)
    assert sgd_losses(compiled, twin) == pytest.approx(expected, rel=1e-4)
    assert list(imachsr.plain_state_dict(compiled)) == list(eager.model.state_dict())


def test_bfloat16_autocast_on_the_cpu_trains_with_a_float32_loss():
    torch.manual_seed(0)
    scheme = imachsr.IMacHSR(TinySegmenter(), 3, example_inputs=(2, 3, 16, 16))
    reference = copy.deepcopy(scheme)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = scheme(*batch())
    out.loss.backward()
    assert out.loss.dtype == torch.float32 and out.logits.dtype == torch.bfloat16
    assert set(out.terms) == {"loss", "ce", *(f"mi/{tap}" for tap in scheme.taps)}
    assert out.terms["loss"] == pytest.approx(reference(*batch()).terms["loss"], rel=0.05)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in scheme.parameters())


def test_float16_autocast_with_a_grad_scaler_trains_to_the_float32_losses():
    """The float16 recipe (autocast and GradScaler) with the default objective, on the CPU
    here; on a GPU it is the same code with "cuda"."""
    torch.manual_seed(0)
    scheme = imachsr.IMacHSR(TinySegmenter(), 3, example_inputs=(2, 3, 16, 16))
    reference = copy.deepcopy(scheme)
    scaler = torch.amp.GradScaler("cpu")
    optimizer = torch.optim.SGD(scheme.parameters(), lr=0.1)

    def half_step(x, y):
        with torch.autocast("cpu", dtype=torch.float16):
            out = scheme(x, y)
        assert out.loss.dtype == torch.float32 and out.logits.dtype == torch.float16
        return out

    losses = []
    for index in range(3):
        x, y = batch()
        out = half_step(x + index, y)
        scaler.scale(out.loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad()
        losses.append(out.loss.item())
    assert losses == pytest.approx(sgd_losses(reference, reference), rel=0.02)


def run_lightning(command: list[str], cwd: Path) -> str:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def check_lightning_output(stdout: str) -> None:
    assert "'train/mi/" in stdout and "'train/ce'" in stdout, stdout
    assert "predicts the same: True" in stdout, stdout


def test_the_lightning_example_trains_with_ddp_on_two_cpu_processes(tmp_path):
    pytest.importorskip("lightning")
    check_lightning_output(run_lightning(
        [sys.executable, str(LIGHTNING_EXAMPLE), "--smoke", "--devices", "2"], tmp_path))


@pytest.mark.skipif(shutil.which("torchrun", path=f"{sys.prefix}/bin") is None
                    and shutil.which("torchrun") is None, reason="torchrun missing")
def test_the_lightning_example_runs_under_torchrun(tmp_path):
    pytest.importorskip("lightning")
    torchrun = shutil.which("torchrun", path=f"{sys.prefix}/bin") or shutil.which("torchrun")
    check_lightning_output(run_lightning(
        [torchrun, "--standalone", "--nproc-per-node", "2", str(LIGHTNING_EXAMPLE), "--smoke",
         "--devices", "2"], tmp_path))
