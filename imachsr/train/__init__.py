"""``imachsr train``: train a segmentation model with or without iMacHSR, evaluate it, and write
metrics, checkpoints and figures; ``--compare`` runs both from the same seed and data order.

- :mod:`~imachsr.train.config`: :class:`TrainConfig` (what a run depends on) and
  :class:`RunResult` (what it gives back);
- :mod:`~imachsr.train.loop`: :func:`train`, the loop with evaluation, resume and DDP;
- :mod:`~imachsr.train.comparison`: :func:`compare`, the table and what it means;
- :mod:`~imachsr.train.command_line`: the arguments (``python -m imachsr.train`` runs it, as
  ``torchrun`` does for several processes).
"""

from .comparison import compare, comparison_table, comparison_verdict, measured_evidence
from .config import RunResult, TrainConfig, UsageError
from .loop import build_model_for, evaluate, train

__all__ = ["TrainConfig", "RunResult", "UsageError", "train", "evaluate", "compare",
           "comparison_table", "comparison_verdict", "measured_evidence", "build_model_for",
           "main"]


def main(argv: list[str] | None = None) -> int:
    """``imachsr train`` with ``argv`` (default: the process's); returns the exit code."""
    from .command_line import main as run

    return run(argv)
