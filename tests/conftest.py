"""Shared fixtures."""

from __future__ import annotations

import pytest
import torch
from support import SmallNet


@pytest.fixture
def small_net() -> SmallNet:
    torch.manual_seed(0)
    return SmallNet()
