"""Stage boundaries: ends of repeated sibling blocks, and where width or resolution changes."""

from __future__ import annotations

from collections import defaultdict

from ...graph import ArchGraph
from ...graph.node_kinds import is_feature, size_text
from ...graph.structure import call_outputs, scope_bounds
from ..candidates import Candidate, rule

KIND = "stage_boundary"


def _repeated_blocks(arch: ArchGraph, calls: dict[str, dict[str, str]]
                     ) -> dict[tuple[str, str], list[str]]:
    """(parent path, class name) -> child paths, for two or more sibling blocks of one class;
    a block that ran more than once (ALBERT's shared layer) is one group of its calls
    (:func:`call_outputs` keys: ``path``, ``path@1``, ...).

    Only composite modules that ran count: those whose forward recorded nodes of submodules
    (a ``Bottleneck``, a transformer layer), not single layers such as three sibling convs.
    """
    ran = {path for _, attrs in arch.graph.nodes(data=True) for path in attrs["scope"][:-1]}
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in sorted(ran):
        class_name = arch.module_types.get(path)
        if class_name and path in calls:
            groups[(path, class_name)] = list(calls[path])
        elif class_name:
            groups[(path.rpartition(".")[0], class_name)].append(path)
    return {key: members for key, members in groups.items() if len(members) >= 2}


@rule(KIND)
def find_stage_boundaries(arch: ArchGraph) -> list[Candidate]:
    """Block outputs of repeated sibling blocks (the last block of a group scores highest), and
    the last main-path node before channel width or resolution changes."""
    found = []
    order = {name: i for i, name in enumerate(arch.graph)}
    calls = call_outputs(arch)
    _, block_outputs = scope_bounds(arch)
    for outputs_by_call in calls.values():
        block_outputs.update(outputs_by_call)
    for (parent, class_name), members in _repeated_blocks(arch, calls).items():
        outputs = sorted(((block_outputs[path], path) for path in members if path in block_outputs),
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
