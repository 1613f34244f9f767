import pytest
import torch

import tapfinder
from tapfinder.taps.quality import tap_quality

tv = pytest.importorskip("torchvision.models")


@pytest.fixture(scope="module")
def resnet18():
    with torch.device("meta"):
        model = tv.resnet18()
    return tapfinder.trace(model, (2, 3, 224, 224))


def test_default_taps_on_resnet18_are_block_outputs_over_several_resolutions(resnet18):
    quality = tap_quality(resnet18, tapfinder.select_taps(resnet18, k=3))
    assert quality.taps == 3 and quality.block_outputs == 3 and quality.on_main_path == 3
    assert len(quality.strides) >= 2 and quality.covers_resolutions
    assert quality.violations == {}


def test_a_convolution_before_its_norm_and_a_mid_block_node_are_called_out(resnet18):
    quality = tap_quality(resnet18, ["layer2_0_conv1", "layer2_0_relu", "layer2_1_relu_1"])
    assert quality.block_outputs == 1  # only the end of layer2.1
    assert quality.violations == {
        "layer2_0_conv1": ["read before its normalisation",
                           "inside a residual unit (its sum add_2 is the tap)"],
        "layer2_0_relu": ["inside a residual unit (its sum add_2 is the tap)"]}
    assert quality.strides == (8,) and not quality.covers_resolutions


def test_a_u_nets_decoder_scales_and_the_taps_on_them_are_counted(resnet18):
    from support import TinyUNet

    arch = tapfinder.trace(TinyUNet(), (2, 3, 32, 32))
    quality = tap_quality(arch, tapfinder.select_taps(arch, k=3))
    assert (quality.decoder_scales, quality.on_decoder_scales) == (3, 3)
    assert tap_quality(resnet18, ["layer2_1_relu_1"]).decoder_scales == 0
