import pytest
import torch
from support import TinyTokenTransformer
from torch import nn

import tapfinder
from imachsr.adapters import DimensionAdapter, build_adapters, token_grid

tv = pytest.importorskip("torchvision.models")

# (layout, feature shape with 8 channels, logits shape for 3 classes)
DENSE_SHAPES = [
    ("NCHW", (2, 8, 5, 6), (2, 3, 5, 6)),
    ("NHWC", (2, 5, 6, 8), (2, 3, 5, 6)),
    ("NCL", (2, 8, 7), (2, 3, 7)),
    ("NCDHW", (2, 8, 2, 3, 4), (2, 3, 2, 3, 4)),
]


def test_token_grid_finds_class_tokens_and_aspect_ratio():
    assert token_grid(197, (224, 224)) == (1, 14, 14)
    assert token_grid(3136, (224, 224)) == (0, 56, 56)
    assert token_grid(50, (64, 128)) == (0, 5, 10)
    assert token_grid(7, (3, 5)) is None


@pytest.mark.parametrize("layout, shape, expected", DENSE_SHAPES)
def test_dense_adapters_give_per_position_logits(layout, shape, expected):
    adapter = DimensionAdapter(layout, 8, 3)
    assert adapter(torch.randn(shape)).shape == expected
    assert torch.equal(adapter.project.bias, torch.zeros(3))


def test_token_adapter_drops_the_class_token_and_restores_the_grid():
    adapter = DimensionAdapter("NLC", 8, 3, grid=(1, 2, 3))
    tokens = torch.randn(2, 7, 8)
    logits = adapter(tokens)
    assert logits.shape == (2, 3, 2, 3)
    expected = adapter.project(tokens[:, 1:])  # token i of the grid -> position (i // 3, i % 3)
    assert torch.allclose(logits[:, :, 1, 2], expected[:, 5])


@pytest.mark.parametrize("layout, shape", [("NCHW", (2, 8, 5, 6)), ("NHWC", (2, 5, 6, 8)),
                                           ("NLC", (2, 7, 8)), ("NC", (2, 8))])
def test_pooled_adapters_give_one_vector_per_sample(layout, shape):
    assert DimensionAdapter(layout, 8, 3, pool=True)(torch.randn(shape)).shape == (2, 3)


def test_build_adapters_from_a_vit_trace():
    with torch.device("meta"):
        model = tv.vit_b_16()
    arch = tapfinder.trace(model, (1, 3, 224, 224))
    adapters = build_adapters(arch, ["conv_proj", "encoder_ln"], 5)
    assert isinstance(adapters["conv_proj"].project, nn.Conv2d)
    assert adapters["encoder_ln"].grid == (1, 14, 14)


def test_build_adapters_refuses_what_cannot_meet_dense_labels():
    arch = tapfinder.trace(TinyTokenTransformer(), torch.zeros(1, 12, dtype=torch.long))
    with pytest.raises(ValueError, match="do not form a grid"):
        build_adapters(arch, ["embed"], 3)
    with torch.device("meta"):
        model = tv.resnet18()
    arch = tapfinder.trace(model, (1, 3, 64, 64))
    with pytest.raises(ValueError, match="is a vector"):
        build_adapters(arch, ["flatten"], 3)
    assert build_adapters(arch, ["flatten"], 3, pool=True)["flatten"](torch.randn(2, 512)).shape == (2, 3)


@pytest.mark.parametrize("layout, shape, expected", DENSE_SHAPES)
def test_head_adapters_give_the_same_logits_shape_through_a_hidden_layer(layout, shape, expected):
    adapter = DimensionAdapter(layout, 8, 3, capacity="head")
    assert adapter(torch.randn(shape)).shape == expected
    kinds = [type(m).__name__ for m in adapter.project]
    if layout.startswith("NC"):  # mmsegmentation's FCN head: 3x3 conv, BN, ReLU, then 1x1
        assert kinds[1:3] == [f"BatchNorm{len(shape) - 2}d", "ReLU"]
        assert adapter.project[0].kernel_size == (3,) * (len(shape) - 2)
        assert adapter.project[-1].kernel_size == (1,) * (len(shape) - 2)
    else:
        assert kinds == ["Linear", "LayerNorm", "GELU", "Linear"]
    assert torch.equal(adapter.project[-1].bias, torch.zeros(3))


@pytest.mark.parametrize("capacity", ["pointwise", "separable"])
@pytest.mark.parametrize("layout, shape, expected", DENSE_SHAPES)
def test_cheaper_heads_change_a_maps_hidden_convolution_alone(capacity, layout, shape, expected):
    torch.manual_seed(0)
    cheaper = DimensionAdapter(layout, 8, 3, capacity=capacity, head_width=4)
    torch.manual_seed(0)
    head = DimensionAdapter(layout, 8, 3, capacity="head", head_width=4)
    features = torch.randn(shape)
    assert cheaper(features).shape == expected
    if layout.startswith("NC"):  # BN, ReLU and the 1x1 to classes follow, as in the head
        assert [type(m) for m in cheaper.project[-4:]] == [type(m) for m in head.project]
        assert cheaper.project[-4].kernel_size == (1,) * (len(shape) - 2)
        assert cheaper.project[-4].out_channels == 4
    else:  # a token's or channels-last head is already per position
        assert torch.equal(cheaper(features), head(features))


def test_a_pointwise_heads_hidden_value_at_a_position_reads_that_position_alone():
    features = torch.randn(2, 8, 5, 6)
    others_zeroed = features.clone()
    others_zeroed.view(2, 8, -1)[..., 1:] = 0
    for capacity, local in (("pointwise", True), ("head", False)):
        hidden = DimensionAdapter("NCHW", 8, 3, capacity=capacity).project[:2].eval()
        same = torch.allclose(hidden(others_zeroed).view(2, 8, -1)[..., 0],
                              hidden(features).view(2, 8, -1)[..., 0])
        assert same == local


def test_a_separable_head_starts_with_a_depthwise_3x3():
    depthwise = DimensionAdapter("NCHW", 8, 3, capacity="separable").project[0]
    assert (depthwise.kernel_size, depthwise.groups, depthwise.out_channels) == ((3, 3), 8, 8)


def test_head_width_is_the_taps_channels_capped_at_256():
    assert DimensionAdapter("NCHW", 64, 3, capacity="head").project[0].out_channels == 64
    assert DimensionAdapter("NCHW", 1024, 3, capacity="head").project[0].out_channels == 256
    pooled = DimensionAdapter("NCHW", 16, 3, pool=True, capacity="head")
    assert pooled(torch.randn(2, 16, 4, 4)).shape == (2, 3)


def test_head_width_sets_the_cap_for_maps_and_tokens():
    assert DimensionAdapter("NCHW", 304, 3, capacity="head", head_width=64).project[0].out_channels == 64
    assert DimensionAdapter("NCHW", 32, 3, capacity="head", head_width=64).project[0].out_channels == 32
    tokens = DimensionAdapter("NLC", 96, 3, grid=(1, 2, 2), capacity="head", head_width=48)
    assert tokens.project[0].out_features == 48
    assert tokens(torch.randn(2, 5, 96)).shape == (2, 3, 2, 2)


def test_an_unknown_capacity_is_refused():
    with pytest.raises(ValueError, match="capacity must be one of linear, head, pointwise, separable"):
        DimensionAdapter("NCHW", 8, 3, capacity="mlp")
