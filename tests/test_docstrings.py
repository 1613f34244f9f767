"""Docstrings document; they do not log. Measured figures (confidence intervals, timings) live in
``docs/results.md`` and the benchmarks' records, where they are regenerated, never in the code."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INTERVAL = re.compile(r"\[[+-]?\d+\.\d+, [+-]?\d+\.\d+\]")  # [+2.7, +5.8]; not [0, 1]
MILLISECONDS = re.compile(r"\b\d+(\.\d+)?(-\d+(\.\d+)?)? ?ms\b")


def docstrings(path: Path) -> list[tuple[str, str]]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            text = ast.get_docstring(node)
            if text:  # examples (doctest lines) hold values, not measurements
                prose = "\n".join(line for line in text.splitlines()
                                  if not line.lstrip().startswith((">>>", "...")))
                found.append((getattr(node, "name", path.name), prose))
    return found


def test_no_docstring_quotes_a_confidence_interval_or_a_millisecond_figure():
    offending = [f"{path.relative_to(ROOT)}:{name}"
                 for package in ("tapfinder", "imachsr") for path in (ROOT / package).rglob("*.py")
                 for name, text in docstrings(path)
                 if INTERVAL.search(text) or MILLISECONDS.search(text)]
    assert not offending


def test_the_patterns_catch_what_they_are_for():
    assert INTERVAL.search("validation +0.3 [-0.5, +1.0]") and MILLISECONDS.search("2-8 ms per step")
    assert not INTERVAL.search("a score in [0, 1]") and not MILLISECONDS.search("items")
