"""How much the auxiliary terms weigh against the output loss, and how that changes in training.

Deep supervision in practice does not keep its companion losses at full weight to the end:
Deeply-Supervised Nets decay them, nnU-Net normalises the per-level weights to sum to 1 with the
output's. Two independent choices, each a plain function:

- a **schedule** multiplies every tap's ``alpha`` and ``beta`` by a factor of the training
  progress ``t`` in ``[0, 1]``: ``"constant"`` (1), ``"linear"`` (``1 - t``) or ``"cosine"``
  (``(1 + cos(pi t)) / 2``), the last two reaching 0 at the end of training, so the final
  updates optimise the output loss alone;
- **normalisation** divides the whole objective by ``1 + sum_m alpha_m``, so the output's weight
  and the taps' MI weights sum to 1.
"""

from __future__ import annotations

import math
from typing import Literal

__all__ = ["Schedule", "SCHEDULES", "schedule_factor", "normalisation"]

Schedule = Literal["constant", "linear", "cosine"]
SCHEDULES: tuple[Schedule, ...] = ("constant", "linear", "cosine")


def schedule_factor(schedule: str, progress: float) -> float:
    """The factor on the auxiliary weights at ``progress`` (0 at the first step, 1 at the end).

    >>> schedule_factor("linear", 0.25), schedule_factor("cosine", 0.5)
    (0.75, 0.5)
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}; got {schedule!r}.")
    if not 0.0 <= progress <= 1.0:
        raise ValueError(f"progress must lie in [0, 1]; got {progress}.")
    if schedule == "linear":
        return 1.0 - progress
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


def normalisation(alphas: list[float], factor: float) -> float:
    """The divisor that makes the output's weight (1) and the scheduled MI weights sum to 1.

    >>> normalisation([0.5, 0.25, 0.25], 1.0)
    2.0
    """
    return 1.0 + factor * sum(alphas)
