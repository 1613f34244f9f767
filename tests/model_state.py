"""Snapshots of everything about a model that analysis and failed calls must leave alone."""

from __future__ import annotations

import torch
from torch import nn


def _describe(value: object) -> object:
    """What an attribute holds, deeply enough to see a cache being filled: containers by their
    items (tensors by identity), everything else by identity."""
    if isinstance(value, dict):
        return ("dict", [(key, _describe(item)) for key, item in value.items()])
    if isinstance(value, (list, tuple, set)):
        return (type(value).__name__, [_describe(item) for item in value])
    if isinstance(value, (str, int, float, bool, type(None))):
        return value
    return ("object", id(value))


def snapshot(model: nn.Module) -> dict:
    """Flags, state values and identities, devices, dtypes, every module's attributes (caches
    included), hooks and the CPU random-number state."""
    return {
        "training": [m.training for m in model.modules()],
        "state": {k: v.clone() for k, v in model.state_dict(keep_vars=True).items()},
        "tensors": [id(t) for t in [*model.parameters(), *model.buffers()]],
        "devices": {t.device for t in model.state_dict().values()},
        "dtypes": [t.dtype for t in model.state_dict().values()],
        "attributes": [sorted(vars(m)) for m in model.modules()],
        "attribute_values": [
            {key: _describe(value) for key, value in vars(m).items()
             if key not in ("_parameters", "_buffers", "_modules")}  # compared as "state" above
            for m in model.modules()
        ],
        "hooks": [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()],
        "rng": torch.get_rng_state(),
    }


def assert_same(before: dict, after: dict) -> None:
    """Fail naming the first part of two snapshots that differs."""
    assert before.keys() == after.keys()
    for key in before:
        if key == "rng":
            assert torch.equal(before["rng"], after["rng"]), "the random-number state changed"
        elif key == "state":
            assert before["state"].keys() == after["state"].keys()
            for name, value in before["state"].items():
                assert torch.equal(value, after["state"][name]), name
        elif key == "attribute_values":
            for index, (old, new) in enumerate(zip(before[key], after[key])):
                changed = sorted(k for k in {*old, *new} if old.get(k) != new.get(k))
                assert not changed, f"module {index} attributes {changed} changed"
        else:
            assert before[key] == after[key], key
