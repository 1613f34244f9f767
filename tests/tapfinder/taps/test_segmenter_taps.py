"""The default taps on the segmenters users bring (segmentation-models-pytorch on its own and
timm's encoders, Hugging Face segmenters): block, stage or join outputs, never an identity
placeholder, a node of a shortcut branch or a node inside a residual block."""

from __future__ import annotations

import warnings

import pytest
import torch

import tapfinder
from tapfinder.graph.node_kinds import is_identity
from tapfinder.graph.structure import decoder_scales
from tapfinder.taps.guards import guard_violations

pytest.importorskip("segmentation_models_pytorch")
pytest.importorskip("timm")

SEGMENTERS = [
    *(f"smp:{arch}:{encoder}" for arch in ("Unet", "FPN", "DeepLabV3Plus", "Linknet", "PSPNet",
                                           "UPerNet") for encoder in ("resnet18", "tu-resnet10t")),
    "smp:UnetPlusPlus:resnet18", "smp:MAnet:resnet18", "smp:FPN:tu-regnety_002",
    "smp:FPN:tu-convnext_atto", "smp:Segformer:mit_b0", "smp:FPN:tu-pvt_v2_b0",
    "hf:SegformerForSemanticSegmentation", "hf:UperNetForSemanticSegmentation:small",
]
# Module names that only shortcut branches carry in these libraries: an independent check on
# the structural guard, which never reads names.
SHORTCUT_NAMES = ("downsample", "shortcut")


def default_taps(spec: str):
    from imachsr.train import build_model_for

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with torch.device("meta"):  # no weights allocated
                model = build_model_for(spec, 11)
        except RuntimeError:  # smp's MiT reads a value while it builds
            model = build_model_for(spec, 11)
        arch = tapfinder.trace(model, (2, 3, 64, 64))
        return arch, tapfinder.select_taps(arch, k=3)


@pytest.mark.parametrize("spec", SEGMENTERS)
def test_default_taps_of_a_segmenter_are_real_points_outside_residual_blocks(spec):
    arch, taps = default_taps(spec)
    assert len(taps) == 3
    for tap in taps:
        assert not is_identity(arch[tap.node]), tap.node
        assert not any(name in (tap.module or "") for name in SHORTCUT_NAMES), tap.node
        assert guard_violations(arch, tap.node) == [], tap.node
        assert tap.point in ("stage output", "block output", "join", "layer output")


U_SHAPED = ("smp:Unet:resnet18", "smp:Unet:tu-resnet10t", "smp:UnetPlusPlus:resnet18",
            "smp:MAnet:resnet18")


@pytest.mark.parametrize("spec", U_SHAPED)
def test_a_u_shaped_segmenter_taps_its_decoders_three_finest_scales(spec):
    arch, taps = default_taps(spec)
    scales = decoder_scales(arch)
    assert [tap.node for tap in taps] == scales[-3:]
    assert [tap.stride for tap in taps] == [8, 4, 2]
    assert all("a decoder scale output" in tap.explain() for tap in taps)


@pytest.mark.parametrize("spec", [*U_SHAPED, "smp:Unet:efficientnet-b0"])
def test_the_scales_of_a_u_shaped_decoder_are_all_decoder_blocks(spec):
    """EfficientNet's squeeze-and-excitation broadcasts a pooled vector back over the map and
    joins it: no upsampling, so no encoder block passes for the decoder's coarsest scale."""
    arch, _ = default_taps(spec)
    assert [arch[node]["module"].split(".")[0] for node in decoder_scales(arch)] == \
        ["decoder"] * len(decoder_scales(arch)) and len(decoder_scales(arch)) >= 4


@pytest.mark.parametrize("spec", [s for s in SEGMENTERS if s not in U_SHAPED
                                  and not s.startswith(("smp:Unet:", "smp:UnetPlusPlus"))])
def test_other_segmenters_have_no_u_shaped_decoder(spec):
    """FPN and UPerNet (nothing computed on their top-down sums), DeepLabV3+ and PSPNet (one
    fusion), LinkNet (its decoder blocks end at their skip sums), SegFormer: their taps
    spread over the depth."""
    arch, _ = default_taps(spec)
    assert decoder_scales(arch) == []


def test_the_demo_model_taps_block_outputs_and_the_decoder_join():
    arch, taps = default_taps("smp:DeepLabV3Plus:tu-resnet10t")
    # Before the residual-unit guard the middle tap was layer3.0's anti-aliasing placeholder.
    assert [tap.node for tap in taps] == ["encoder_model_maxpool", "encoder_model_layer2_0_act2",
                                          "cat_1"]
    assert [tap.point for tap in taps] == ["layer output", "block output", "join"]
    assert "block output: closes block encoder.model.layer2, in the stride-8 stage" in \
        taps[1].explain()


def test_a_mid_block_node_and_a_projection_shortcut_name_the_sum_that_is_their_tap():
    arch, _ = default_taps("smp:FPN:tu-resnet10t")
    sum_of_layer3 = "inside a residual unit (its sum add_2 is the tap)"
    assert sum_of_layer3 in guard_violations(arch, "encoder_model_layer3_0_act1")
    assert sum_of_layer3 in guard_violations(arch, "encoder_model_layer3_0_downsample_0")


def test_smp_dpt_taps_its_three_finest_fusion_outputs():
    """Each DPT fusion block's projection is summed onto the next scale's skip: still the
    decoder's path, so all three taps are its scales (before, the branch-end guard kept two off)."""
    from imachsr.train import build_model_for

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.device("meta"):
            model = build_model_for("smp:DPT:tu-vit_tiny_patch16_224", 11)
        arch = tapfinder.trace(model, (1, 3, 224, 224))
    taps = tapfinder.select_taps(arch, k=3)
    assert [tap.module for tap in taps] == [f"decoder.fusion_blocks.{i}.project" for i in (1, 2, 3)]
    assert all(guard_violations(arch, tap.node) == [] for tap in taps)
