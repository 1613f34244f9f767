"""What module taps hold when no trace says it: one no-grad pass of the model with forward
hooks, on random inputs of the example's shapes, with the model put back as it was afterwards.

Used where fx cannot trace the model's root (value-dependent ``if`` in its own ``forward``):
:func:`imachsr.instrument` then taps modules with hooks, and the adapters need each tap's
shape and layout. Without a graph, the layout is read from the rank alone: ``(B, C, H, W)`` is a
channels-first map, ``(B, C, D, H, W)`` a volume, ``(B, C)`` a vector; a rank-3 tensor could be
tokens or a 1-D map, so it is refused with advice.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from tapfinder.capture.example_inputs import normalize_example_inputs, random_inputs
from tapfinder.capture.model_state import preserved_state

from .instrument import TappedModel

__all__ = ["HookTaps", "probe_hook_taps"]

_LAYOUTS = {2: None, 4: "NCHW", 5: "NCDHW"}


class HookTaps(NamedTuple):
    """Each tap's ``(layout, shape)``, the model's output and the input's spatial size."""

    taps: dict[str, tuple[str | None, tuple[int, ...]]]
    output: Any
    image_size: tuple[int, ...] | None


def probe_hook_taps(tapped: TappedModel, example_inputs: Any) -> HookTaps:
    """Run ``tapped`` (hook mode) once on random inputs shaped as ``example_inputs``.

    Raises
    ------
    ValueError
        For a tap of a rank whose layout cannot be told without a trace (rank 3).
    """
    model = tapped.model
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    with preserved_state(model), torch.no_grad():  # random inputs: the RNG is restored too
        inputs = random_inputs(normalize_example_inputs(example_inputs), device)
        output, features = tapped(*inputs.args, **inputs.kwargs)
    described = {}
    for name, feature in features.items():
        if feature.dim() not in _LAYOUTS:
            raise ValueError(
                f"Tap {name!r} holds a rank-{feature.dim()} tensor {tuple(feature.shape)}: without "
                "an fx trace its layout (tokens (B, N, C) or a 1-D map (B, C, L)) is unknown. "
                "Tap a module whose output is (B, C, H, W), or make the model traceable."
            )
        described[name] = (_LAYOUTS[feature.dim()], tuple(feature.shape))
    image = next((t for t in inputs.tensors() if t.dim() >= 3), None)
    return HookTaps(described, output, tuple(image.shape[2:]) if image is not None else None)

