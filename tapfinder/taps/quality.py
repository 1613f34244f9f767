"""How good a set of taps is, from structure alone: what a deep-supervision expert checks first.

A good tap is the output of a block or of a stride stage (where the network hands a finished
representation on), breaks no guard (:func:`tapfinder.taps.guards.guard_violations`), and a good set
covers more than one resolution when the network has several. The zoo sweep reports these per
model (``benchmarks/zoo_sweep.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..graph import ArchGraph
from ..graph.node_kinds import is_identity, stride
from ..graph.structure import (
    attention_interior,
    block_outputs,
    decoder_scales,
    residual_interiors,
    stage_outputs,
    stage_strides,
)
from .guards import guard_violations
from .selection import Tap

__all__ = ["TapQuality", "tap_quality"]


@dataclass(frozen=True)
class TapQuality:
    """The structural quality of ``taps`` on one model.

    Attributes
    ----------
    taps
        Number of taps.
    block_outputs
        Taps that are the output of a block (a module of more than one step) or the last
        main-path node of a stride stage.
    on_main_path
        Taps every input-to-output path passes through (encoder taps of an encoder-decoder with
        skip connections are not, and may still be good).
    strides
        The distinct feature strides the taps read, in increasing order.
    model_strides
        How many distinct strides the model's stages have (:meth:`ArchGraph.stages`, maps or
        token sets of more than one position): 1 for an isotropic ViT or MLP-Mixer.
    violations
        Each tap that breaks a guard, with the guards it breaks (a node inside a residual
        unit, such as a block's inner activation or its projection shortcut, is one).
    placeholders
        Taps that are identity placeholders (``nn.Identity``): the tensor is the one they pass
        on, but the name points at a module that computes nothing.
    decoder_scales
        How many scales a U-shaped network's decoder climbs back through
        (:func:`~tapfinder.graph.structure.decoder_scales`): 0 for any other network.
    on_decoder_scales
        Taps that are one of those scales' outputs.
    """

    taps: int
    block_outputs: int
    on_main_path: int
    strides: tuple[int, ...]
    model_strides: int
    violations: dict[str, list[str]] = field(default_factory=dict)
    placeholders: int = 0
    decoder_scales: int = 0
    on_decoder_scales: int = 0

    @property
    def covers_resolutions(self) -> bool:
        """At least two resolutions are supervised, where the model has two or more."""
        return len(self.strides) >= min(2, self.model_strides)


def tap_quality(arch: ArchGraph, taps: Iterable[Tap | str]) -> TapQuality:
    """Measure ``taps`` (:class:`~tapfinder.Tap` or node names) on ``arch``."""
    nodes = [tap.node if isinstance(tap, Tap) else tap for tap in taps]
    ends = set(block_outputs(arch).values()) | set(stage_outputs(arch))
    interior = attention_interior(arch)
    residual = residual_interiors(arch, interior)
    violations = {node: found for node in nodes
                  if (found := guard_violations(arch, node, interior, residual))}
    strides = {s for node in nodes if (s := stride(arch[node])) is not None}
    scales = decoder_scales(arch)
    return TapQuality(
        taps=len(nodes),
        block_outputs=sum(node in ends for node in nodes),
        on_main_path=sum(bool(arch[node]["on_main_path"]) for node in nodes),
        strides=tuple(sorted(strides)),
        model_strides=len(stage_strides(arch)),
        violations=violations,
        placeholders=sum(is_identity(arch[node]) for node in nodes),
        decoder_scales=len(scales),
        on_decoder_scales=sum(node in scales for node in nodes),
    )
