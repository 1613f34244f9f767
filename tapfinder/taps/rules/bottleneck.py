"""Bottlenecks: channel compression (a narrow stretch between wider ones), and the
lowest-resolution point of an encoder-decoder."""

from __future__ import annotations

import math

from ...graph import ArchGraph
from ...graph.node_kinds import feature_inputs, is_feature, size_text, where
from ..candidates import Candidate, rule

KIND = "bottleneck"


def _narrow_end(arch: ArchGraph, start: str) -> str:
    """Follow single-consumer nodes of the same width from ``start``; return the last one."""
    width = arch[start]["channels"]
    current = start
    while True:
        users = [u for u in arch.graph.successors(current) if is_feature(arch[u])]
        if len(users) != 1 or arch[users[0]]["channels"] != width:
            return current
        current = users[0]


@rule(KIND)
def find_bottlenecks(arch: ArchGraph) -> list[Candidate]:
    """A parametric layer that narrows the channels gives a candidate at the end of the narrow
    stretch, when a later layer widens it again; an encoder-decoder gives one at its lowest
    resolution."""
    found = []
    for name, attrs in arch.graph.nodes(data=True):
        if not (attrs["parametric"] and is_feature(attrs)):
            continue
        inputs = feature_inputs(arch, name)
        if not inputs or attrs["channels"] >= arch[inputs[0]]["channels"]:
            continue
        wide, narrow = arch[inputs[0]]["channels"], attrs["channels"]
        end = _narrow_end(arch, name)
        widened = [u for u in arch.graph.successors(end) if (arch[u]["channels"] or 0) > narrow]
        if not widened:
            continue
        score = 0.4 + 0.6 * (1 - narrow / wide)
        found.append(Candidate(
            end, KIND, round(score, 3),
            f"channels {wide} -> {narrow} -> {arch[widened[0]]['channels']} "
            f"(compression {wide / narrow:g}x) at {where(attrs)}",
        ))
    found.extend(_encoder_decoder_bottleneck(arch))
    return found


def _encoder_decoder_bottleneck(arch: ArchGraph) -> list[Candidate]:
    features = [
        (n, a) for n, a in arch.graph.nodes(data=True)
        if is_feature(a) and a["reduction"] and math.prod(a["spatial"]) > 1
    ]
    if not features:
        return []
    deepest = max(a["reduction"] for _, a in features)
    last_name, last_attrs = [(n, a) for n, a in features if a["reduction"] == deepest][-1]
    outputs = [arch[o] for o in arch.outputs if is_feature(arch[o])]
    finest_output = min((o["reduction"] or math.inf for o in outputs), default=math.inf)
    if finest_output >= deepest:
        return []  # no decoder: nothing is upsampled after the deepest point
    return [Candidate(
        last_name, KIND, 1.0,
        f"lowest resolution of the encoder-decoder: {size_text(last_attrs)} "
        f"(stride {deepest:g}) before upsampling back to stride {finest_output:g}",
    )]
