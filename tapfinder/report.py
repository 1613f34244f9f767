"""Candidates and taps as a table for people and as a stable JSON document for programs."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from .candidates import Candidate
from .graph import ArchGraph
from .rank import Tap, merge_candidates

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
    lines += ["", "Candidates:", f"  {'tap':3} {'node':40} {'module':34} {'kinds':36} "
              f"{'shape':20} {'depth':>5}  reason"]
    for item in evidence:
        attrs = arch[item.node]
        lines.append(
            f"  {str(chosen.get(item.node, '')):3} {item.node[:40]:40} {str(attrs['module'] or '-')[:34]:34} "
            f"{','.join(item.kinds)[:36]:36} {str(attrs['shape'])[:20]:20} {attrs['depth']:5.2f}  "
            f"{item.reasons[0]}"
        )
    return "\n".join(lines)


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
