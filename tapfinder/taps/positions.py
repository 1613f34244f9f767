"""Where along the network's depth taps are favoured: the ``position`` policies of
:func:`tapfinder.select_taps`. Plain Python, so the command line can offer them without
importing torch."""

from __future__ import annotations

from typing import Literal

__all__ = ["Position", "POSITIONS", "WINDOWS", "position_weight"]

Position = Literal["uniform", "input", "central", "output"]
POSITIONS: tuple[Position, ...] = ("uniform", "input", "central", "output")
# The relative depths each policy considers; candidates outside complete a full window.
WINDOWS = {"input": (0.0, 0.5), "central": (0.25, 0.75), "output": (0.5, 1.0), "uniform": (0.0, 1.0)}


def position_weight(depth: float, position: str, rank: int, k: int) -> float:
    """How much ``position`` favours a candidate at relative ``depth`` for the ``rank``-th of
    ``k`` taps: 0 outside the policy's window.

    >>> position_weight(0.5, "uniform", rank=1, k=3)
    1.0
    """
    low, high = WINDOWS[position]
    if not low <= depth <= high:
        return 0.0
    if position == "input":
        return 1.0 - depth
    if position == "output":
        return 0.5 + depth / 2
    if position == "central":
        return 1.0 - abs(depth - 0.5)
    target = (rank + 0.5) / k
    return 1.0 - min(1.0, abs(depth - target) * 2)
