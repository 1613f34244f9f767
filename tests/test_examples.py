"""Every script in examples/ runs as a user would run it (``--smoke``), and the Python blocks of
the README and the docs pages run as written."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def test_there_are_examples():
    assert len(EXAMPLES) >= 4


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs_with_smoke(script: Path, tmp_path: Path):
    done = subprocess.run([sys.executable, str(script), "--smoke"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip(), "an example should say what it did"
    assert "predicts the same: False" not in done.stdout  # a reloaded model differs
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.stem)
def test_example_says_how_to_run_it(script: Path):
    text = script.read_text()
    docstring = re.match(r'"""(.*?)"""', text, re.S)
    assert docstring and "Run:" in docstring.group(1) and "--smoke" in docstring.group(1)


def python_blocks(page: Path) -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
    return [textwrap.dedent(block) for block in blocks]  # blocks inside list items are indented


PAGES = [ROOT / "README.md", *(page for page in sorted((ROOT / "docs").glob("*.md"))
                               if python_blocks(page))]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_the_python_blocks_of_a_page_run_as_written(page: Path, tmp_path: Path):
    """A page's Python blocks, in order, in one namespace (a reader pastes them one by one)."""
    blocks = python_blocks(page)
    assert blocks
    program = "\n".join(blocks)
    done = subprocess.run([sys.executable, "-c", program], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
