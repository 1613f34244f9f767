"""Binding example calls to forward, flattening calls into a graph's tensors and back."""

from collections import OrderedDict

import pytest
import torch
from torch import nn

import tapfinder
from tapfinder import Inputs
from tapfinder.capture.call_binding import CallSpec
from tapfinder.capture.example_inputs import normalize_example_inputs
from tapfinder.errors import InvalidInputError


class ManyInputs(nn.Module):
    def forward(self, images, extra=None, *, scale=1.0, **options):
        out = sum(image.mean() for image in images)
        if extra is not None:
            out = out + extra["a"].sum() + extra["b"][0].sum()
        for value in options.values():
            out = out + value.sum()
        return out * scale


def bind(model, example, constants=None):
    return CallSpec.bind(model, normalize_example_inputs(example), constants)


def test_a_call_names_each_tensor_after_its_argument_and_place():
    call = bind(ManyInputs(), Inputs([(3, 4, 4), (3, 4, 4)], {"a": (2,), "b": [(1,)]}, mask=(2, 2)))
    assert call.names == ("images_0", "images_1", "extra_a", "extra_b_0", "mask")
    assert call.batches == {"images_0": 2, "images_1": 2, "extra_b_0": 1}
    tensors = [torch.full((1,), float(i)) for i in range(5)]
    args, kwargs = call.rebuild(tensors)
    assert args[0] == [tensors[0], tensors[1]] and args[1]["b"] == [tensors[3]]
    assert kwargs == {"mask": tensors[4]}
    assert call.flatten(args, kwargs, ManyInputs()) == tensors


def test_a_call_shaped_differently_from_the_example_is_refused_with_what_differs():
    model = ManyInputs()
    call = bind(model, ([(3, 4, 4), (3, 4, 4)],))
    image = torch.zeros(3, 4, 4)
    with pytest.raises(ValueError, match=r"images is not a sequence of 2 items"):
        call.flatten(([image],), {}, model)
    with pytest.raises(ValueError, match=r"also passes 'extra', which the traced call left"):
        call.flatten(([image, image], {"a": image}), {}, model)
    assert len(call.flatten(([image, image], None), {}, model)) == 2  # extra at its default


def test_concrete_args_are_constants_of_the_call_and_may_be_left_out():
    model = ManyInputs()
    call = bind(model, ([(3, 4, 4)],), {"scale": 2.0})
    image = torch.zeros(3, 4, 4)
    assert call.flatten(([image],), {"scale": 2.0}, model) == [image]
    assert call.flatten(([image],), {}, model) == [image]
    with pytest.raises(ValueError, match=r"scale is 3.0, not 2.0 as traced"):
        call.flatten(([image],), {"scale": 3.0}, model)
    with pytest.raises(InvalidInputError, match=r"concrete_args names 'nope'"):
        bind(nn.Conv2d(3, 3, 1), (1, 3, 4, 4), {"nope": 1})


def test_a_plain_call_flattens_to_itself():
    call = bind(nn.Conv2d(3, 3, 1), (1, 3, 4, 4))
    x = torch.zeros(1, 3, 4, 4)
    assert call.plain and call.flatten((x,), {}, nn.Conv2d(3, 3, 1)) == [x]


class Outputs(OrderedDict):
    pass


class MappingOutputNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        y = self.conv(x)
        return [Outputs(logits=y, pooled=y.mean((2, 3))), {"plain": y}]


def test_an_output_mapping_class_survives_instrumentation():
    import imachsr

    model = MappingOutputNet()
    x = torch.randn(1, 3, 4, 4)
    output, _ = imachsr.instrument(model, ["conv"], (x,))(x)
    assert type(output[0]) is Outputs and type(output[1]) is dict
    assert torch.equal(output[0]["pooled"], model(x)[0]["pooled"])


def test_a_forward_reading_kwargs_gets_a_real_dict():
    class KwargsNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)

        def forward(self, x, **kwargs):
            scale = kwargs.pop("scale", 1.0)
            return self.conv(x) * scale

    arch = tapfinder.trace(KwargsNet(), (1, 3, 4, 4))
    assert arch[arch.outputs[0]]["shape"] == (1, 4, 4, 4)
