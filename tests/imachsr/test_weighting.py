"""Weight schedules and normalisation of the auxiliary terms (DSN's decay, nnU-Net's weights)."""

import math
import warnings

import pytest
from support import TinySegmenter, batch

import imachsr
from imachsr.weighting import normalisation, schedule_factor


@pytest.mark.parametrize("progress", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_schedule_factors(progress):
    assert schedule_factor("constant", progress) == 1.0
    assert schedule_factor("linear", progress) == pytest.approx(1.0 - progress)
    assert schedule_factor("cosine", progress) == pytest.approx((1 + math.cos(math.pi * progress)) / 2)


def test_decaying_schedules_start_at_one_and_end_at_zero():
    for schedule in ("linear", "cosine"):
        assert schedule_factor(schedule, 0.0) == 1.0
        assert schedule_factor(schedule, 1.0) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("schedule, progress, message", [
    ("exponential", 0.5, "schedule must be one of constant, linear, cosine"),
    ("linear", 1.5, r"progress must lie in \[0, 1\]"),
    ("linear", -0.1, r"progress must lie in \[0, 1\]"),
])
def test_bad_schedules_and_progress_are_refused(schedule, progress, message):
    with pytest.raises(ValueError, match=message):
        schedule_factor(schedule, progress)


def test_normalisation_makes_the_output_and_tap_weights_sum_to_one():
    alphas = [0.5, 0.25, 0.125]
    divisor = normalisation(alphas, 1.0)
    assert (1 + sum(alphas)) / divisor == pytest.approx(1.0)
    assert normalisation(alphas, 0.0) == 1.0  # fully decayed: the output loss alone, weight 1


def scheme(**options):
    options = {"taps": ["stem", "down"], "mi": "ce", "alpha": [0.4, 0.2], "beta": 0.0, **options}
    return imachsr.IMacHSR(TinySegmenter(), 3, example_inputs=(2, 3, 16, 16), **options)


def test_the_schedule_scales_every_tap_term_and_reaches_the_output_loss_alone():
    linear = scheme(schedule="linear")
    x, y = batch()
    for progress in (0.0, 0.25, 1.0):
        linear.set_progress(progress)
        out = linear(x, y)
        taps = out.terms["mi/stem_2"] * 0.4 + out.terms["mi/down_2"] * 0.2
        expected = out.terms["ce"] + (1 - progress) * taps
        assert out.terms["loss"] == pytest.approx(expected, rel=1e-6)


def test_normalised_weights_divide_the_objective_by_one_plus_the_scheduled_alphas():
    normalised = scheme(schedule="linear", normalize_weights=True)
    normalised.set_progress(0.5)
    x, y = batch()
    out = normalised(x, y)
    raw = out.terms["ce"] + 0.5 * (0.4 * out.terms["mi/stem_2"] + 0.2 * out.terms["mi/down_2"])
    assert out.terms["loss"] == pytest.approx(raw / (1 + 0.5 * 0.6), rel=1e-6)


def test_a_decaying_schedule_without_progress_warns_once_and_keeps_full_weights():
    decaying = scheme(schedule="linear")
    x, y = batch()
    with pytest.warns(UserWarning, match=r"set_progress\(fraction\) has not been called"):
        first = decaying(x, y)
    taps = first.terms["mi/stem_2"] * 0.4 + first.terms["mi/down_2"] * 0.2
    assert first.terms["loss"] == pytest.approx(first.terms["ce"] + taps, rel=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        decaying(x, y)  # once only


def test_the_default_schedule_needs_no_progress_and_warns_nothing():
    """The README's loop never calls set_progress: the default weights are constant."""
    default = imachsr.IMacHSR(TinySegmenter(), 3, example_inputs=(2, 3, 16, 16),
                              taps=["stem", "down"], alpha=[0.4, 0.2], beta=0.0)
    x, y = batch()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = default(x, y)
    taps = out.terms["mi/stem_2"] * 0.4 + out.terms["mi/down_2"] * 0.2
    assert out.terms["loss"] == pytest.approx(out.terms["ce"] + taps, rel=1e-6)


def test_set_progress_refuses_values_outside_the_run():
    with pytest.raises(ValueError, match="progress must lie"):
        scheme().set_progress(2.0)


def test_misspelt_adapter_and_schedule_names_are_refused():
    with pytest.raises(ValueError, match="adapter must be one of linear, head"):
        scheme(adapter="fcn")
    with pytest.raises(ValueError, match="schedule must be one of"):
        scheme(schedule="step")
