"""Skip joins: residual adds and encoder-decoder concatenations whose inputs come from far apart
in layer index; both the join and the skip's source."""

from __future__ import annotations

from ...graph import ArchGraph
from ...graph.node_kinds import function_name, is_feature, is_join, size_text, where
from ...graph.structure import data_nodes
from ..candidates import Candidate, rule

KIND = "skip_join"
MIN_GAP = 2  # parametric layers the skipped path must hold


@rule(KIND)
def find_skip_joins(arch: ArchGraph) -> list[Candidate]:
    found = []
    from_data = data_nodes(arch)
    deepest = max(arch.max_layer_index, 1)
    for name, attrs in arch.graph.nodes(data=True):
        if not (is_join(attrs) and is_feature(attrs)):
            continue
        inputs = [p for p in arch.graph.predecessors(name) if is_feature(arch[p]) and p in from_data]
        if len(inputs) < 2:
            continue
        inputs.sort(key=lambda n: arch[n]["layer_index"])
        source, latest = inputs[0], inputs[-1]
        gap = arch[latest]["layer_index"] - arch[source]["layer_index"]
        if gap < MIN_GAP:
            continue
        join = "concatenation" if function_name(attrs) in ("cat", "concat", "stack") else "residual add"
        score = round(min(1.0, 0.5 + gap / deepest), 3)
        source_attrs = arch[source]
        found.append(Candidate(
            name, KIND, score,
            f"{join} joins a skip over {gap} layers (from {source} at {size_text(source_attrs)}, "
            f"layer {source_attrs['layer_index']}) at {where(attrs)}",
        ))
        found.append(Candidate(
            source, KIND, round(0.8 * score, 3),
            f"source of a skip over {gap} layers into the {join} {name}",
        ))
    return found
