"""Snapshots of everything about a model that analysis and failed calls must leave alone."""

from __future__ import annotations

import torch
from torch import nn


def snapshot(model: nn.Module) -> dict:
    """Flags, state values and identities, devices, dtypes, attributes and hooks."""
    return {
        "training": [m.training for m in model.modules()],
        "state": {k: v.clone() for k, v in model.state_dict(keep_vars=True).items()},
        "tensors": [id(t) for t in [*model.parameters(), *model.buffers()]],
        "devices": {t.device for t in model.state_dict().values()},
        "dtypes": [t.dtype for t in model.state_dict().values()],
        "attributes": [sorted(vars(m)) for m in model.modules()],
        "hooks": [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()],
    }


def assert_same(before: dict, after: dict) -> None:
    """Fail naming the first part of two snapshots that differs."""
    assert before.keys() == after.keys()
    for key in before:
        if key == "state":
            assert before["state"].keys() == after["state"].keys()
            for name, value in before["state"].items():
                assert torch.equal(value, after["state"][name]), name
        else:
            assert before[key] == after[key], key
