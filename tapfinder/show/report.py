"""Candidates and taps as a table for people and as a stable JSON document for programs."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from ..graph import ArchGraph
from ..taps.candidates import Candidate
from ..taps.selection import Tap, merge_candidates

__all__ = ["report_table", "report_document", "REPORT_VERSION"]

REPORT_VERSION = 1


def report_table(arch: ArchGraph, candidates: Iterable[Candidate], taps: Iterable[Tap]) -> str:
    """Chosen taps with their reasons, then every candidate node in execution order."""
    taps = list(taps)
    evidence = sorted(merge_candidates(arch, candidates), key=lambda e: arch[e.node]["layer_index"])
    chosen = {tap.node: i for i, tap in enumerate(taps, start=1)}
    lines = [f"{arch.model_name}: {len(evidence)} candidate nodes, {len(taps)} taps", "", "Taps:"]
    for number, tap in enumerate(taps, start=1):
        lines.append(f" {number}. " + tap.explain().replace("\n", "\n    "))
    rows = [("tap", "node", "module", "kinds", "shape", "depth", "reason")]
    for item in evidence:
        attrs = arch[item.node]
        shape = "x".join(map(str, attrs["shape"])) if isinstance(attrs["shape"], tuple) else "-"
        rows.append((str(chosen.get(item.node, "")), item.node, attrs["module"] or "-",
                     ",".join(item.kinds), shape, f"{attrs['depth']:.2f}", item.reasons[0]))
    lines += ["", "Candidates:", *_aligned(rows)]
    return "\n".join(lines)


def _aligned(rows: Sequence[tuple[str, ...]]) -> list[str]:
    """Rows as lines with every column as wide as its widest cell (nothing is cut); the last
    column is left ragged and the depth column right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return ["  " + " ".join(cell.rjust(width) if i == 5 else cell.ljust(width)
                            for i, (cell, width) in enumerate(zip(row, widths))) + " " + row[-1]
            for row in rows]


def report_document(
    arch: ArchGraph, candidates: Iterable[Candidate], taps: Iterable[Tap]
) -> dict[str, Any]:
    """A JSON-ready document: ``{"version", "model", "taps": [...], "candidates": [...]}``."""
    by_node: dict[str, list[Candidate]] = defaultdict(list)
    candidates = list(candidates)
    for candidate in candidates:
        by_node[candidate.node].append(candidate)
    return {
        "version": REPORT_VERSION,
        "model": arch.model_name,
        "taps": [
            {
                "node": t.node, "module": t.module, "kinds": list(t.kinds), "score": t.score,
                "layer_index": t.layer_index, "depth": t.depth, "shape": list(t.shape),
                "reasons": list(t.reasons), "beat": [{"node": n, "score": s} for n, s in t.beat],
                "closes": t.closes, "stride": t.stride,
            }
            for t in taps
        ],
        "candidates": [
            {"node": c.node, "kind": c.kind, "score": c.score, "reason": c.reason,
             "shape": list(arch[c.node]["shape"]) if arch[c.node]["value"] == "tensor" else None,
             "depth": arch[c.node]["depth"]}
            for c in candidates
        ],
    }
