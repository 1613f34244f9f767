"""The structure module: base distances, residual units, identity placeholders, the main path:
the facts the rules, guards and ranker read, each defined once."""

import pytest
import torch
from torch import nn

import tapfinder
from support import TinyFPN, TinyUNet
from tapfinder.graph.structure import (
    base_distance,
    canonical_node,
    decoder_scales,
    residual_interiors,
)

tv = pytest.importorskip("torchvision.models")


def test_a_timm_vit_block_is_a_base_of_six_layers():
    """docs/analysis.md's figure: norm, qkv, projection, norm, two MLP layers."""
    timm = pytest.importorskip("timm")
    with torch.device("meta"):
        arch = tapfinder.trace(timm.create_model("vit_tiny_patch16_224"), (1, 3, 224, 224))
    assert base_distance(arch) == 6


def test_a_model_without_repeated_blocks_counts_spacing_in_layers():
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU())
    assert base_distance(tapfinder.trace(model, (1, 3, 16, 16))) == 1


def test_a_residual_unit_maps_the_nodes_its_sum_bypasses_to_the_sum():
    with torch.device("meta"):
        arch = tapfinder.trace(tv.resnet18(), (1, 3, 64, 64))
    units = residual_interiors(arch)
    # layer2.0: the strided convolutions and the projection shortcut lie inside; its input,
    # its sum and its output do not.
    inside = ["layer2_0_conv1", "layer2_0_relu", "layer2_0_bn2", "layer2_0_downsample_0"]
    assert {units[node] for node in inside} == {"add_2"}
    assert {"layer1_1_relu_1", "add_2", "layer2_0_relu_1"}.isdisjoint(units)
    assert not any(arch[node]["on_main_path"] for node in units)


class _TopDownSum(nn.Module):
    """An FPN's top-down sum: it bypasses a deeper, coarser stage, so it is a fusion of scales
    and no residual unit."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.deep = nn.Sequential(nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(),
                                  nn.Conv2d(8, 8, 3, padding=1))
        self.lateral = nn.Conv2d(8, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        top = nn.functional.interpolate(self.deep(x), scale_factor=2.0)
        return self.lateral(x) + top


def test_a_sum_that_bypasses_a_coarser_stage_is_no_residual_unit():
    arch = tapfinder.trace(_TopDownSum(), (1, 3, 16, 16))
    assert residual_interiors(arch) == {}


def test_an_identity_placeholder_stands_for_what_it_passes_on():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Identity(), nn.Conv2d(8, 8, 3))
    arch = tapfinder.trace(model, (1, 3, 16, 16))
    assert canonical_node(arch, "_2") == "_1"  # the Identity names the ReLU's tensor
    assert canonical_node(arch, "_0") == "_1"  # a chain's end is never the placeholder


def test_a_u_nets_decoder_scales_are_its_up_blocks_outputs_coarse_to_fine():
    arch = tapfinder.trace(TinyUNet(), (2, 3, 32, 32))
    scales = decoder_scales(arch)
    assert [arch[node]["module"] for node in scales] == ["up.0.body.1.act", "up.1.body.1.act",
                                                         "up.2.body.1.act"]
    assert [arch[node]["reduction"] for node in scales] == [4, 2, 1]
    summed = tapfinder.trace(TinyUNet(join="sum"), (2, 3, 32, 32))
    assert len(decoder_scales(summed)) == 3  # a sum is a join as a concatenation is
    # An 8x8 input leaves a 1x1 bottom: upsampling it is still the decoder's first scale.
    assert len(decoder_scales(tapfinder.trace(TinyUNet(), (2, 3, 8, 8)))) == 3


@pytest.mark.parametrize("model", [TinyUNet(levels=2), TinyFPN()], ids=["two-scales", "fpn"])
def test_a_decoder_of_fewer_than_three_scale_blocks_is_no_u_shape(model):
    """Two decoder blocks are not a decoder as deep as the encoder; an FPN computes nothing on
    its top-down sums (its convolutions read each level apart): neither is U-shaped."""
    assert decoder_scales(tapfinder.trace(model, (2, 3, 32, 32))) == []


def test_classifiers_and_squeeze_excitation_have_no_decoder():
    """A pooled vector broadcast back over a map (squeeze-and-excitation) is no upsampling."""
    with torch.device("meta"):
        for model in (tv.resnet18(), tv.mobilenet_v3_small(), tv.efficientnet_b0()):
            assert decoder_scales(tapfinder.trace(model, (1, 3, 64, 64))) == []
