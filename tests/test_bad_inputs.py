"""The bad-input battery: one test per row of ``docs/errors.md`` (the row id is in each name).

Every test checks the message a user gets and that the user's model (and files) are unchanged.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from support import RootBranchNet, assert_same, snapshot
from torch import nn
from torch.nn import functional as F

import imachsr
import tapfinder
from imachsr.train import main as train_main
from tapfinder.cli import main as tapfinder_main
from tapfinder.errors import InvalidInputError, ShapePropagationError, TraceFailure

TRAIN = ["--model", "smp:DeepLabV3Plus:resnet18", "--size", "48", "--train-length", "16",
         "--eval-length", "8", "--batch-size", "8", "--epochs", "1", "--limit-steps", "1"]


class TinySegmenter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU())
        self.down = nn.Sequential(nn.Conv2d(8, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU())
        self.head = nn.Conv2d(16, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.head(self.down(self.stem(x))), size=x.shape[-2:], mode="bilinear")


class PatchSegmenter(nn.Module):
    """Patches -> tokens (B, N, C) -> grid -> logits, as a ViT segmenter lays tokens out."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 8, 4, 4)
        self.mix = nn.Linear(8, 8)
        self.head = nn.Conv2d(8, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = self.embed(x)
        tokens = self.mix(patches.flatten(2).transpose(1, 2))
        grid = tokens.transpose(1, 2).reshape(patches.shape)
        return F.interpolate(self.head(grid), size=x.shape[-2:], mode="bilinear")


class RaisesInForward(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("weights were never loaded")


class StemThenRaises(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 1)
        self.broken = RaisesInForward()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.broken(self.stem(x))


@pytest.fixture
def segmenter() -> TinySegmenter:
    torch.manual_seed(0)
    return TinySegmenter().train()


def scheme_for(model: nn.Module, **options) -> imachsr.IMacHSR:
    options = {"taps": ["stem", "down"], "schedule": "constant", **options}
    return imachsr.IMacHSR(model, 3, example_inputs=(2, 3, 16, 16), **options)


def batch(size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(2, 3, size, size, generator=generator), \
        torch.randint(0, 3, (2, size, size), generator=generator)


def test_e01_a_non_module_is_refused_by_every_entry_point():
    for call in (lambda: tapfinder.trace(lambda x: x, (1, 3)),
                 lambda: imachsr.instrument("resnet", ["x"], (1, 3)),
                 lambda: imachsr.IMacHSR(torch.zeros(3), 3, example_inputs=(1, 3))):
        with pytest.raises(InvalidInputError, match="expects a torch.nn.Module"):
            call()


def test_e02_example_inputs_of_the_wrong_rank_name_the_node_and_shapes(small_net):
    before = snapshot(small_net)
    with pytest.raises(ShapePropagationError, match=r"node 'stem_conv'.*\n  input shapes: x: \(1, 3, 16\)"):
        tapfinder.trace(small_net, (1, 3, 16))
    assert_same(before, snapshot(small_net))


def test_e03_example_inputs_of_the_wrong_dtype_say_which_dtypes(small_net, capfd):
    before = snapshot(small_net)
    with pytest.raises(ShapePropagationError, match=r"Input type \(torch.int64\)"):
        tapfinder.trace(small_net, torch.zeros(1, 3, 16, 16, dtype=torch.long))
    assert_same(before, snapshot(small_net))
    assert capfd.readouterr().err == ""  # no log noise from the fallbacks tried on the way


def test_e04_inputs_on_another_device_trace_by_shape_but_cannot_train(segmenter):
    assert tapfinder.trace(segmenter, torch.empty(2, 3, 16, 16, device="meta")).shape_mode == "meta"
    scheme = scheme_for(segmenter)
    before = snapshot(segmenter)
    x, y = batch()
    with pytest.raises(ValueError, match=r"model is on cpu but the batch is on meta.*\.to\('cpu'\)"):
        scheme(x.to("meta"), y.to("meta"))
    assert_same(before, snapshot(segmenter))


def test_e05_a_model_that_raises_in_forward_is_named_where_it_raises():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tapfinder.AutoLeafWarning)
        with pytest.raises(ShapePropagationError, match="node 'broken'.*weights were never loaded"):
            tapfinder.trace(StemThenRaises(), (1, 3, 8, 8))
    with pytest.raises(TraceFailure, match="model's own code failing, not a limit of tracing"):
        tapfinder.trace(RaisesInForward(), (1, 3, 8, 8))


def test_e06_root_control_flow_on_values_names_the_line_and_instrument_falls_back_to_hooks():
    model = RootBranchNet()
    before = snapshot(model)
    with pytest.warns(tapfinder.EagerGraphWarning, match=r"line \d+.*\n.*if .*\n.*one eager run"):
        tapfinder.trace(model, (1, 3, 16, 16))
    with pytest.warns(tapfinder.EagerGraphWarning):
        tapped = imachsr.instrument(model, ["conv"], (1, 3, 16, 16))
    x = torch.ones(1, 3, 16, 16)  # takes the branch through the tapped conv
    assert torch.equal(tapped(x)[0], model(x)) and tapped.uses_hooks
    with pytest.raises(RuntimeError, match=r"Tapped modules \['conv'\] did not run"):
        tapped(-x)
    assert_same(before, snapshot(model))


def test_e07_an_unknown_tap_lists_close_matches(segmenter):
    before = snapshot(segmenter)
    with pytest.raises(ValueError, match=r"Unknown tap 'stme'.*Did you mean 'stem"):
        imachsr.instrument(segmenter, ["stme"], (2, 3, 16, 16))
    assert_same(before, snapshot(segmenter))


def test_e08_more_taps_than_the_model_holds(segmenter, tmp_path, capsys):
    arch = tapfinder.trace(segmenter, (2, 3, 16, 16))
    with pytest.warns(UserWarning, match="taps fit"):
        taps = tapfinder.select_taps(arch, k=40)
    assert 0 < len(taps) < 40
    assert train_main([*TRAIN, "--k", "40", "--out", str(tmp_path / "run")]) == 2
    assert "--k 40" in capsys.readouterr().err and not (tmp_path / "run").exists()


@pytest.mark.parametrize("labels, message", [
    pytest.param(torch.full((2, 16, 16), 7), r"outside \[0, 3\) .*max 7", id="e09-above"),
    pytest.param(torch.full((2, 16, 16), -1), r"outside \[0, 3\) .*min -1", id="e09-negative"),
    pytest.param(torch.zeros(2, 16, 16), "integer class indices", id="e10-float"),
    pytest.param(torch.zeros(2, dtype=torch.long), r"needs labels \(B, H, W\)", id="e10-shape"),
    pytest.param(torch.zeros(2, 16, dtype=torch.long),
                 r"target has shape \(2, 16\), but the "
                 r"labels must be \(B, H, W\)", id="e10-rank"),
    pytest.param(torch.zeros(3, 16, 16, dtype=torch.long), r"for each of the 2 inputs",
                 id="e10-batch"),
])
def test_e09_e10_labels_out_of_range_or_of_the_wrong_dtype_or_shape(segmenter, labels, message):
    scheme = scheme_for(segmenter)
    before = snapshot(segmenter)
    with pytest.raises(ValueError, match=message):
        scheme(batch()[0], labels)
    assert_same(before, snapshot(segmenter))


def test_e10_output_only_training_names_the_label_shape_too(segmenter):
    from imachsr.output_only import OutputOnly

    with pytest.raises(ValueError, match=r"the labels must be \(B, H, W\)"):
        OutputOnly(segmenter)(batch()[0], torch.zeros(2, 16, dtype=torch.long))


def test_e11_a_batch_with_every_pixel_ignored_gives_a_zero_loss_and_zero_gradients(segmenter):
    scheme = scheme_for(segmenter, beta=0.0)
    out = scheme(batch()[0], torch.full((2, 16, 16), 255))
    out.loss.backward()
    assert float(out.loss.detach()) == 0.0
    assert all(p.grad is None or not p.grad.any() for p in scheme.parameters())


def test_e12_nan_in_the_features_names_the_tap(segmenter):
    scheme = scheme_for(segmenter)
    with torch.no_grad():
        segmenter.down[0].weight[0, 0, 0, 0] = float("nan")
    # The check comes with the step's one read of the logged terms (no host sync before it).
    with pytest.raises(FloatingPointError, match="first appears in the features at tap 'down_2'"):
        scheme(*batch()).terms
    with pytest.raises(FloatingPointError, match="first appears in the input batch"):
        scheme(torch.full((2, 3, 16, 16), float("inf")), batch()[1]).terms


def test_e13_a_token_tap_whose_token_count_changes_between_calls():
    model = PatchSegmenter()
    scheme = imachsr.IMacHSR(model, 3, example_inputs=(2, 3, 16, 16), taps=["mix"], schedule="constant")
    scheme(*batch(16))  # the traced size trains
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"lays 0 \+ 4x4 tokens .* got 64 tokens"):
        scheme(*batch(32))
    assert_same(before, snapshot(model))


def test_e14_an_unknown_model_spec_on_either_command(capsys, tmp_path):
    assert tapfinder_main(["summary", "timm:resnet5O", "--input-shape", "1,3,64,64"]) == 2
    assert "Did you mean" in capsys.readouterr().err
    assert train_main([*TRAIN, "--model", "torchvision:resnet5O", "--out", str(tmp_path)]) == 2
    assert "Did you mean: resnet50" in capsys.readouterr().err


def test_e15_a_wrong_data_folder_says_what_was_expected_where(tmp_path, capsys):
    (tmp_path / "leftImg8bit").mkdir()
    arguments = [*TRAIN, "--data", "cityscapes", "--out", str(tmp_path / "run")]
    assert train_main([*arguments, "--data-root", str(tmp_path)]) == 2
    message = capsys.readouterr().err
    assert "gtFine" in message and str(tmp_path) in message
    assert train_main([*arguments, "--data-root", str(tmp_path / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_e16_resuming_from_another_models_checkpoint_is_refused_and_keeps_it(tmp_path, capsys):
    out = tmp_path / "run"
    assert train_main([*TRAIN, "--keep-state", "--out", str(out)]) == 0
    saved = (out / "state.pt").read_bytes()
    other = [*TRAIN, "--model", "smp:Unet:resnet18", "--epochs", "2", "--resume", "--out", str(out)]
    assert train_main(other) == 2
    assert "written by a different run: --model 'smp:DeepLabV3Plus:resnet18'" in capsys.readouterr().err
    assert (out / "state.pt").read_bytes() == saved


class DropoutSegmenter(TinySegmenter):
    """Functional dropout in the root's own forward: fx records `training` as a constant."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.dropout(x, 0.5, self.training))


def test_e17_a_model_traced_in_one_mode_and_run_in_the_other_follows_its_mode():
    model = DropoutSegmenter().train()
    tapped = imachsr.instrument(model, ["stem"], (2, 3, 16, 16))
    model.eval()
    before = snapshot(model)
    x = batch()[0]
    with torch.no_grad():
        assert torch.equal(tapped(x)[0], model(x))  # no dropout in eval mode
    assert_same(before, snapshot(model))


class OptionalArgumentSegmenter(TinySegmenter):
    def forward(self, x: torch.Tensor, return_embedding: bool = True) -> torch.Tensor:
        return super().forward(x)


def test_e18_labels_that_could_be_a_model_argument_ask_for_target_by_keyword():
    model = OptionalArgumentSegmenter()
    scheme = scheme_for(model)
    x, y = batch()
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"ambiguous.*scheme\(\*inputs, target=labels\)"):
        scheme(x, True, y)
    assert_same(before, snapshot(model))
    assert scheme(x, True, target=y).loss.requires_grad  # by keyword: the labels are unambiguous


def test_e05_a_model_that_runs_but_does_not_trace_is_blamed_on_tracing_with_its_line():
    # Faster R-CNN hands its region-proposal network an ImageList, which fx cannot record: a
    # tracing limit, in a file under site-packages/torchvision that the source-line filter
    # used to take for torch's own. The analysis records one eager run instead.
    tv = pytest.importorskip("torchvision.models")
    model = tv.detection.fasterrcnn_mobilenet_v3_large_fpn(
        weights=None, weights_backbone=None, min_size=64, max_size=64).eval()
    before = snapshot(model)
    expected = (r"torch.fx could not trace FasterRCNN\.forward.*\n.*torchvision.*"
                r"generalized_rcnn\.py.*\n.*self\.rpn")
    with pytest.warns(tapfinder.EagerGraphWarning, match=expected):
        tapfinder.trace(model, ([(3, 64, 64)],))
    assert_same(before, snapshot(model))  # the check that the model runs left no trace


class ImageListSegmenter(TinySegmenter):
    """Takes a list of (3, H, W) images and an optional mask, as detection models do."""

    def forward(self, images: list[torch.Tensor], mask: torch.Tensor | None = None) -> torch.Tensor:
        x = torch.stack(images)
        return super().forward(x if mask is None else x * mask)


def test_e19_example_inputs_that_do_not_fit_forward_quote_the_signature():
    model = ImageListSegmenter()
    before = snapshot(model)
    with pytest.raises(InvalidInputError, match=r"3 positional input\(s\), which do not fit "
                                                r"ImageListSegmenter\.forward\(images.*too many"):
        tapfinder.trace(model, ([(3, 16, 16)], (1, 3, 16, 16), (1,)))
    with pytest.raises(InvalidInputError, match=r"keywords scale.*unexpected keyword argument"):
        imachsr.instrument(model, ["stem"], tapfinder.Inputs([(3, 16, 16)], scale=(1,)))
    with pytest.raises(InvalidInputError, match=r"example_inputs\['mask'\] is bool.*concrete_args"):
        imachsr.IMacHSR(model, 3, example_inputs=tapfinder.Inputs([(3, 16, 16)], mask=True))
    assert_same(before, snapshot(model))


def test_e20_an_instrumented_model_called_unlike_its_example_says_what_differs():
    model = ImageListSegmenter().eval()
    tapped = imachsr.instrument(model, ["stem"], ([(3, 16, 16), (3, 16, 16)],))
    image = torch.randn(3, 16, 16)
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"traced for calls like forward\(images=\[<tensor>, "
                                         r"<tensor>\]\).*images is not a sequence of 2 items"):
        tapped([image])
    with pytest.raises(ValueError, match=r"also passes 'mask', which the traced call left at its"):
        tapped([image, image], torch.ones(1, 16, 16))
    assert_same(before, snapshot(model))
    with torch.no_grad():  # at its default, the argument is the traced call
        assert torch.equal(tapped([image, image], None)[0], model([image, image]))


def test_e21_labels_given_twice_are_refused_before_the_model_runs():
    model = TinySegmenter().train()
    scheme = imachsr.IMacHSR(model, 3, example_inputs=(2, 3, 16, 16))
    x, y = torch.randn(2, 3, 16, 16), torch.randint(0, 3, (2, 16, 16))
    before = snapshot(model)
    with pytest.raises(ValueError, match="Got both target= and labels=: pass the labels once"):
        scheme(x, target=y, labels=y)
    assert_same(before, snapshot(model))


def test_e22_plain_state_dict_of_something_without_exactly_one_scheme_says_what_to_pass():
    model = TinySegmenter()
    before = snapshot(model)
    with pytest.raises(ValueError, match="TinySegmenter holds 0 IMacHSR schemes; pass the one"):
        imachsr.plain_state_dict(model)
    with pytest.raises(ValueError, match=r"does not hold exactly one IMacHSR scheme .*prefixes "
                                         r"found: none\)\. Pass the scheme"):
        imachsr.plain_state_dict(model.state_dict())
    assert_same(before, snapshot(model))


def test_e23_the_hugging_face_trainer_misused_says_how_to_use_it(tmp_path):
    pytest.importorskip("transformers")
    from transformers import TrainingArguments

    from imachsr.huggingface import DeepSupervisionTrainer

    model = TinySegmenter().train()
    arguments = TrainingArguments(str(tmp_path), report_to="none", use_cpu=True)
    before = snapshot(model)
    with pytest.raises(TypeError, match=r"trains an imachsr.IMacHSR; got TinySegmenter\. Wrap"):
        DeepSupervisionTrainer(model=model, args=arguments)
    assert_same(before, snapshot(model))
    scheme = imachsr.IMacHSR(model, 3, example_inputs=(2, 3, 16, 16))
    trainer = DeepSupervisionTrainer(model=scheme, args=arguments)
    images = torch.randn(2, 3, 16, 16)
    before = snapshot(model)  # the Trainer seeds the random-number generators, as it documents
    with pytest.raises(ValueError, match=r"The batch has no labels \(keys: x\).*under 'labels'"):
        trainer.compute_loss(scheme, {"x": images})
    with pytest.raises(FileNotFoundError, match="has no imachsr_adapters.safetensors: it was not"):
        trainer._load_from_checkpoint(str(tmp_path))
    assert_same(before, snapshot(model))
