"""``imachsr.instrument``: identical outputs, shared state, tap resolution, hook fallback."""

import warnings

import pytest
import torch
from support import (
    GatedNet,
    RootBranchNet,
    ShapeCheckNet,
    SmallNet,
    TinyTokenTransformer,
    TorchEncoderViT,
)
from torch import nn

import imachsr
import tapfinder
from imachsr.scheme import model_logits

tv = pytest.importorskip("torchvision.models")
smp = pytest.importorskip("segmentation_models_pytorch")

ZOO = {
    "resnet18": (lambda: tv.resnet18(), 64),
    "resnet50": (lambda: tv.resnet50(), 64),
    "vit_b_16": (lambda: tv.vit_b_16(), 224),
    "swin_t": (lambda: tv.swin_t(), 96),
    "convnext_tiny": (lambda: tv.convnext_tiny(), 64),
    "efficientnet_b0": (lambda: tv.efficientnet_b0(), 64),
    "mobilenet_v3_large": (lambda: tv.mobilenet_v3_large(), 64),
    "densenet121": (lambda: tv.densenet121(), 64),
    "regnet_y_400mf": (lambda: tv.regnet_y_400mf(), 64),
    "maxvit_t": (lambda: tv.maxvit_t(), 224),
    "inception_v3": (lambda: tv.inception_v3(init_weights=False), 299),
    "googlenet": (lambda: tv.googlenet(init_weights=False), 64),
    "deeplabv3_resnet50": (lambda: tv.segmentation.deeplabv3_resnet50(weights_backbone=None), 64),
    "lraspp": (lambda: tv.segmentation.lraspp_mobilenet_v3_large(weights_backbone=None), 64),
    "smp_deeplabv3plus": (lambda: smp.DeepLabV3Plus("resnet18", encoder_weights=None), 64),
    "smp_unet": (lambda: smp.Unet("resnet18", encoder_weights=None), 64),
}


