"""What the adapters add to a step, counted before training: hand-computed counts on small
models, per image, on maps and on pooled tokens, with the scheme left exactly as it was."""

from __future__ import annotations

import pytest
import torch
from support import TinySegmenter, TorchEncoderViT, assert_same, snapshot
from torch import nn

import tapfinder
from imachsr import AdapterArithmetic, IMacHSR, adapter_arithmetic


def _convolution(cin: int, cout: int, kernel: int, pixels: int) -> int:
    return 2 * cin * cout * kernel * kernel * pixels


def test_counts_the_model_and_each_head_per_image() -> None:
    model = TinySegmenter(classes=3)  # at 16x16: stem 8x8, down 4x4, head 4x4
    scheme = IMacHSR(model, 3, example_inputs=(2, 3, 16, 16), taps=["stem.2", "down.2"])
    counted = adapter_arithmetic(scheme, (4, 3, 16, 16))
    model_flops = (_convolution(3, 8, 3, 64) + _convolution(8, 16, 3, 16)
                   + _convolution(16, 3, 1, 16))
    assert counted.model == model_flops
    # A head: a 3x3 convolution to min(channels, 256) hidden channels, then a 1x1 to the classes.
    assert scheme.taps == ("stem_2", "down_2")  # fx names the modules' nodes
    assert counted.adapters == {
        "stem_2": _convolution(8, 8, 3, 64) + _convolution(8, 3, 1, 64),
        "down_2": _convolution(16, 16, 3, 16) + _convolution(16, 3, 1, 16),
    }
    assert counted.ratio == pytest.approx(sum(counted.adapters.values()) / model_flops)


def test_a_narrower_head_counts_less() -> None:
    model = TinySegmenter(classes=3)
    wide = IMacHSR(model, 3, example_inputs=(2, 3, 16, 16), taps=["down.2"])
    narrow = IMacHSR(model, 3, example_inputs=(2, 3, 16, 16), taps=["down.2"], head_width=4)
    assert adapter_arithmetic(narrow, (2, 3, 16, 16)).adapters["down_2"] == (
        _convolution(16, 4, 3, 16) + _convolution(4, 3, 1, 16))
    assert adapter_arithmetic(narrow, (2, 3, 16, 16)).ratio < adapter_arithmetic(
        wide, (2, 3, 16, 16)).ratio


class RootBranchSegmenter(TinySegmenter):
    """fx cannot trace its root: the scheme reads module taps with forward hooks."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.mean() > 10:
            x = x / 2
        return super().forward(x)


def test_module_taps_read_by_hooks_are_counted_the_same() -> None:
    with pytest.warns(tapfinder.EagerGraphWarning):
        hooked = IMacHSR(RootBranchSegmenter(classes=3), 3, example_inputs=(2, 3, 16, 16),
                         taps=["stem", "down"])
    traced = IMacHSR(TinySegmenter(classes=3), 3, example_inputs=(2, 3, 16, 16),
                     taps=["stem.2", "down.2"])
    assert hooked.tapped.uses_hooks
    by_hooks, by_trace = (adapter_arithmetic(s, (2, 3, 16, 16)) for s in (hooked, traced))
    assert by_hooks.model == by_trace.model
    assert list(by_hooks.adapters.values()) == list(by_trace.adapters.values())


def test_token_taps_of_a_classifier_are_counted_after_pooling() -> None:
    model = TorchEncoderViT(dim=32, depth=2, classes=10)  # 32x32 images: 16 tokens of 32
    scheme = IMacHSR(model, 10, example_inputs=(2, 3, 32, 32), taps=["encoder.layers.0"])
    counted = adapter_arithmetic(scheme, (2, 3, 32, 32))
    # Pooled to one vector per image, then Linear(32, 32), LayerNorm, GELU, Linear(32, 10).
    assert list(counted.adapters.values()) == [2 * 32 * 32 + 2 * 32 * 10]
    assert counted.model > _convolution(3, 32, 8, 16)  # the patch embedding and more


def test_leaves_the_scheme_and_every_random_stream_as_they_were() -> None:
    model = TinySegmenter(classes=3).train()
    model.stem.append(nn.Dropout(0.5))  # draws random numbers in training mode
    scheme = IMacHSR(model, 3, example_inputs=(2, 3, 16, 16), taps=["down.2"])
    before = snapshot(scheme)
    adapter_arithmetic(scheme, (2, 3, 16, 16))
    assert_same(before, snapshot(scheme))


def test_the_summary_says_the_price_against_the_model() -> None:
    line = AdapterArithmetic(4_000_000_000, {"cat": 9_000_000_000}).summary()
    assert line == ("the adapters add 9.00 GFLOPs per image to the model's 4.00 "
                    "(2.25x its forward pass)")
    assert AdapterArithmetic(0, {}).ratio == 0.0
