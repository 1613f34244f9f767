"""Errors tapfinder raises, and warnings it gives, on purpose, each with a message that says what
to do next."""

from __future__ import annotations

__all__ = ["TapfinderError", "TraceFailure", "ShapePropagationError", "InvalidInputError",
           "TapShortfallWarning"]


class TapfinderError(Exception):
    """Base class of every error tapfinder raises deliberately."""


class InvalidInputError(TapfinderError, TypeError, ValueError):
    """An argument has the wrong type or value (``example_inputs``, ``leaf_modules``, ...)."""


class TraceFailure(TapfinderError):
    """``torch.fx`` could not trace the model, even after making submodules leaves."""


class ShapePropagationError(TapfinderError):
    """Running the traced graph on the example inputs' shapes failed at one node."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        # fx's Interpreter appends its own node dump to ``args`` on the way out; keep ours.
        self.message = message

    def __str__(self) -> str:
        return self.message


class TapShortfallWarning(UserWarning):
    """:func:`~tapfinder.select_taps` chose fewer taps than asked for: the model, the spacing or
    the position window cannot hold ``k`` (the message says which setting held them back), or
    no candidate may be a tap at all."""
