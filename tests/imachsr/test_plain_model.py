"""plain_state_dict: the user's weights out of every wrapper the engines add."""

from __future__ import annotations

import pytest
import torch
from support import TinySegmenter, batch
from torch import nn

import imachsr
from imachsr.plain_model import split_scheme_state


def trained_scheme() -> imachsr.IMacHSR:
    torch.manual_seed(0)
    scheme = imachsr.IMacHSR(TinySegmenter(), 3, example_inputs=(2, 3, 16, 16))
    scheme(*batch()).loss.backward()
    with torch.no_grad():
        for parameter in scheme.parameters():
            parameter.add_(parameter.grad)
    return scheme


class Holder(nn.Module):
    """What a LightningModule is to its scheme: a module holding it under an attribute."""

    def __init__(self, scheme: nn.Module) -> None:
        super().__init__()
        self.scheme = scheme


def loads_strictly(state: dict[str, torch.Tensor], reference: nn.Module) -> bool:
    fresh = TinySegmenter()
    fresh.load_state_dict(state, strict=True)
    return all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(),
                                                  reference.state_dict().values()))


@pytest.mark.parametrize("wrap", [
    lambda s: s,
    Holder,
    lambda s: Holder(torch.compile(s)),              # the compiled wrapper adds _orig_mod.
    lambda s: Holder(s).state_dict(),                # a LightningModule's state dict
    lambda s: {"state_dict": Holder(s).state_dict(), "epoch": 3},   # a Lightning .ckpt
    lambda s: {f"module.{k}": v for k, v in s.state_dict().items()},  # DDP's prefix
], ids=["scheme", "holder", "compiled", "holder-state", "lightning-ckpt", "ddp-state"])
def test_the_model_weights_come_out_of_every_wrapper_and_load_into_the_class(wrap):
    scheme = trained_scheme()
    plain = imachsr.plain_state_dict(wrap(scheme))
    assert list(plain) == list(scheme.model.state_dict())
    assert loads_strictly(plain, scheme.model)


def test_the_adapters_split_off_under_their_own_keys():
    scheme = trained_scheme()
    model, adapters = split_scheme_state(Holder(scheme).state_dict())
    assert list(model) == list(scheme.model.state_dict())
    assert list(adapters) == list(scheme.adapters.state_dict())


def test_a_state_dict_with_two_schemes_or_a_file_name_is_refused():
    both = {**{f"a.{k}": v for k, v in trained_scheme().state_dict().items()},
            **{f"b.{k}": v for k, v in trained_scheme().state_dict().items()}}
    with pytest.raises(ValueError, match="prefixes found: 'a.', 'b.'"):
        imachsr.plain_state_dict(both)
    with pytest.raises(TypeError, match="takes a module or a state dict; got str"):
        imachsr.plain_state_dict("model.pt")  # type: ignore[arg-type]
