"""``imachsr.IMacHSR``: the Eq. 3 objective, training, saving, and the settings users train in."""

import math
import warnings

import pytest
import torch
from support import SmallNet, TinySegmenter, batch
from torch.nn import functional as F

import imachsr
import tapfinder
from imachsr.losses import mutual_information_loss, negative_entropy


def scheme_for(model=None, **options):
    """The 0.1 configuration (per-image joint MI, 1x1 adapters, constant weights) unless
    overridden: the hand computations below follow its equations."""
    model = model or TinySegmenter()
    options = {"taps": ["stem", "down"], "mi": "joint", "adapter": "linear",
               "schedule": "constant", **options}
    return imachsr.IMacHSR(model, 3, example_inputs=(2, 3, 16, 16), **options)


@pytest.mark.parametrize("resolution", ["feature", "label"])
def test_objective_matches_a_hand_computation(resolution):
    scheme = scheme_for(alpha=[0.4, 0.2], beta=[0.01, 0.05], resolution=resolution)
    x, y = batch()
    out = scheme(x, y)
    logits = scheme.model(x)
    expected = F.cross_entropy(logits, y, ignore_index=255)
    assert out.terms["ce"] == pytest.approx(float(expected.detach()), abs=1e-5)
    features = {"stem_2": scheme.model.stem(x)}
    features["down_2"] = scheme.model.down(features["stem_2"])
    for (name, feature), alpha, beta in zip(features.items(), [0.4, 0.2], [0.01, 0.05]):
        adapter = scheme.adapters[name](feature)
        resized = F.interpolate(y[:, None].float(), size=feature.shape[2:], mode="nearest")[:, 0]
        if resolution == "label":
            mi = mutual_information_loss(F.interpolate(adapter, size=(16, 16), mode="bilinear"), y,
                                         estimator="joint-image")
        else:
            mi = mutual_information_loss(adapter, resized.long(), estimator="joint-image")
        valid = resized != 255
        ne = negative_entropy(feature, mask=valid)
        assert out.terms[f"mi/{name}"] == pytest.approx(float(mi.detach()), abs=1e-5)
        assert out.terms[f"ne/{name}"] == pytest.approx(float(ne.detach()), abs=1e-5)
        expected = expected + alpha * mi + beta * ne
    assert float(out.loss.detach()) == pytest.approx(float(expected.detach()), abs=1e-5)
    assert torch.equal(out.logits, logits)


def test_gradients_reach_the_backbone_and_the_adapters():
    scheme = scheme_for()
    scheme(*batch()).loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in scheme.model.stem.parameters())
    assert all(p.grad is not None for p in scheme.adapters.parameters())


def test_mi_loss_alone_sends_gradient_into_the_backbone():
    scheme = scheme_for(taps=["stem"], beta=0.0, output_loss=lambda output, target: output.sum() * 0)
    scheme(*batch()).loss.backward()
    assert scheme.model.stem[0].weight.grad.abs().sum() > 0
    assert scheme.model.head.weight.grad.abs().sum() == 0


def test_without_target_the_scheme_is_the_untouched_model():
    scheme = scheme_for().eval()
    x, _ = batch()
    assert torch.equal(scheme(x), scheme.model(x))


def test_training_reduces_the_loss_and_checkpoints_load_into_the_original_class(tmp_path):
    torch.manual_seed(0)
    scheme = scheme_for()
    optimizer = torch.optim.Adam(scheme.parameters(), lr=1e-2)
    x, y = batch()
    losses = []
    for _ in range(15):
        optimizer.zero_grad()
        out = scheme(x, y)
        out.loss.backward()
        optimizer.step()
        losses.append(float(out.loss.detach()))
    assert losses[-1] < losses[0]
    torch.save(scheme.model.state_dict(), tmp_path / "model.pt")
    fresh = TinySegmenter()
    fresh.load_state_dict(torch.load(tmp_path / "model.pt"))
    fresh.eval(), scheme.eval()
    assert torch.equal(fresh(x), scheme.model(x))

    torch.save(scheme.state_dict(), tmp_path / "scheme.pt")
    resumed = scheme_for(TinySegmenter())
    resumed.load_state_dict(torch.load(tmp_path / "scheme.pt"))
    resumed.eval()
    assert torch.equal(resumed(x, y).loss, scheme(x, y).loss)
    assert set(scheme.state_dict()) == {f"model.{k}" for k in fresh.state_dict()} | {
        f"adapters.{k}" for k in scheme.adapters.state_dict()
    }


