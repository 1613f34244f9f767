"""The vectorised, synchronisation-free step computes what the per-sample implementation did:
loss, logged terms and every gradient of one step on a fixed batch, against the record in
``data/step_reference.pt`` (written at commit 6546166; see ``step_reference_model.py``)."""

from pathlib import Path

import pytest
import torch
from step_reference_model import CONFIGURATIONS, reference_batch, reference_scheme

RECORD = torch.load(Path(__file__).parent / "data" / "step_reference.pt", weights_only=False)


@pytest.mark.parametrize("name", list(CONFIGURATIONS))
def test_loss_terms_and_gradients_equal_the_recorded_step(name):
    scheme = reference_scheme(**CONFIGURATIONS[name])
    out = scheme(*reference_batch())
    out.loss.backward()
    recorded = RECORD[name]
    assert float(out.loss.detach()) == pytest.approx(float(recorded["loss"]), rel=1e-5, abs=1e-6)
    for term, value in recorded["terms"].items():
        assert out.terms[term] == pytest.approx(value, rel=1e-4, abs=1e-6), term
    gradients = {n: p.grad for n, p in scheme.named_parameters()}
    assert gradients.keys() == recorded["grads"].keys()
    for parameter, expected in recorded["grads"].items():
        torch.testing.assert_close(gradients[parameter], expected, rtol=1e-4, atol=1e-6,
                                   msg=lambda m, p=parameter: f"{p}: {m}")
