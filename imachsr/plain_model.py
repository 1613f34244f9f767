"""The user's own model out of whatever wraps it for training.

Deep supervision adds adapters around a model; the engines add their own wrappers (DDP's
``module.``, ``torch.compile``'s ``_orig_mod.``, a ``LightningModule``'s attribute name).
:func:`plain_state_dict` undoes all of them, so the trained weights load into the model's own
class with ``load_state_dict(..., strict=True)``::

    model = MyNet(); model.load_state_dict(imachsr.plain_state_dict(checkpoint))
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["plain_state_dict", "split_scheme_state"]


def plain_state_dict(source: nn.Module | Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The state dict of the model an :class:`~imachsr.IMacHSR` wraps, without its adapters.

    ``source`` is the scheme itself, any module that holds one (``DistributedDataParallel``,
    ``torch.compile``'s wrapper, a ``LightningModule``, an Accelerate-prepared model), a state
    dict of one of those, or a checkpoint dictionary with a ``"state_dict"`` entry (Lightning's
    ``.ckpt``). Keys come back as the model's own (``layer1.0.conv1.weight``).
    """
    if isinstance(source, nn.Module):
        return _from_module(source)
    if isinstance(source, Mapping):
        state = source.get("state_dict", source)
        if isinstance(state, Mapping):
            return _from_state(state)
    raise TypeError(f"plain_state_dict takes a module or a state dict; got {type(source).__name__}.")


def _from_module(module: nn.Module) -> dict[str, torch.Tensor]:
    from .scheme import IMacHSR  # the scheme imports this package's modules at load time

    schemes = [m for m in module.modules() if isinstance(m, IMacHSR)]
    if len(schemes) != 1:
        raise ValueError(
            f"plain_state_dict: {type(module).__name__} holds {len(schemes)} IMacHSR schemes; "
            "pass the one whose model you want (its .model.state_dict() is the answer).")
    return dict(schemes[0].model.state_dict())


def _from_state(state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    return split_scheme_state(state)[0]


def split_scheme_state(state: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A scheme's state dict as (the model's entries, the adapters' entries), each keyed as
    their own module's ``state_dict`` (``layer1.weight``; ``<tap>.conv.weight``).

    The scheme sits at the one prefix ``P`` with keys ``P + "model."`` beside
    ``P + "adapters."`` (``""`` for the scheme's own, ``"module."`` under DDP, ``"scheme."``
    for a LightningModule attribute named ``scheme``).
    """
    prefixes = {"" if key.startswith("adapters.") else key[: key.index(".adapters.") + 1]
                for key in state if key.startswith("adapters.") or ".adapters." in key}
    prefixes = {p for p in prefixes if any(k.startswith(p + "model.") for k in state)}
    if len(prefixes) != 1:
        found = "none" if not prefixes else ", ".join(repr(p) for p in sorted(prefixes))
        raise ValueError(
            "plain_state_dict: this state dict does not hold exactly one IMacHSR scheme (keys "
            f"'<prefix>model.*' beside '<prefix>adapters.*'; prefixes found: {found}). Pass the "
            "scheme or the module that holds it instead.")
    prefix = prefixes.pop()
    parts: tuple[dict[str, Any], dict[str, Any]] = ({}, {})
    for part, name in zip(parts, ("model.", "adapters.")):
        part.update({key[len(prefix + name):]: value for key, value in state.items()
                     if key.startswith(prefix + name)})
    return parts