def test_parameters_cover_model_and_adapters_once():
    scheme = scheme_for()
    ids = [id(p) for p in scheme.parameters()]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in scheme.model.parameters()} | {id(p) for p in scheme.adapters.parameters()}


def test_auto_taps_and_options():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scheme = scheme_for(taps="auto", k=2)
    assert len(scheme.taps) >= 1
    for options in ({"mi": "variational"}, {"mi": "ce"}, {"ne_on": "adapter"},
                    {"resolution": "label"}, {"normalize_mi": True}):
        out = scheme_for(**options)(*batch())
        assert math.isfinite(float(out.loss.detach())), options


@pytest.mark.parametrize("options, message", [
    ({"mi": "nce"}, "mi: the estimator must be one of eq1, joint-image, variational-image"),
    ({"ne_on": "output"}, "ne_on must be"),
    ({"resolution": "native"}, "resolution must be"),
    ({"alpha": [0.1, 0.2, 0.3]}, "alpha has 3 values for 2 taps"),
    ({"taps": "some"}, "taps must be 'auto'"),
    ({"adapter": "head", "head_width": 0}, "head_width must be a positive integer"),
    ({"adapter": "head", "head_width": 8.0}, "head_width must be a positive integer"),
])
def test_bad_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        scheme_for(**options)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int32])
def test_labels_of_any_integer_dtype_give_the_int64_loss(dtype):
    """Masks read from PNG files are uint8; cross-entropy itself takes int64 only."""
    x, y = batch()
    scheme = scheme_for(mi="ce")
    assert scheme(x, y.to(dtype)).terms == pytest.approx(scheme(x, y).terms)


def test_classification_labels_pool_the_adapters():
    scheme = imachsr.IMacHSR(SmallNet(), 10, example_inputs=(4, 3, 16, 16), taps=["stage1", "add"],
                             schedule="constant")
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 3, 3, 9])
    out = scheme(x, y)
    out.loss.backward()
    assert scheme.classification and out.logits.shape == (4, 10) and math.isfinite(float(out.loss.detach()))


def test_autocast_bfloat16_and_channels_last():
    scheme = scheme_for()
    x, y = batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = scheme(x, y)
    out.loss.backward()
    assert math.isfinite(float(out.loss.detach()))
    reference = float(scheme(x, y).loss.detach())
    scheme.to(memory_format=torch.channels_last)
    channels_last = float(scheme(x.to(memory_format=torch.channels_last), y).loss.detach())
    assert channels_last == pytest.approx(reference, rel=1e-4)


@pytest.mark.parametrize("backend", [
    "aot_eager",
    # Inductor generates and compiles C++ (about 20 s here); aot_eager covers the graph capture.
    pytest.param("inductor", marks=pytest.mark.slow),
])
def test_torch_compile_of_the_instrumented_model(backend):
    if not hasattr(torch, "compile"):
        pytest.skip("torch.compile is not available")
    scheme = scheme_for().eval()
    x, _ = batch()
    try:
        compiled = torch.compile(scheme.tapped, backend=backend)
        output, features = compiled(x)
    except Exception as error:  # a missing compiler toolchain is an environment fact
        pytest.skip(f"torch.compile unavailable here: {type(error).__name__}: {error}")
    expected, expected_features = scheme.tapped(x)
    assert torch.allclose(output, expected, atol=1e-5)
    assert list(features) == list(expected_features)


