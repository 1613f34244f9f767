"""Choose K well-spaced taps from the candidates, and say why each one won.

Evidence is merged per node (noisy-or of the scores, so a node that is both a stage end and a
skip join outranks one that is only one of them), equivalent nodes are canonicalised (the end
of a shape-preserving chain such as ``add -> relu``, so the tap is the block's real output), and
non-taps are dropped. Taps are then picked greedily by ``score x position weight`` (x 0.8 off
the main path) with a minimum spacing in bases (the paper's base distance: here the layers
between the ends of consecutive repeated blocks); where every tap then reads one stride of a
model with stages at several, one moves to another stride. The position policies follow the
paper's ablations; on a U-shaped network the default one taps the decoder's scales first.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial

from ..errors import TapShortfallWarning
from ..graph import ArchGraph, NodeAttributes
from ..graph.node_kinds import is_join, stride
from ..graph.structure import (
    attention_interior,
    base_distance,
    block_outputs,
    canonical_node,
    decoder_scales,
    repeated_blocks,
    residual_interiors,
    stage_strides,
)
from .candidates import Candidate, find_candidates
from .guards import guard_violations
from .positions import POSITIONS, WINDOWS, position_weight

__all__ = ["Tap", "select_taps", "merge_candidates", "POSITIONS"]



@dataclass(frozen=True)
class Tap:
    """A chosen tap: the node to supervise and the evidence for it.

    ``beat`` lists the nearby candidates (within the spacing) that this tap excluded, with
    their merged scores, best first.
    """

    node: str
    module: str | None
    kinds: tuple[str, ...]
    score: float
    layer_index: int
    depth: float
    shape: tuple[int, ...]
    reasons: tuple[str, ...]
    beat: tuple[tuple[str, float], ...] = ()
    closes: str | None = None  # the outermost module whose output this node is
    stride: float | None = None  # the feature stride (reduction) of the stage it lies in
    point: str = "layer output"  # which kind of point: POINT_KINDS

    def explain(self) -> str:
        """A short paragraph: where the tap is, which block and stage it closes, why, and what
        it won over."""
        lines = [
            f"{self.node} [{self.module or '-'}] {self.shape}, layer {self.layer_index} "
            f"(depth {self.depth:.2f}), score {self.score:.2f}, {', '.join(self.kinds)}"
        ]
        where = [f"{self.point}: closes block {self.closes}" if self.closes else self.point]
        if self.stride is not None:
            where.append(f"in the stride-{self.stride:g} stage")
        if where:
            lines.append(f"  {', '.join(where)}")
        lines += [f"  - {reason}" for reason in self.reasons]
        if self.beat:
            rivals = ", ".join(f"{name} ({score:.2f})" for name, score in self.beat[:4])
            lines.append(f"  beat nearby: {rivals}")
        return "\n".join(lines)


@dataclass(frozen=True)
class _Evidence:
    node: str
    kinds: tuple[str, ...]
    score: float
    reasons: tuple[str, ...]


def _fewer_taps_advice(spacing: int, position: str, in_a_chosen_block: int) -> str:
    """What could give more taps: only the settings that held some back."""
    advice = ["lower k"]
    if spacing > 0:
        advice.insert(0, "lower spacing")
    if position != "uniform":
        advice.append("use position='uniform'")
    text = f"To get more, {', '.join(advice[:-1])} or {advice[-1]}." if len(advice) > 1 else (
        f"To get more, {advice[0]}.")
    if in_a_chosen_block:
        text = (f"{in_a_chosen_block} candidates lie in a repeated block that already holds a "
                f"tap (one tap per block). {text}")
    return text[0].upper() + text[1:]


# What a tap can be, in the words Tap.explain() uses.
POINT_KINDS = ("stage output", "block output", "join", "layer output")


def _point_kind(arch: ArchGraph, node: str, closes_block: bool, ends_stage: bool) -> str:
    """Which kind of point ``node`` is: the last main-path node of its stride (a stage's
    output), a block's output, a join of branches (a skip or fusion ``cat`` or sum), or the
    output of a layer."""
    if ends_stage:
        return "stage output"
    if closes_block:
        return "block output"
    if is_join(arch[node]):
        return "join"
    return "layer output"


def _nothing_may_be_a_tap(arch: ArchGraph, candidates: list[Candidate],
                          kinds: Iterable[str] | None) -> str:
    """Why no candidate survived the guards: the most common guard, with an example."""
    if not candidates:
        wanted = f" of kinds {', '.join(kinds)}" if kinds is not None else ""
        return (f"No tap: the rules found no candidate{wanted} in this model. Choose other "
                "kinds, or name the taps.")
    interior = attention_interior(arch)
    residual = residual_interiors(arch, interior)
    reasons: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for candidate in candidates:
        node = canonical_node(arch, candidate.node)
        for reason in guard_violations(arch, node, interior, residual)[:1]:
            kind = reason.split(" (")[0]
            reasons[kind] += 1
            examples.setdefault(kind, f"{node}: {reason}")
    kinds = sorted({candidate.kind for candidate in candidates})
    text = (f"No tap: none of the {len(candidates)} candidates ({', '.join(kinds)}) may be a "
            "tap")
    if reasons:
        kind, count = reasons.most_common(1)[0]
        text += f"; {count} lie {kind} (for example {examples[kind]})"
    return text + ". Choose other kinds, or name the taps."


def _is_tap(attrs: NodeAttributes) -> bool:
    return (
        attrs["value"] == "tensor"
        and attrs["op"] not in ("placeholder", "output", "get_attr")
        and len(attrs["shape"]) >= 2
    )


def merge_candidates(arch: ArchGraph, candidates: Iterable[Candidate]) -> list[_Evidence]:
    """One record per canonical tap node: kinds, noisy-or score and reasons; non-taps and nodes
    that break a guard (:func:`~tapfinder.taps.guards.guard_violations`) dropped."""
    grouped: dict[str, list[Candidate]] = defaultdict(list)
    interior = attention_interior(arch)
    residual = residual_interiors(arch, interior)
    for candidate in candidates:
        node = canonical_node(arch, candidate.node)
        if (node in arch.graph and _is_tap(arch[node]) and node not in arch.outputs
                and not guard_violations(arch, node, interior, residual)):
            grouped[node].append(candidate)
    merged = []
    for node, items in grouped.items():
        best_per_kind: dict[str, float] = {}
        for item in items:
            best_per_kind[item.kind] = max(best_per_kind.get(item.kind, 0.0), item.score)
        score = 1 - math.prod(1 - s for s in best_per_kind.values())
        reasons = tuple(dict.fromkeys(item.reason for item in sorted(items, key=lambda c: -c.score)))
        kinds = tuple(sorted(best_per_kind, key=lambda k: -best_per_kind[k]))
        merged.append(_Evidence(node, kinds, round(score, 4), reasons))
    return merged


def _outside_utility(arch: ArchGraph, position: str) -> Callable[[_Evidence], float]:
    """Rank candidates outside the position window: nearest to the window first, then score."""
    low, high = WINDOWS[position]

    def utility(item: _Evidence) -> float:
        depth = arch[item.node]["depth"]
        distance = max(low - depth, depth - high, 0.0)
        return (1.0 - distance) + 1e-3 * item.score

    return utility


def _utility(arch: ArchGraph, item: _Evidence, position: str, rank: int, k: int) -> float:
    """How much the ``rank``-th of ``k`` taps wants ``item``: its score, weighed by ``position``
    and by whether every input-to-output path passes through it."""
    attrs = arch[item.node]
    # Side branches (a shortcut's projection) carry less than the path all data takes.
    main_path = 1.0 if attrs["on_main_path"] else 0.8
    return item.score * main_path * position_weight(attrs["depth"], position, rank, k)


def _apart(arch: ArchGraph, item: _Evidence, others: Iterable[_Evidence], layers: int,
           blocks: dict[str, str]) -> bool:
    """``item`` lies at least ``layers`` from every one of ``others`` and shares no repeated
    block with them."""
    index, block = arch[item.node]["layer_index"], blocks.get(item.node)
    return all(abs(arch[other.node]["layer_index"] - index) >= layers
               and (block is None or blocks.get(other.node) != block) for other in others)


def _rivals(best: _Evidence, near: list[_Evidence]) -> list[tuple[str, float]]:
    """The candidates ``best`` excluded, with their scores, best first."""
    return sorted(((i.node, i.score) for i in near if i.node != best.node),
                  key=lambda pair: -pair[1])


def _cover_two_resolutions(arch: ArchGraph, chosen: list[_Evidence], evidence: list[_Evidence],
                           position: str, layers: int, blocks: dict[str, str]) -> list[_Evidence]:
    """Where every tap reads one stride but the model has stages at others, swap in the
    candidate at another stride that costs the least utility: deep supervision of a multi-stage
    network should see more than one scale (NesT and ViTamin put all three uniform taps in
    their long last stage). The swapped-in candidate keeps the spacing and the one-tap-per-block
    rule, and has a positive utility for the rank it takes, so it stays in the position's
    window; where none does, the taps stay as they were."""
    k = len(chosen)
    strides = {stride(arch[item.node]) for item in chosen}
    wanted = stage_strides(arch) - strides
    if k < 2 or len(strides) != 1 or not wanted:
        return chosen
    swaps = []
    for rank, replaced in enumerate(chosen):
        kept = [item for item in chosen if item is not replaced]
        for item in evidence:
            gain = _utility(arch, item, position, rank, k)
            if (stride(arch[item.node]) in wanted and gain > 0
                    and _apart(arch, item, kept, layers, blocks)):
                loss = _utility(arch, replaced, position, rank, k) - gain
                swaps.append((loss, -gain, arch[item.node]["layer_index"], rank, item))
    if not swaps:
        return chosen
    *_, rank, item = min(swaps, key=lambda swap: swap[:3])
    replaced = chosen[rank]
    moved = _Evidence(item.node, item.kinds, item.score, (
        *item.reasons, f"chosen over {replaced.node} (stride {stride(arch[replaced.node])}) so "
        f"that the taps read two resolutions"))
    return [moved if index == rank else other for index, other in enumerate(chosen)]


def _decoder_taps(arch: ArchGraph, evidence: list[_Evidence], k: int,
                  spacing: int) -> list[_Evidence]:
    """On a U-shaped network, up to ``k`` of its decoder's scale outputs
    (:func:`~tapfinder.graph.structure.decoder_scales`), finest first; a base is one decoder
    scale here, so ``spacing`` 1 takes consecutive scales and 2 every other one. The decoder
    builds the dense prediction at each scale from the encoder's features of that scale, and
    supervising its scales is what nnU-Net and UNet++ do. Chosen on validation:
    ``docs/results.md`` has the U-Net measurements. Empty on any other network."""
    scales = decoder_scales(arch)
    by_node = {item.node: item for item in evidence}
    chosen: list[_Evidence] = []
    for output in scales[::-1][::max(spacing, 1)]:  # finest first, ``spacing`` scales apart
        if len(chosen) == k:
            break
        item = by_node.get(canonical_node(arch, output))
        if item is None:
            continue
        chosen.append(_Evidence(item.node, item.kinds, item.score, (
            f"a decoder scale output (stride {stride(arch[item.node])}): the decoder climbs back "
            f"through {len(scales)} scales, and a U-shaped network's taps are its decoder's "
            "scales, finest first", *item.reasons)))
    return chosen


def select_taps(
    arch: ArchGraph,
    candidates: Iterable[Candidate] | None = None,
    *,
    k: int = 3,
    spacing: int = 1,
    position: str = "uniform",
    kinds: Iterable[str] | None = None,
) -> list[Tap]:
    """Pick up to ``k`` taps at least ``spacing`` bases apart, favouring ``position``.

    Parameters
    ----------
    arch
        The traced model.
    candidates
        Evidence to rank; by default :func:`~tapfinder.taps.candidates.find_candidates` on ``arch``.
    k
        Number of taps wanted.
    spacing
        Minimum distance between chosen taps in bases
        (:func:`~tapfinder.graph.structure.base_distance`: the layers between the ends of
        consecutive repeated blocks, so ``spacing=2`` keeps a whole block between taps); 0 leaves
        only the one-tap-per-block rule. The default, 1, lets a 4-block network hold 3 taps.
    position
        ``"uniform"`` (default: the i-th of k taps favours depth (i + 0.5) / k, so the taps
        spread over the network's stages), ``"input"`` (first half, earliest favoured: the
        paper's choice), ``"central"`` or ``"output"`` (second half). ``docs/results.md`` has
        the measurements behind the default.
    kinds
        Only consider candidates of these kinds.

    Returns
    -------
    list of Tap
        In execution order. When the position's window cannot hold ``k`` taps at that spacing,
        the candidates nearest to the window complete the set (with a warning); fewer than ``k``
        (with a warning) only when the whole model cannot hold them.

    Raises
    ------
    ValueError
        For ``k < 1``, ``spacing < 0`` or an unknown ``position`` or kind.

    Examples
    --------
    >>> taps = select_taps(tapfinder.trace(model, (1, 3, 224, 224)), k=3)  # doctest: +SKIP
    >>> print(taps[0].explain())  # doctest: +SKIP
    """
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer; got {k!r}.")
    if not isinstance(spacing, int) or spacing < 0:
        raise ValueError(f"spacing must be a non-negative integer (bases); got {spacing!r}.")
    if position not in POSITIONS:
        raise ValueError(f"position must be one of {', '.join(POSITIONS)}; got {position!r}.")
    if candidates is None:
        candidates = find_candidates(arch, kinds)
    elif kinds is not None:
        wanted = set(kinds)
        candidates = [c for c in candidates if c.kind in wanted]
    candidates = list(candidates)
    evidence = merge_candidates(arch, candidates)

    beaten: dict[str, list[tuple[str, float]]] = {}
    blocks = repeated_blocks(arch)  # at most one tap per repeated block
    layers = spacing * base_distance(arch, blocks)
    chosen = _decoder_taps(arch, evidence, k, spacing) if position == "uniform" else []
    taken = {item.node for item in chosen}
    remaining = [item for item in evidence
                 if item.node not in taken and _apart(arch, item, chosen, layers, blocks)]
    for item in chosen:
        beaten[item.node] = _rivals(item, [i for i in evidence
                                           if not _apart(arch, i, [item], layers, blocks)])
    outside = in_a_chosen_block = 0
    spread = k - len(chosen)  # the taps left to spread over the depth
    for rank in range(spread):
        utility: Callable[[_Evidence], float] = partial(_utility, arch, position=position,
                                                         rank=rank, k=spread)
        viable = [item for item in remaining if utility(item) > 0]
        if not viable and remaining:  # the window is full: the nearest candidates complete it
            utility = _outside_utility(arch, position)
            viable = remaining
            outside += 1
        if not viable:
            break
        best = max(viable, key=lambda item: (utility(item), -arch[item.node]["layer_index"]))
        near = [i for i in remaining if i is best or not _apart(arch, i, [best], layers, blocks)]
        in_a_chosen_block += sum(abs(arch[i.node]["layer_index"] - arch[best.node]["layer_index"])
                                 >= layers for i in near if i is not best)
        chosen.append(best)
        beaten[best.node] = _rivals(best, near)
        remaining = [i for i in remaining if i not in near]
    chosen = _cover_two_resolutions(arch, chosen, evidence, position, layers, blocks)
    for item in chosen:
        if item.node not in beaten:  # swapped in: it beat what lies near it, taps aside
            others = [i for i in evidence if i.node not in beaten]
            beaten[item.node] = _rivals(item, [i for i in others if not _apart(
                arch, i, [item], layers, blocks)])

    low, high = WINDOWS[position]
    if outside and len(chosen) > outside and (low, high) != (0.0, 1.0):
        warnings.warn(
            f"position={position!r}: {outside} of the {len(chosen)} taps lie outside depths "
            f"{low}-{high}, which held only {len(chosen) - outside} at spacing={spacing} "
            f"({layers} layers).",
            stacklevel=2,
        )
    if not evidence:
        warnings.warn(_nothing_may_be_a_tap(arch, candidates, kinds), TapShortfallWarning,
                      stacklevel=2)
    elif len(chosen) < k:
        warnings.warn(
            f"Only {len(chosen)} of k={k} taps fit with spacing={spacing} ({layers} layers) and "
            f"position={position!r} ({len(evidence)} candidate nodes, "
            f"{arch.max_layer_index} layers deep). "
            + _fewer_taps_advice(spacing, position, in_a_chosen_block),
            TapShortfallWarning,
            stacklevel=2,
        )
    order = {name: i for i, name in enumerate(arch.graph)}
    stage_ends = set(arch.stages())
    closes: dict[str, str] = {}
    for path, node in block_outputs(arch).items():  # outer modules first: keep the outermost
        closes.setdefault(node, path)
    taps = [
        Tap(
            node=item.node,
            module=arch[item.node]["module"],
            kinds=item.kinds,
            score=item.score,
            layer_index=arch[item.node]["layer_index"],
            depth=round(arch[item.node]["depth"], 4),
            shape=arch[item.node]["shape"],
            reasons=item.reasons,
            beat=tuple(beaten[item.node]),
            closes=closes.get(item.node),
            stride=arch[item.node]["reduction"],
            point=_point_kind(arch, item.node, item.node in closes, item.node in stage_ends),
        )
        for item in chosen
    ]
    return sorted(taps, key=lambda tap: order[tap.node])
