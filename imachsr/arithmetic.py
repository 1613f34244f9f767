"""What the adapters add to a training step, in arithmetic, before any step is run.

Each tap's adapter computes on the tap's full feature map, so its cost grows with the tap's
channels and resolution, not with the model's: a 3x3 head on a 1,024-channel map at a quarter of
the input's resolution (SegFormer's fused decoder features) does several times the arithmetic
of a small SegFormer itself, and made its training step 2.5x slower in this project's
measurements (``docs/results.md``). :func:`adapter_arithmetic` counts the floating-point
operations of one forward pass of the model and of each adapter on random inputs shaped as the
example, with :class:`torch.utils.flop_counter.FlopCounterMode` (convolutions, matrix products
and attention; elementwise work is not counted), so a user learns the price before paying it.

Backward passes cost about twice their forward for the model and the adapters alike, so the
ratio of forward counts is the ratio of a step's arithmetic. Wall-clock follows it on large
inputs; on small ones, where launch and memory traffic dominate, a step grows by less.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch.utils.flop_counter import FlopCounterMode

from tapfinder.capture.example_inputs import normalize_example_inputs, random_inputs
from tapfinder.capture.model_state import preserved_state

from .adapters import adapter_key

if TYPE_CHECKING:
    from .scheme import IMacHSR

__all__ = ["AdapterArithmetic", "adapter_arithmetic"]


class AdapterArithmetic(NamedTuple):
    """Floating-point operations of one forward pass per image: the model's, and each tap's
    adapter's (keyed by tap name)."""

    model: int
    adapters: dict[str, int]

    @property
    def ratio(self) -> float:
        """The adapters' operations over the model's (0 for a model with no counted work)."""
        return sum(self.adapters.values()) / self.model if self.model else 0.0

    def summary(self) -> str:
        """One line for a run's banner.

        >>> AdapterArithmetic(2_000_000_000, {"a": 1_000_000_000, "b": 500_000_000}).summary()
        'the adapters add 1.50 GFLOPs per image to the model's 2.00 (0.75x its forward pass)'
        """
        return (f"the adapters add {sum(self.adapters.values()) / 1e9:.2f} GFLOPs per image to "
                f"the model's {self.model / 1e9:.2f} ({self.ratio:.2f}x its forward pass)")


def adapter_arithmetic(scheme: IMacHSR, example_inputs: Any) -> AdapterArithmetic:
    """Count the model's and each adapter's forward operations on random inputs shaped as
    ``example_inputs``, on the model's device, per image (the counts over the example's batch,
    the first axis of its first tensor, divided by its size).

    The scheme and its model are put back exactly as they were (training flags, batch-norm
    statistics, every random-number state): without gradients, the model runs twice (the first
    call settles any retrace for the example's shapes, the second is counted), each adapter once.
    """
    parameter = next(scheme.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    generators = [device] if device.type == "cuda" else []  # the CPU's is forked in any case
    with preserved_state(scheme), torch.random.fork_rng(devices=generators), torch.no_grad():
        inputs = random_inputs(normalize_example_inputs(example_inputs), device)
        # Inputs of a new shape or a new training mode may make the tapped model trace itself
        # again; that first call's shape propagation is not the model's arithmetic.
        scheme.tapped(*inputs.args, **inputs.kwargs)
        with FlopCounterMode(display=False) as model_count:
            _, features = scheme.tapped(*inputs.args, **inputs.kwargs)
        adapters = {}
        for name in scheme.taps:
            with FlopCounterMode(display=False) as count:
                scheme.adapters[adapter_key(name)](features[name])
            adapters[name] = count.get_total_flops()
    tensors = inputs.tensors()
    images = tensors[0].shape[0] if tensors and tensors[0].dim() else 1
    return AdapterArithmetic(model_count.get_total_flops() // images,
                             {name: total // images for name, total in adapters.items()})
