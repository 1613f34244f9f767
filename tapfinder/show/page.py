"""One self-contained HTML page of a model's structure and taps, to explore in a browser.

The page holds the graphviz drawing at every fold level (each node drawn, then modules folded
at nesting depth 1, 2, ...), the graph's data (every node with its attributes, every edge), the
rules' evidence, the taps' explanations and the model's summary; its script and style are
inlined (``page.js``, ``page.css`` beside this module), so it opens from disk with no server
and no network. In the page: pan (drag) and zoom (wheel), fold levels (buttons, or a
double-click on a folded module), a side panel for the clicked node, a search box, toggles per
candidate kind, and lists of the taps and candidates.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from .._version import __version__
from ..graph import ArchGraph, NodeAttributes
from ..taps.candidates import Candidate
from ..taps.selection import Tap, merge_candidates
from .drawing import KIND_COLOURS, drawn_boxes, render

__all__ = ["page_data", "html_page", "write_page"]

_ASSETS = resources.files("tapfinder.show")


def page_data(arch: ArchGraph, candidates: Iterable[Candidate] = (), taps: Iterable[Tap] = (),
              *, command: str | None = None, warnings: Sequence[str] = ()) -> dict[str, Any]:
    """Everything the page shows, as JSON-ready data: the nodes with their attributes and
    evidence, the edges, the taps (with :meth:`Tap.explain`), the merged candidates, the fold
    levels (each a drawing and the nodes each of its boxes holds), the summary and provenance."""
    candidates, taps = list(candidates), list(taps)
    evidence: dict[str, list[dict[str, Any]]] = {}
    for candidate in candidates:
        evidence.setdefault(candidate.node, []).append(
            {"kind": candidate.kind, "score": round(candidate.score, 3), "reason": candidate.reason})
    tap_number = {tap.node: number for number, tap in enumerate(taps, start=1)}
    nodes = {name: _node_record(attrs, evidence.get(name, []), tap_number.get(name))
             for name, attrs in arch.graph.nodes(data=True)}
    return {
        "model": arch.model_name or "model",
        "version": __version__,
        "command": command or "tapfinder.write_page(...) from Python",
        "summary": arch.summary(),
        "warnings": list(warnings),
        "kinds": {kind: colour for kind, colour in KIND_COLOURS.items()},
        "nodes": nodes,
        "modules": dict(arch.module_types),
        "edges": [[source, target] for source, target in arch.graph.edges],
        "taps": [{"number": number, "node": tap.node, "kinds": list(tap.kinds),
                  "explain": tap.explain()} for number, tap in enumerate(taps, start=1)],
        "candidates": [{"node": e.node, "kinds": list(e.kinds), "score": round(e.score, 3)}
                       for e in sorted(merge_candidates(arch, candidates), key=lambda e: -e.score)],
        "levels": _levels(arch, candidates, taps),
    }


def html_page(arch: ArchGraph, candidates: Iterable[Candidate] = (), taps: Iterable[Tap] = (),
              *, command: str | None = None, warnings: Sequence[str] = ()) -> str:
    """The page as one HTML string (see :func:`page_data` for what it holds)."""
    data = page_data(arch, candidates, taps, command=command, warnings=warnings)
    # Inside a script element "</" would end it, and "<!--" (graphviz writes SVG comments)
    # can change where the browser finds its end; JSON reads both escapes back as written.
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/").replace(
        "<!--", "\\u003c!--")
    title = html.escape(f"{data['model']}: tapfinder")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{title}</title><style>{_asset('page.css')}</style></head>\n"
        f"<body>{_asset('page.html')}\n"
        f"<script type=\"application/json\" id=\"tapfinder-data\">{payload}</script>\n"
        f"<script>{_asset('page.js')}</script></body></html>\n"
    )


def write_page(arch: ArchGraph, path: str | Path, candidates: Iterable[Candidate] = (),
               taps: Iterable[Tap] = (), *, command: str | None = None,
               warnings: Sequence[str] = ()) -> Path:
    """Write :func:`html_page` to ``path`` (UTF-8) and return the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(html_page(arch, candidates, taps, command=command, warnings=warnings),
                      encoding="utf-8")
    return target


def _node_record(attrs: NodeAttributes, evidence: list[dict[str, Any]],
                 tap: int | None) -> dict[str, Any]:
    shape = attrs["shape"]
    return {
        "op": attrs["op"], "target": attrs["target"], "module": attrs["module"],
        "module_type": attrs["module_type"], "scope": list(attrs["scope"]),
        "value": attrs["value"], "shape": _shape_text(shape), "dtype": attrs["dtype"],
        "layout": attrs["layout"], "channels": attrs["channels"],
        "spatial": list(attrs["spatial"]) if attrs["spatial"] else None,
        "stride": attrs["reduction"], "params": attrs["params"],
        "layer_index": attrs["layer_index"], "depth": round(attrs["depth"], 3),
        "on_main_path": attrs["on_main_path"], "evidence": evidence, "tap": tap,
    }


def _shape_text(shape: object) -> str | None:
    if isinstance(shape, tuple) and all(isinstance(d, int) for d in shape):
        return "x".join(map(str, shape))
    return None if shape is None else str(shape)


def _levels(arch: ArchGraph, candidates: list[Candidate], taps: list[Tap]) -> list[dict[str, Any]]:
    """The drawing at each fold level that groups the nodes differently: every node, then
    modules folded at depth 1, 2, ... (a level that only renames single-node boxes is dropped)."""
    deepest = max((len(attrs["scope"]) for _, attrs in arch.graph.nodes(data=True)), default=0)
    levels, seen = [], set()
    for collapse in [None, *range(1, deepest + 1)]:
        boxes = drawn_boxes(arch, collapse)
        signature = frozenset(tuple(members) for members in boxes.values())  # the grouping
        if signature in seen:
            continue
        seen.add(signature)
        drawing = render(arch, candidates=candidates, taps=taps, collapse=collapse)
        svg = drawing.pipe(format="svg").decode("utf-8")
        levels.append({"collapse": collapse or 0, "boxes": boxes,
                       "svg": svg[svg.index("<svg"):]})  # without the XML prologue
    return levels


def _asset(name: str) -> str:
    return (_ASSETS / name).read_text(encoding="utf-8")
