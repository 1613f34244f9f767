"""The layer shape rules agree with the real layers, and fail where the real layers fail."""

import operator

import pytest
import torch
from torch import nn

from tapfinder.capture.shape_formulas import binary_output, layer_output

LAYERS = [
    (nn.Conv2d(3, 8, 3), (2, 3, 17, 15)),
    (nn.Conv2d(3, 8, 3, stride=2, padding=1), (2, 3, 17, 15)),
    (nn.Conv2d(4, 8, (3, 5), stride=(2, 1), padding=(2, 0), dilation=(2, 1), groups=2), (1, 4, 20, 21)),
    (nn.Conv2d(3, 6, 3, padding="same", dilation=2), (1, 3, 9, 9)),
    (nn.Conv2d(3, 6, 3, padding="valid"), (3, 9, 9)),
    (nn.Conv2d(3, 6, 3, padding=1, padding_mode="reflect"), (1, 3, 9, 9)),
    (nn.Conv1d(5, 7, 4, stride=3), (2, 5, 30)),
    (nn.Conv3d(2, 4, 3, stride=(1, 2, 2), padding=1), (1, 2, 5, 8, 8)),
    (nn.Linear(6, 9), (2, 4, 6)),
    (nn.Linear(6, 9), (6,)),
    (nn.BatchNorm2d(3), (2, 3, 4, 4)),
    (nn.LayerNorm((4, 5)), (2, 3, 4, 5)),
    (nn.GroupNorm(2, 4), (2, 4, 3)),
    (nn.Hardswish(), (2, 3)),
    (nn.Dropout(0.5), (2, 3)),
    (nn.AdaptiveAvgPool2d(1), (2, 3, 7, 5)),
    (nn.AdaptiveAvgPool2d((None, 3)), (3, 7, 5)),
    (nn.AdaptiveAvgPool1d(4), (2, 3, 9)),
]


@pytest.mark.parametrize("layer, shape", LAYERS, ids=lambda value: str(value)[:40])
def test_rule_matches_the_real_layer(layer, shape):
    real = layer.eval()(torch.randn(shape))
    stand_in = layer_output(layer, (torch.empty(shape, device="meta"),), {})
    assert stand_in.shape == real.shape and stand_in.dtype == real.dtype


@pytest.mark.parametrize("layer, shape", [
    (nn.Conv2d(3, 8, 3), (2, 4, 9, 9)),        # wrong channels
    (nn.Conv2d(3, 8, 3), (2, 3, 9)),           # wrong rank
    (nn.Conv2d(3, 8, 5), (1, 3, 3, 3)),        # kernel larger than the input
    (nn.Linear(6, 9), (2, 5)),                 # wrong features
    (nn.BatchNorm2d(3), (2, 4, 4, 4)),         # wrong channels
    (nn.LayerNorm(5), (2, 4)),                 # wrong normalised shape
], ids=str)
def test_rule_fails_where_the_real_layer_fails(layer, shape):
    with pytest.raises((RuntimeError, ValueError)):
        layer(torch.randn(shape))
    with pytest.raises((RuntimeError, ValueError)):
        layer_output(layer, (torch.empty(shape, device="meta"),), {})


def test_batch_norm_in_training_needs_more_than_one_value_per_channel():
    layer = nn.BatchNorm2d(3).train()
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        layer_output(layer, (torch.empty(1, 3, 1, 1, device="meta"),), {})


def test_dtype_mismatch_fails_like_the_real_layer():
    with pytest.raises(RuntimeError, match="should be the same"):
        layer_output(nn.Conv2d(3, 4, 1), (torch.empty(1, 3, 4, 4, dtype=torch.float16, device="meta"),), {})


def test_subclasses_and_keyword_calls_use_the_real_layer():
    class MyConv(nn.Conv2d):
        pass

    x = torch.empty(1, 3, 8, 8, device="meta")
    assert layer_output(MyConv(3, 4, 3), (x,), {}) is None
    assert layer_output(nn.MultiheadAttention(4, 2), (x,), {}) is None


@pytest.mark.parametrize("function", [operator.add, operator.sub, operator.mul, operator.truediv])
@pytest.mark.parametrize("a, b", [
    (torch.ones(2, 3, 4, 4), torch.ones(1, 3, 1, 1)),
    (torch.ones(2, 3, dtype=torch.int64), 2.5),
    (torch.ones(2, 3, dtype=torch.int64), torch.ones(3, dtype=torch.int32)),
    (3, torch.ones(4, dtype=torch.bfloat16)),
    (torch.ones(4, dtype=torch.float16), torch.ones((), dtype=torch.float64)),
], ids=str)
def test_binary_rule_matches_broadcasting_and_type_promotion(function, a, b):
    real = function(a, b)
    meta = [v.to("meta") if isinstance(v, torch.Tensor) else v for v in (a, b)]
    stand_in = binary_output(function, tuple(meta), {})
    assert stand_in.shape == real.shape and stand_in.dtype == real.dtype


def test_binary_rule_refuses_incompatible_shapes_and_other_functions():
    a, b = torch.empty(2, 3, device="meta"), torch.empty(4, device="meta")
    with pytest.raises(RuntimeError):
        binary_output(operator.add, (a, b), {})
    assert binary_output(operator.matmul, (a, a), {}) is None
    assert binary_output(operator.add, (a, "x"), {}) is None
    with pytest.raises(RuntimeError, match="same device"):
        binary_output(operator.add, (a, torch.ones(2, 3)), {})
