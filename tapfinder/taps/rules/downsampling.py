"""Downsampling: the spatial size or token count shrinks (pooling, strided conv, patch merging)."""

from __future__ import annotations

import math

from ...graph import ArchGraph
from ...graph.node_kinds import is_feature, size_text, where
from ..candidates import Candidate, rule

KIND = "downsampling"


@rule(KIND)
def find_downsampling(arch: ArchGraph) -> list[Candidate]:
    """Candidates after each shrinking node and before it (its input).

    Global pooling to a single position is kept with a low score: it ends the feature maps
    rather than changing their granularity.
    """
    found = []
    for name, attrs in arch.graph.nodes(data=True):
        if not is_feature(attrs):
            continue
        sources = [p for p in arch.graph.predecessors(name) if arch[p]["spatial"] is not None]
        for source in sources:
            before = arch[source]
            spatial_before, spatial_after = before["spatial"] or (), attrs["spatial"] or ()
            size_before, size_after = math.prod(spatial_before), math.prod(spatial_after)
            if size_after >= size_before or len(spatial_before) != len(spatial_after):
                continue
            stride = (size_before / size_after) ** (1 / len(spatial_after))
            change = f"{size_text(before)} -> {size_text(attrs)}"
            # A strided layer that happens to reach 1x1 at a tiny input is still a stride.
            global_pool = size_after == 1 and not attrs["parametric"]
            score = 0.3 if global_pool else 1.0
            what = "global pooling" if global_pool else f"stride {stride:g}"
            found.append(Candidate(name, KIND, score, f"after downsampling {change} ({what}) at {where(attrs)}"))
            found.append(Candidate(source, KIND, 0.8 * score, f"before downsampling {change} ({what}) at {where(attrs)}"))
            break
    return found