class ModeDependentSegmenter(TinySegmenter):
    """Functional dropout and a training-only branch in traced-through code."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = F.dropout(self.down(self.stem(x)), 0.5, self.training)
        if self.training:
            features = features * 2
        return F.interpolate(self.head(features), size=x.shape[-2:], mode="bilinear")


def test_a_scheme_built_in_eval_mode_trains_on_the_training_graph():
    model = ModeDependentSegmenter().eval()
    scheme = scheme_for(model)
    x, y = batch()
    scheme.train()
    torch.manual_seed(3)
    out = scheme(x, y)
    torch.manual_seed(3)
    assert torch.equal(out.logits, model(x))


class OptionalArgumentSegmenter(TinySegmenter):
    def forward(self, x: torch.Tensor, return_embedding: bool = True) -> torch.Tensor:
        return super().forward(x)


def test_labels_are_the_argument_after_the_example_inputs_not_an_optional_parameter():
    scheme = scheme_for(OptionalArgumentSegmenter())
    x, y = batch()
    out = scheme(x, y)  # y must be the labels, not return_embedding
    assert isinstance(out, imachsr.SchemeOutput) and math.isfinite(out.terms["loss"])
    assert torch.equal(scheme(x), scheme.model(x))



class RootBranchSegmenter(TinySegmenter):
    """Value-dependent control flow in the root's own forward: fx cannot trace it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.mean() > 10:
            x = x / 2
        return super().forward(x)


def test_a_model_fx_cannot_trace_trains_with_module_taps_through_forward_hooks():
    from support import assert_same, snapshot

    model = RootBranchSegmenter().train()
    before = snapshot(model)
    with pytest.warns(tapfinder.EagerGraphWarning, match="forward hooks"):
        scheme = scheme_for(model, taps=["stem", "down"], mi="ce", adapter="head")
    assert_same(before, snapshot(model))  # the shape probe left no trace either
    assert scheme.taps == ("stem", "down") and scheme.tapped.uses_hooks
    x, y = batch()
    out = scheme(x, y)
    out.loss.backward()
    assert math.isfinite(out.terms["loss"]) and {"mi/stem", "mi/down"} <= out.terms.keys()
    assert scheme.model.stem[0].weight.grad is not None
    assert all(p.grad is not None for p in scheme.adapters.parameters())


def test_automatic_taps_on_an_untraceable_model_are_module_outputs_of_the_recorded_run():
    model = RootBranchSegmenter().train()
    with pytest.warns(tapfinder.EagerGraphWarning):
        scheme = scheme_for(model, taps="auto", k=2)
    modules = dict(model.named_modules())
    assert scheme.tapped.uses_hooks and all(tap in modules for tap in scheme.taps)
    x, y = batch()
    out = scheme(x, y)
    out.loss.backward()
    assert {f"mi/{tap}" for tap in scheme.taps} <= out.terms.keys()




@pytest.mark.parametrize("estimator", ["joint-batch", "rmi", "contrast"])
def test_the_heterogeneous_tap_losses_train_through_the_scheme(estimator):
    torch.manual_seed(0)
    scheme = imachsr.IMacHSR(TinySegmenter(), 3, example_inputs=(2, 3, 32, 32), mi=estimator)
    x, y = batch(size=32)
    out = scheme(x, y)
    out.loss.backward()
    assert all(math.isfinite(out.terms[f"mi/{tap}"]) for tap in scheme.taps)
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for p in scheme.adapters.parameters())


def test_contrast_is_the_cross_entropy_plus_a_tenth_of_pixel_contrast_on_each_head():
    from imachsr.adapters import adapter_key
    from imachsr.pixel_contrast import pixel_contrast_loss

    torch.manual_seed(0)
    scheme = imachsr.IMacHSR(TinySegmenter(), 3, example_inputs=(2, 3, 16, 16), mi="contrast")
    plain = imachsr.IMacHSR(TinySegmenter(), 3, example_inputs=(2, 3, 16, 16), mi="eq1")
    plain.load_state_dict(scheme.state_dict())
    scheme.eval(), plain.eval()
    x, y = batch()
    with torch.no_grad():
        _, features = scheme.tapped(x)
        for tap in scheme.taps:
            head = scheme.adapters[adapter_key(tap)]
            embedding = head.embed(features[tap])
            labels = y[:, ::y.shape[1] // embedding.shape[2], ::y.shape[2] // embedding.shape[3]]
            expected = plain(x, y).terms[f"mi/{tap}"] + 0.1 * float(
                pixel_contrast_loss(embedding, labels, labels != 255))
            assert scheme(x, y).terms[f"mi/{tap}"] == pytest.approx(expected, abs=1e-5)
