"""Stage boundaries: ends of repeated sibling blocks, and where width or resolution changes."""

from __future__ import annotations

from ...graph import ArchGraph
from ...graph.node_kinds import is_feature, size_text
from ...graph.structure import block_outputs, sibling_blocks
from ..candidates import Candidate, rule

KIND = "stage_boundary"


@rule(KIND)
def find_stage_boundaries(arch: ArchGraph) -> list[Candidate]:
    """Block outputs of repeated sibling blocks (the last block of a group scores highest), and
    the last main-path node before channel width or resolution changes."""
    found = []
    order = {name: i for i, name in enumerate(arch.graph)}
    outputs_of = block_outputs(arch)
    for (parent, class_name), members in sibling_blocks(arch).items():
        outputs = sorted(((outputs_of[path], path) for path in members if path in outputs_of),
                         key=lambda item: order[item[0]])
        for index, (output, path) in enumerate(outputs, start=1):
            last = index == len(outputs)
            group = parent or "the root"
            found.append(Candidate(
                output, KIND, 0.9 if last else 0.6,
                f"end of block {path} ({class_name} {index} of {len(outputs)} in {group})",
            ))

    previous = None
    for name, attrs in arch.graph.nodes(data=True):
        if not (attrs["on_main_path"] and is_feature(attrs)):
            continue
        if previous is not None:
            before = arch[previous]
            if (before["channels"], before["spatial"]) != (attrs["channels"], attrs["spatial"]):
                found.append(Candidate(
                    previous, KIND, 0.8,
                    f"last main-path node with {before['channels']} channels at "
                    f"{size_text(before)} before {attrs['channels']} channels at {size_text(attrs)}",
                ))
        previous = name
    return found
