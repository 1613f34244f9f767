"""Draw an :class:`~tapfinder.graph.ArchGraph` with graphviz: module clusters, shapes,
candidates coloured by kind with a legend, chosen taps emphasised and numbered.

Only nodes that carry tensors are drawn (sizes, scalars and parameters would double the
picture and say little), and modules deeper than ``collapse`` levels fold into one box each.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import graphviz

from ..graph import ArchGraph, NodeAttributes, carries_tensors
from ..taps.candidates import Candidate
from ..taps.selection import Tap, merge_candidates

__all__ = ["render", "drawn_boxes", "KIND_COLOURS", "LARGE_DRAWING"]

KIND_COLOURS = {
    "downsampling": "#8ecae6",
    "stage_boundary": "#ffb703",
    "bottleneck": "#c77dff",
    "attention": "#90be6d",
    "skip_join": "#f28482",
    "fusion": "#43aa8b",
    "norm_act": "#d9d9d9",
}
_OTHER_KIND = "#bde0fe"
FORMATS = ("svg", "png", "pdf", "dot")
# Boxes beyond which a drawing is too tall to read on a screen (ConvNeXt-T uncollapsed: ~400).
LARGE_DRAWING = 150


def _shape_text(shape: object) -> str:
    return "x".join(str(d) for d in shape) if isinstance(shape, tuple) else ""


def _box_of(attrs: NodeAttributes, collapse: int | None) -> str | None:
    """The collapsed module a node folds into, or ``None`` to draw it on its own."""
    scope = attrs["scope"]
    if collapse is None or collapse < 1 or len(scope) < collapse:
        return None
    return scope[collapse - 1]


def drawn_boxes(arch: ArchGraph, collapse: int | None = None) -> dict[str, list[str]]:
    """The boxes a drawing has: each box's name and the graph nodes folded into it, in order.

    Only nodes that carry tensors are drawn; with ``collapse``, the nodes of each module at that
    nesting depth share one box named after the module.
    """
    boxes: dict[str, list[str]] = defaultdict(list)
    for name, attrs in arch.graph.nodes(data=True):
        if (carries_tensors(attrs) and attrs["op"] != "get_attr") or attrs["op"] == "output":
            boxes[_box_of(attrs, collapse) or name].append(name)
    return dict(boxes)


def render(
    arch: ArchGraph,
    path: str | Path | None = None,
    *,
    candidates: Iterable[Candidate] = (),
    taps: Iterable[Tap] = (),
    collapse: int | None = None,
) -> graphviz.Digraph:
    """Build the drawing and write it to ``path`` when given (format from the extension:
    ``.svg``, ``.png``, ``.pdf`` or ``.dot``; ``.html`` writes the interactive page of
    :func:`tapfinder.show.page.write_page`, with every fold level).

    Parameters
    ----------
    collapse
        Draw each module at this nesting depth as one box: ``1`` folds ResNet's ``layer1`` ...
        ``layer4`` into four boxes, ``2`` draws each residual block (``layer1.0``) as one.

    Raises
    ------
    ValueError
        For an unsupported file extension.
    """
    taps = list(taps)
    top_kind = {e.node: e.kinds[0] for e in merge_candidates(arch, candidates)}
    tap_number = {tap.node: i for i, tap in enumerate(taps, start=1)}
    members_of = drawn_boxes(arch, collapse)
    representative = {member: rep for rep, members in members_of.items() for member in members}

    dot = graphviz.Digraph(arch.model_name or "model", graph_attr={
        "rankdir": "TB", "fontname": "Helvetica", "fontsize": "11", "nodesep": "0.15",
        "ranksep": "0.25", "label": f"{arch.model_name}: taps numbered, candidates coloured",
        "labelloc": "t",
    }, node_attr={"shape": "box", "style": "rounded,filled", "fillcolor": "white",
                  "fontname": "Helvetica", "fontsize": "9", "height": "0.3"},
        edge_attr={"arrowsize": "0.5", "color": "#666666"})

    clusters: dict[str | None, list[str]] = defaultdict(list)
    for rep, members in members_of.items():
        scope = arch[members[0]]["scope"]
        clusters[scope[0] if scope and scope[0] != rep else None].append(rep)

    for top, reps in clusters.items():
        if top is None:
            _add_nodes(dot, arch, reps, members_of, top_kind, tap_number)
            continue
        with dot.subgraph(name=f"cluster_{top}") as cluster:
            cluster.attr(label=f"{top} ({arch.module_types.get(top, 'module')})",
                         style="rounded,dashed", color="#999999", fontsize="10")
            _add_nodes(cluster, arch, reps, members_of, top_kind, tap_number)

    edges = set()
    for source, target in arch.graph.edges:
        if source in representative and target in representative:
            a, b = representative[source], representative[target]
            if a != b:
                edges.add((a, b))
    for a, b in sorted(edges):
        dot.edge(a, b)

    used = sorted(set(top_kind.values()))
    if used:
        with dot.subgraph(name="cluster_legend") as legend:
            legend.attr(label="candidate kinds", fontsize="9", style="rounded", color="#999999")
            for kind in used:
                legend.node(f"legend_{kind}", kind, fillcolor=KIND_COLOURS.get(kind, _OTHER_KIND))

    if path is not None and Path(path).suffix.lower() == ".html":
        from .page import write_page  # the page draws every fold level with this function

        write_page(arch, path, candidates, taps)
    elif path is not None:
        _write(dot, Path(path))
    return dot


def _add_nodes(
    graph: graphviz.Digraph,
    arch: ArchGraph,
    reps: list[str],
    members_of: dict[str, list[str]],
    top_kind: dict[str, str],
    tap_number: dict[str, int],
) -> None:
    for rep in reps:
        label, style = _label(arch, rep, members_of[rep], top_kind, tap_number)
        graph.node(rep, label, **style)


def _label(
    arch: ArchGraph,
    rep: str,
    members: list[str],
    top_kind: dict[str, str],
    tap_number: dict[str, int],
) -> tuple[str, dict[str, str]]:
    last = members[-1]
    attrs = arch[last]
    if rep in arch.graph:
        what = _operation(attrs)
        title = rep if what == rep else f"{rep}\n{what}"
    else:
        kind = arch.module_types.get(rep, "module")
        inside = f"{len(members)} ops" if len(members) > 1 else _operation(attrs)
        title = f"{rep}\n{kind}" if inside == kind else f"{rep}\n{kind} ({inside})"
    label = f"{title}\n{_shape_text(attrs['shape'])}"
    style: dict[str, str] = {}
    kinds = [top_kind[m] for m in members if m in top_kind]
    if kinds:
        # A collapsed box takes the colour of its last candidate: the block's output.
        style["fillcolor"] = KIND_COLOURS.get(kinds[-1], _OTHER_KIND)
    inner_taps = [m for m in members if m in tap_number]
    if inner_taps:
        if rep in arch.graph:
            heading = f"TAP {tap_number[rep]}"
        else:  # a folded module: say which of its nodes each tap reads
            heading = "\n".join(f"TAP {tap_number[m]} at {m}" for m in inner_taps)
        label = f"{heading}\n{label}"
        style.update(penwidth="3", color="#d00000", fontcolor="#d00000", fontsize="11")
    return label, style


def _operation(attrs: NodeAttributes) -> str:
    """What a node does, in a word: its module's class, or its function's or method's name."""
    if attrs["op"] == "call_module":
        return attrs["module_type"] or attrs["target"]
    if attrs["op"] == "placeholder":
        return "input"
    return str(attrs["target"]).rsplit(".", 1)[-1]


def _write(dot: graphviz.Digraph, path: Path) -> None:
    suffix = path.suffix.lstrip(".").lower()
    if suffix not in FORMATS:
        raise ValueError(f"Cannot render to {path.name!r}: use one of .{', .'.join(FORMATS)} "
                         "or .html.")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == "dot":
        path.write_text(dot.source)
        return
    path.write_bytes(dot.pipe(format=suffix))