def same_structure(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_structure(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(same_structure(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("name", list(ZOO))
def test_instrumented_outputs_are_bit_identical(name, mode):
    factory, side = ZOO[name]
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = factory().train(mode == "train")
    x = torch.randn(2, 3, side, side)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arch = tapfinder.trace(model, x)
        taps = tapfinder.select_taps(arch, k=3, position="uniform")
    tapped = imachsr.instrument(model, taps, x, arch=arch)
    with torch.no_grad():
        torch.manual_seed(1)
        expected = model(x)
        torch.manual_seed(1)
        output, features = tapped(x)
    assert same_structure(output, expected)
    assert list(features) == [t.node for t in taps]
    for tap in taps:
        assert tuple(features[tap.node].shape) == tap.shape


def test_taps_can_be_functional_nodes_and_module_paths():
    model = SmallNet().eval()
    tapped = imachsr.instrument(model, ["add", "stage1", "stage3.conv"], (2, 3, 16, 16))
    _, features = tapped(torch.randn(2, 3, 16, 16))
    assert list(features) == ["add", "stage1_act", "stage3_conv"]
    assert features["add"].shape == (2, 16, 8, 8)


def test_parameters_are_shared_and_keys_unchanged():
    model = SmallNet()
    keys = list(model.state_dict())
    tapped = imachsr.instrument(model, ["add"], (2, 3, 16, 16))
    assert {id(p) for p in tapped.parameters()} == {id(p) for p in model.parameters()}
    assert list(model.state_dict()) == keys and list(tapped.model.state_dict()) == keys
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    output, features = tapped(torch.randn(2, 3, 16, 16))
    (output.sum() + features["add"].sum()).backward()
    before = model.stem.conv.weight.clone()
    optimizer.step()
    assert not torch.equal(before, model.stem.conv.weight)
    x = torch.randn(2, 3, 16, 16)
    model.eval()
    assert torch.equal(tapped(x)[0], model(x))


def test_tapped_model_follows_loaded_weights_and_moved_buffers():
    model = SmallNet().eval()
    tapped = imachsr.instrument(model, ["add"], (2, 3, 16, 16))
    fresh = SmallNet().eval()
    model.load_state_dict(fresh.state_dict())
    model.stem.bn.running_mean.fill_(0.5)  # in place
    model.stem.bn.running_var = torch.full((8,), 2.0)  # replaced object
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(tapped(x)[0], model(x))


def test_unknown_tap_lists_close_matches():
    with pytest.raises(ValueError, match="Did you mean 'stage1'"):
        imachsr.instrument(SmallNet(), ["stage_1"], (2, 3, 16, 16))


def test_non_tensor_tap_is_refused():
    model = ShapeCheckNet()
    arch = tapfinder.trace(model, (2, 3, 16, 16))
    size_node = next(n for n in arch.graph if arch[n]["target"] == "getattr")  # x.shape
    with pytest.raises(ValueError, match="not a tensor"):
        imachsr.instrument(model, [size_node], (2, 3, 16, 16), arch=arch)


def test_auto_leaf_models_instrument_around_the_leaf():
    model = GatedNet().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tapped = imachsr.instrument(model, ["gate", "stage3"], (2, 3, 16, 16))
    x = torch.randn(2, 3, 16, 16)
    output, features = tapped(x)
    assert torch.equal(output, model(x)) and features["gate"].shape == (2, 16, 8, 8)


def test_an_untraceable_root_is_tapped_with_hooks_on_the_record_of_one_run():
    model = RootBranchNet()
    with pytest.warns(tapfinder.EagerGraphWarning, match="forward hooks"):
        tapped = imachsr.instrument(model, ["conv"], (1, 3, 8, 8))
    x = torch.rand(1, 3, 8, 8)
    output, features = tapped(x)
    assert torch.equal(output, model(x)) and features["conv"].shape == (1, 4, 6, 6)
    assert tapped.uses_hooks and not model.conv._forward_hooks  # hooks live only during a call
    with pytest.raises(ValueError, match="'sum_1' is not the output of a module"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            imachsr.instrument(model, ["sum_1"], (1, 3, 8, 8))


def test_a_model_that_can_neither_trace_nor_run_falls_back_to_hooks_on_named_modules():
    model = RootBranchNet().to("meta")  # cannot run once to be recorded
    with pytest.warns(imachsr.HookFallbackWarning, match="forward hooks"):
        tapped = imachsr.instrument(model, ["conv"], (1, 3, 8, 8))
    assert tapped.uses_hooks and tapped.taps == ("conv",)
    with pytest.raises(ValueError, match="must be module paths"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            imachsr.instrument(model, ["add"], (1, 3, 8, 8))


def test_token_model_taps():
    ids = torch.randint(0, 50, (2, 12))
    model = TinyTokenTransformer().eval()
    tapped = imachsr.instrument(model, ["blocks.0", "embed"], ids)
    output, features = tapped(ids)
    assert torch.equal(output, model(ids)) and features["embed"].shape == (2, 12, 32)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("grad", [True, False])
def test_torch_transformer_encoder_layers_are_traced_into_and_stay_bit_identical(training, grad):
    model = TorchEncoderViT().train(training)
    taps = tapfinder.select_taps(tapfinder.trace(model, (2, 3, 32, 32)), k=3)
    tapped = imachsr.instrument(model, taps, (2, 3, 32, 32))
    x = torch.randn(2, 3, 32, 32)
    with torch.set_grad_enabled(grad):
        torch.manual_seed(0)
        expected = model(x)
        torch.manual_seed(0)
        output, features = tapped(x)
    assert torch.equal(output, expected) and len(features) == 3


def test_model_logits_picks_the_prediction():
    tensor = torch.zeros(1)
    assert model_logits(tensor) is tensor
    assert model_logits({"aux": 1, "out": tensor}) is tensor
    assert model_logits((tensor, torch.ones(1))) is tensor
    with pytest.raises(TypeError, match="output_loss"):
        model_logits("text")


def test_instrumenting_leaves_the_model_unchanged():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    imachsr.instrument(model, ["_1"], (2, 3, 8, 8))
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())


class ParityBranchNet(nn.Module):
    """Takes another branch for odd input widths: a graph traced at an even width must not run
    for odd ones."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.even = nn.Conv2d(4, 4, 1)
        self.odd = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.even(x) if x.shape[-1] % 2 == 0 else self.odd(x)


@pytest.mark.parametrize("width", [8, 10, 9])
def test_shape_specialised_graphs_are_traced_again_for_new_shapes(width):
    model = ParityBranchNet().eval()
    tapped = imachsr.instrument(model, ["stem"], (1, 3, 8, 8))
    assert tapped.arch.shape_guards
    x = torch.randn(1, 3, 8, width)
    output, features = tapped(x)
    assert torch.equal(output, model(x))
    assert torch.equal(features["stem"], model.stem(x))


def test_a_tap_inside_a_branch_the_new_shape_skips_is_refused():
    tapped = imachsr.instrument(ParityBranchNet().eval(), ["even"], (1, 3, 8, 8))
    with pytest.raises(ValueError, match="Instrument again in the mode and with example inputs of the shape"):
        tapped(torch.randn(1, 3, 8, 9))


class InPlaceBlock(nn.Module):
    """A BatchNorm whose output ReLU(inplace=True) overwrites, then ``out += identity``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn(self.conv(x)))
        out += x
        return out


@pytest.mark.parametrize("tap, reference", [
    ("bn", lambda m, x: m.bn(m.conv(x))),
    ("act", lambda m, x: torch.relu(m.bn(m.conv(x)))),
])
def test_a_tap_later_overwritten_in_place_keeps_its_own_value(tap, reference):
    model = InPlaceBlock().eval()
    tapped = imachsr.instrument(model, [tap], (1, 4, 8, 8))
    x = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        output, features = tapped(x)
        assert torch.equal(features[tapped.taps[0]], reference(model, x))
        assert torch.equal(output, model(x))


@pytest.mark.parametrize("build", [
    pytest.param(lambda: tv.efficientnet_b0(), id="efficientnet_b0"),
    pytest.param(lambda: tv.convnext_tiny(stochastic_depth_prob=0.5), id="convnext_tiny-sd0.5"),
    pytest.param(lambda: tv.swin_t(), id="swin_t"),
])
@pytest.mark.parametrize("traced_in_training", [True, False])
def test_outputs_are_bit_identical_in_both_modes_whichever_mode_was_traced(build, traced_in_training):
    # Stochastic depth, functional dropout and `if self.training:` are frozen into an fx graph
    # at the traced mode; the tapped model must follow the model's mode when it runs.
    torch.manual_seed(0)
    model = build().train(traced_in_training)
    tapped = imachsr.instrument(model, ["features.1"], (2, 3, 64, 64))
    x = torch.randn(2, 3, 64, 64)
    for mode in (not traced_in_training, traced_in_training):
        model.train(mode)
        with torch.no_grad():
            torch.manual_seed(1)
            expected = model(x)
            torch.manual_seed(1)
            output, _ = tapped(x)
        assert torch.equal(output, expected), f"run with training={mode}"
