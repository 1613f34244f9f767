"""Golden expectations for the transition-point rules on real architectures."""

import warnings

import pytest
import torch
from support import TinyTokenTransformer

import tapfinder
from tapfinder.graph.structure import canonical_node
from tapfinder.taps.candidates import Candidate, find_candidates, registered_kinds, rule

tv = pytest.importorskip("torchvision.models")
smp = pytest.importorskip("segmentation_models_pytorch")


def analyse(factory, shape=(1, 3, 224, 224)):
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = factory().eval()
    arch = tapfinder.trace(model, shape)
    return arch, find_candidates(arch)


def of_kind(candidates, kind):
    return [c for c in candidates if c.kind == kind]


@pytest.fixture(scope="module")
def resnet50():
    return analyse(tv.resnet50)


def test_resnet50_stage_outputs_are_stage_boundaries(resnet50):
    _, candidates = resnet50
    nodes = {c.node for c in of_kind(candidates, "stage_boundary")}
    assert {"layer1_2_relu_2", "layer2_3_relu_2", "layer3_5_relu_2", "layer4_2_relu_2"} <= nodes


def test_resnet50_bottleneck_blocks_give_bottleneck_candidates(resnet50):
    _, candidates = resnet50
    bottlenecks = of_kind(candidates, "bottleneck")
    assert "layer1_1_relu_1" in {c.node for c in bottlenecks}
    reason = next(c.reason for c in bottlenecks if c.node == "layer1_1_relu_1")
    assert "256 -> 64 -> 256" in reason and "compression 4x" in reason


def test_resnet50_downsampling_reasons_carry_the_numbers(resnet50):
    _, candidates = resnet50
    reasons = [c.reason for c in of_kind(candidates, "downsampling")]
    assert "after downsampling 224x224 -> 112x112 (stride 2) at conv1 (Conv2d)" in reasons


def test_vit_encoder_blocks_are_stage_boundaries_and_attention_is_found():
    arch, candidates = analyse(tv.vit_b_16)
    reasons = " ".join(c.reason for c in of_kind(candidates, "stage_boundary"))
    for index in range(12):
        assert f"end of block encoder.layers.encoder_layer_{index} (EncoderBlock" in reasons
    attention = of_kind(candidates, "attention")
    assert len(attention) == 24  # before and after each of the 12 attention modules
    assert all(arch[c.node]["shape"] == (1, 197, 768) for c in attention)


def test_swin_patch_merging_is_downsampling():
    arch, candidates = analyse(tv.swin_t)
    merges = [
        c for c in of_kind(candidates, "downsampling")
        if "PatchMerging" in c.reason and c.reason.startswith("after")
    ]
    assert len(merges) == 3
    assert any("56x56 -> 28x28 (stride 2)" in c.reason for c in merges)


def test_deeplabv3_aspp_merge_is_fusion():
    arch, candidates = analyse(lambda: tv.segmentation.deeplabv3_resnet50(weights_backbone=None))
    fusions = of_kind(candidates, "fusion")
    assert any(
        arch[c.node]["module"] == "classifier.0" and "concatenates 5 parallel branches" in c.reason
        for c in fusions
    )


def test_deeplabv3_has_no_encoder_decoder_bottleneck_but_smp_unet_does():
    arch, candidates = analyse(lambda: smp.Unet("resnet18", encoder_weights=None), (1, 3, 256, 256))
    lowest = [c for c in of_kind(candidates, "bottleneck") if "encoder-decoder" in c.reason]
    assert len(lowest) == 1 and arch[lowest[0].node]["spatial"] == (8, 8)


def test_smp_unet_decoder_concatenations_are_skip_joins():
    arch, candidates = analyse(lambda: smp.Unet("resnet18", encoder_weights=None), (1, 3, 256, 256))
    joins = [
        c for c in of_kind(candidates, "skip_join")
        if c.reason.startswith("concatenation") and arch[c.node]["module"].startswith("decoder")
    ]
    assert len(joins) == 4
    sources = [c for c in of_kind(candidates, "skip_join") if c.reason.startswith("source")]
    assert any(arch[c.node]["module"].startswith("encoder") for c in sources)


def test_inception_branches_are_fusion():
    _, candidates = analyse(lambda: tv.inception_v3(init_weights=False), (1, 3, 299, 299))
    assert len(of_kind(candidates, "fusion")) >= 11


def test_mobilenet_v3_activation_change_is_norm_act():
    _, candidates = analyse(tv.mobilenet_v3_large)
    assert any("activation changes ReLU -> Hardswish" in c.reason for c in of_kind(candidates, "norm_act"))


def test_token_model_attention_and_skip_joins():
    arch = tapfinder.trace(TinyTokenTransformer(), torch.zeros(1, 12, dtype=torch.long))
    candidates = find_candidates(arch, ["attention", "skip_join"])
    assert {c.kind for c in candidates} == {"attention", "skip_join"}


def test_residual_add_canonicalises_to_the_following_relu(resnet50):
    arch, _ = resnet50
    assert canonical_node(arch, "add") == "layer1_0_relu_2"


def test_custom_rules_register_without_touching_the_ranker(resnet50):
    arch, _ = resnet50

    @rule("wide")
    def wide(arch):
        return [Candidate(n, "wide", 0.5, "wide") for n, a in arch.graph.nodes(data=True)
                if (a["channels"] or 0) >= 2048 and a["spatial"]]

    try:
        assert "wide" in registered_kinds()
        assert find_candidates(arch, ["wide"])
    finally:
        from tapfinder.taps import candidates as registry

        registry._RULES.pop("wide")


def test_unknown_kind_lists_the_known_ones(resnet50):
    arch, _ = resnet50
    with pytest.raises(ValueError, match="known kinds: .*downsampling"):
        find_candidates(arch, ["downsample"])


def test_a_strided_convolution_that_reaches_one_position_is_not_called_global_pooling():
    import torchvision

    def reasons(size: int, where: str) -> list[str]:
        arch = tapfinder.trace(torchvision.models.resnet18().eval(), (1, 3, size, size))
        return [c.reason for c in tapfinder.find_candidates(arch, ["downsampling"]) if where in c.reason]

    strided = reasons(8, "layer2.0.conv1")  # 2x2 -> 1x1 by a stride-2 convolution
    assert strided and all("stride 2" in r and "global" not in r for r in strided)
    pooled = reasons(64, "avgpool")  # 2x2 -> 1x1 by adaptive average pooling
    assert pooled and all("global pooling" in r for r in pooled)
