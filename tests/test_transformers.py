"""Hugging Face transformers models, built from small configurations with random weights:
traced with the default call, taps selected, instrumented bit for bit, segmenters trained."""

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from support import assert_same, snapshot

import imachsr
import tapfinder
from tapfinder import Inputs
from tapfinder.errors import InvalidInputError
from tapfinder.zoo import build_model

pytest.importorskip("transformers")

WIDTH = {"hidden_size": 64, "num_attention_heads": 2, "intermediate_size": 128}
DPT = {**WIDTH, "image_size": 64, "neck_hidden_sizes": [16, 32, 64, 64], "fusion_hidden_size": 32}
IMAGE = (2, 3, 64, 64)
TOKENS = torch.randint(0, 100, (2, 12))

# class -> (configuration changes on top of hf:CLASS:small, example input)
MODELS = {
    "SegformerForSemanticSegmentation": ({}, IMAGE),
    "DPTForDepthEstimation": (DPT, IMAGE),
    "DPTForSemanticSegmentation": (DPT, IMAGE),
    "ViTModel": ({**WIDTH, "image_size": 64}, IMAGE),
    "ViTForImageClassification": ({**WIDTH, "image_size": 64}, IMAGE),
    "SwinModel": ({"embed_dim": 32, "num_heads": [1, 2, 2, 4]}, (2, 3, 224, 224)),
    "BeitForSemanticSegmentation": ({**WIDTH, "image_size": 64, "auxiliary_channels": 32}, IMAGE),
    "BertModel": (WIDTH, TOKENS),
    "MaskFormerForInstanceSegmentation": ({}, IMAGE),
    "Mask2FormerForUniversalSegmentation": ({}, IMAGE),
    "ConvNextModel": ({}, IMAGE),
    "MobileViTForSemanticSegmentation": ({}, IMAGE),
    "UperNetForSemanticSegmentation": ({}, IMAGE),
    "ResNetModel": ({}, IMAGE),
}
SEGMENTERS = [name for name in MODELS if name.endswith("ForSemanticSegmentation")]


def build(name: str, **changes) -> torch.nn.Module:
    configuration, _ = MODELS[name]
    torch.manual_seed(0)
    return build_model(f"hf:{name}:small", **{**configuration, **changes})


def real(example):
    return example if isinstance(example, torch.Tensor) else torch.randn(example)


def same(a, b) -> bool:
    """Equal bit for bit, ModelOutput and other containers field by field."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return type(a) is type(b) and list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("name", list(MODELS))
def test_a_transformers_model_traces_gets_taps_and_instruments_bit_identically(name):
    model = build(name).eval()
    example = real(MODELS[name][1])
    before = snapshot(model)
    with warnings.catch_warnings():
        # Mask2Former's deformable attention stays one node.
        warnings.simplefilter("ignore", tapfinder.AutoLeafWarning)
        arch = tapfinder.trace(model, (example,))
    taps = tapfinder.select_taps(arch, k=3)
    assert len(taps) == 3 and all(arch[t.node]["shape"][0] == example.shape[0] for t in taps)
    tapped = imachsr.instrument(model, taps, (example,), arch=arch)
    with torch.no_grad():
        output, features = tapped(example)
    assert_same(before, snapshot(model))  # before the model's own forward, which may cache
    with torch.no_grad():
        assert same(output, model(example))
    assert [tuple(f.shape) for f in features.values()] == [t.shape for t in taps]


def test_keyword_inputs_name_the_graph_inputs_and_the_call():
    model = build("SegformerForSemanticSegmentation").eval()
    x = torch.randn(IMAGE)
    arch = tapfinder.trace(model, {"pixel_values": IMAGE})
    assert arch.inputs == ("pixel_values",)
    tapped = imachsr.instrument(model, tapfinder.select_taps(arch, k=2), {"pixel_values": x})
    with torch.no_grad():
        assert same(tapped(pixel_values=x)[0], model(pixel_values=x))
        assert same(tapped(x)[0], model(x))  # the same call, positionally


def test_a_token_model_with_a_keyword_mask_traces_both_inputs():
    model = build("BertModel").eval()
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, 8:] = 0
    with pytest.warns(tapfinder.AutoLeafWarning, match="embeddings"):
        # BERT slices its position-id buffer with the traced sequence length: fx cannot, so the
        # embeddings stay one node; the encoder layers are traced through.
        arch = tapfinder.trace(model, Inputs(TOKENS, attention_mask=mask))
    assert arch.inputs == ("input_ids", "attention_mask") and set(arch.leaves) == {"embeddings"}
    example = Inputs(TOKENS, attention_mask=mask)
    tapped = imachsr.instrument(model, tapfinder.select_taps(arch, k=2), example, arch=arch)
    with torch.no_grad():
        assert same(tapped(TOKENS, attention_mask=mask)[0], model(TOKENS, attention_mask=mask))
    with pytest.raises(ValueError, match=r"traced for calls like.*attention_mask.*is missing"):
        tapped(TOKENS)


@pytest.mark.parametrize("name", SEGMENTERS)
def test_a_transformers_segmenter_trains_with_scheme_x_y(name):
    model = build(name, num_labels=4).train()
    x, y = torch.randn(IMAGE), torch.randint(0, 4, IMAGE[:1] + IMAGE[2:])
    scheme = imachsr.IMacHSR(model, 4, example_inputs=(x,), schedule="constant")
    result = scheme(x, y)
    result.loss.backward()
    assert math.isfinite(result.loss.item())
    assert {f"mi/{tap}" for tap in scheme.taps} <= set(result.terms)
    # The labels reach the iMacHSR loss, not the model: the output term is the cross-entropy of
    # the model's logits (resized to the labels), not a loss of the model's own.
    logits = F.interpolate(result.logits.detach(), size=y.shape[1:], mode="bilinear")
    assert result.terms["ce"] == pytest.approx(float(F.cross_entropy(logits, y)), abs=1e-5)
    assert all(p.grad is not None for p in scheme.adapters.parameters())
    assert sum(p.grad is not None for p in model.parameters()) > len(list(model.parameters())) / 2


def test_hf_specs_build_small_models_and_refuse_unknown_names():
    small = build_model("hf:ResNetModel:small")
    assert small.config.depths == [1, 1, 1, 1]
    assert build_model("hf:ViTModel:small").config.num_hidden_layers == 4
    with pytest.raises(InvalidInputError, match="Did you mean: SegformerForSemanticSegmentation"):
        build_model("hf:SegformerForSemantic")
    with pytest.raises(InvalidInputError, match="must be 'small'"):
        build_model("hf:ResNetModel:tiny")
    with pytest.raises(InvalidInputError,
                       match=r"could not build.*Try hf:BeitForSemanticSegmentation:small"):
        build_model("hf:BeitForSemanticSegmentation")
