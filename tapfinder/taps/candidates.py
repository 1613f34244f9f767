"""Transition-point candidates and the registry of rules that find them.

A rule is a pure function from an :class:`~tapfinder.graph.ArchGraph` to ``Candidate`` records.
Rules read shapes, graph structure and module scopes, never model names. Adding one takes a
decorated function::

    @tapfinder.rule("wide_activation")
    def wide_activations(arch):
        return [
            tapfinder.Candidate(name, "wide_activation", 0.5, f"{attrs['channels']} channels")
            for name, attrs in arch.graph.nodes(data=True)
            if (attrs["channels"] or 0) >= 1024
        ]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..graph import ArchGraph

__all__ = ["Candidate", "rule", "registered_kinds", "find_candidates"]


@dataclass(frozen=True)
class Candidate:
    """One piece of evidence that ``node`` is a transition point.

    ``score`` in [0, 1] says how strong the evidence is; ``reason`` says it in a sentence with
    the numbers ("spatial 56x56 -> 28x28 (stride 2) at layer2.0.conv2").
    """

    node: str
    kind: str
    score: float
    reason: str


Rule = Callable[[ArchGraph], Iterable[Candidate]]
_RULES: dict[str, Rule] = {}


def rule(kind: str) -> Callable[[Rule], Rule]:
    """Register ``function`` as the rule for ``kind`` (replacing any earlier one)."""

    def register(function: Rule) -> Rule:
        _RULES[kind] = function
        return function

    return register


def registered_kinds() -> list[str]:
    """The kinds of transition point the registered rules detect, in registration order."""
    _load_builtin_rules()
    return list(_RULES)


def find_candidates(arch: ArchGraph, kinds: Iterable[str] | None = None) -> list[Candidate]:
    """Run the registered rules (or those for ``kinds``) and return all their candidates.

    Raises
    ------
    ValueError
        For a kind no rule is registered for, listing the known kinds.

    Examples
    --------
    >>> candidates = find_candidates(arch, kinds=["downsampling"])  # doctest: +SKIP
    >>> candidates[0].reason  # doctest: +SKIP
    'spatial 224x224 -> 112x112 (stride 2) at conv1 (Conv2d)'
    """
    _load_builtin_rules()
    selected = list(_RULES) if kinds is None else list(kinds)
    unknown = [k for k in selected if k not in _RULES]
    if unknown:
        raise ValueError(
            f"Unknown transition-point kind(s) {unknown}; known kinds: {', '.join(_RULES)}."
        )
    found: list[Candidate] = []
    for kind in selected:
        found.extend(c for c in _RULES[kind](arch) if c.node in arch.graph)
    return found


def _load_builtin_rules() -> None:
    from . import rules  # noqa: F401  (importing registers the built-in rules)
