"""Both packages type-check: mypy, configured in pyproject.toml, on every module of tapfinder
and imachsr, with no ``type: ignore`` anywhere."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_passes_on_both_packages(tmp_path):
    pytest.importorskip("mypy")
    completed = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache")],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-2000:]


def test_no_type_errors_are_silenced_and_both_packages_ship_their_types():
    sources = [*(ROOT / "tapfinder").rglob("*.py"), *(ROOT / "imachsr").rglob("*.py")]
    assert not [str(p) for p in sources if "type: ignore" in p.read_text()]
    assert (ROOT / "tapfinder" / "py.typed").is_file() and (ROOT / "imachsr" / "py.typed").is_file()
