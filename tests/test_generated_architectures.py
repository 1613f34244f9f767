"""Random but valid architectures from a small grammar, checked end to end.

For each generated model: tracing never crashes, every tap the ranker picks is a tensor node
whose reported shape is the shape the instrumented model returns, instrumentation gives
bit-identical outputs in both training modes whichever mode it was traced in, and the user's
model is unchanged. A few examples run by default; the
``slow`` marker runs a few hundred (``pytest -m slow tests/test_generated_architectures.py``).
"""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import assert_same, snapshot
from torch import nn
from torch.nn import functional as F

import imachsr
import tapfinder

BLOCKS = ("conv", "strided", "maxpool", "avgpool", "residual", "concat", "branches",
          "attention", "value_gate", "shape_branch", "shared", "mode")


class ConvNormAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, stride: int, norm: str, act: str) -> None:
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, stride, 1, bias=norm == "none")]
        if norm == "batch":
            layers.append(nn.BatchNorm2d(cout))
        elif norm == "group":
            layers.append(nn.GroupNorm(2, cout))
        layers.append({"relu": nn.ReLU(), "gelu": nn.GELU(), "silu": nn.SiLU()}[act])
        super().__init__(*layers)


class Residual(nn.Module):
    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ConcatSkip(nn.Module):
    def __init__(self, channels: int, body: nn.Module) -> None:
        super().__init__()
        self.body = body
        self.fuse = nn.Conv2d(2 * channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([x, self.body(x)], dim=1))


class Branches(nn.Module):
    """Parallel branches of different receptive fields, fused by a sum."""

    def __init__(self, channels: int, count: int) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Conv2d(channels, channels, 2 * i + 1, padding=i) for i in range(count))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out + branch(x)
        return out


class Attention(nn.Module):
    """Feature map -> tokens (B, N, C) -> pre-norm self-attention -> feature map."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.attention = nn.MultiheadAttention(channels, 2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        normed = self.norm(tokens)
        tokens = tokens + self.attention(normed, normed, normed, need_weights=False)[0]
        return tokens.transpose(1, 2).reshape(batch, channels, height, width)


class ValueGate(nn.Module):
    """Branches on tensor values: fx cannot trace it, so it must become an auto-leaf."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.scale = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale(x) if x.mean() > 0 else x


class ShapeBranch(nn.Module):
    """Branches on the input's shape: decided from the example and recorded as a guard."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.even = nn.Conv2d(channels, channels, 1)
        self.odd = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.even(x) if x.shape[-1] % 2 == 0 else self.odd(x)


class ModeDependent(nn.Module):
    """Reads ``self.training`` in code fx traces through: functional dropout and a branch (as
    stochastic depth does). fx freezes both at the traced mode."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.dropout(self.conv(x), 0.3, self.training)
        return x + y if self.training else x + 0.5 * y


class SharedTwice(nn.Module):
    """One block registered under two names and applied twice (weights shared, as in CoaT)."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.first = block
        self.second = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))


class Generated(nn.Module):
    def __init__(self, blocks: list[nn.Module], channels: int, classes: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(channels, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(x)


@st.composite
def architectures(draw: st.DrawFn) -> tuple[nn.Module, tuple[int, ...]]:
    """A model and an input shape; downsampling stops before the map would vanish."""
    size = draw(st.sampled_from([8, 12, 16, 17]))
    width = draw(st.sampled_from([4, 8]))
    norm = draw(st.sampled_from(["batch", "group", "none"]))
    act = draw(st.sampled_from(["relu", "gelu", "silu"]))
    blocks: list[nn.Module] = [ConvNormAct(3, width, 1, norm, act)]
    side = size
    for kind in draw(st.lists(st.sampled_from(BLOCKS), min_size=1, max_size=7)):
        if kind in ("strided", "maxpool", "avgpool"):
            if side < 4:
                continue
            side = (side + 1) // 2 if kind == "strided" else side // 2
            blocks.append(ConvNormAct(width, width * 2, 2, norm, act) if kind == "strided"
                          else {"maxpool": nn.MaxPool2d(2), "avgpool": nn.AvgPool2d(2)}[kind])
            width *= 2 if kind == "strided" else 1
        elif kind == "conv":
            blocks.append(ConvNormAct(width, width, 1, norm, act))
        elif kind == "residual":
            blocks.append(Residual(ConvNormAct(width, width, 1, norm, act)))
        elif kind == "concat":
            blocks.append(ConcatSkip(width, ConvNormAct(width, width, 1, norm, act)))
        elif kind == "branches":
            blocks.append(Branches(width, draw(st.integers(2, 3))))
        elif kind == "attention":
            blocks.append(Attention(width))
        elif kind == "shared":
            blocks.append(SharedTwice(ConvNormAct(width, width, 1, norm, act)))
        elif kind == "value_gate":
            blocks.append(ValueGate(width))
        elif kind == "mode":
            blocks.append(ModeDependent(width))
        else:
            blocks.append(ShapeBranch(width))
    torch.manual_seed(draw(st.integers(0, 2**16)))
    model = Generated(blocks, width, classes=3)
    return model.train(draw(st.booleans())), (2, 3, size, size)


def check_end_to_end(model: nn.Module, shape: tuple[int, ...]) -> None:
    before = snapshot(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # auto-leaf and "fewer taps fit" are expected here
        arch = tapfinder.trace(model, shape)
        taps = tapfinder.select_taps(arch, k=3)
    assert_same(before, snapshot(model))
    for tap in taps:
        assert tap.node in arch.graph and arch[tap.node]["value"] == "tensor", tap.node
    if not taps:
        return
    tapped = imachsr.instrument(model, taps, shape, arch=arch)
    x = torch.randn(shape)
    traced_mode = model.training
    for mode in (traced_mode, not traced_mode):  # the traced mode, then the other one
        model.train(mode)
        with torch.no_grad():
            torch.manual_seed(0)  # the same dropout masks in both
            expected = model(x)
            torch.manual_seed(0)
            output, features = tapped(x)
        assert torch.equal(output, expected), f"traced with training={traced_mode}, run with {mode}"
        for tap in taps:
            assert tuple(features[tap.node].shape) == arch[tap.node]["shape"], tap.node


@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(architectures())
def test_generated_architectures_trace_rank_and_instrument(generated):
    check_end_to_end(*generated)


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(architectures())
def test_many_generated_architectures(generated):
    check_end_to_end(*generated)
