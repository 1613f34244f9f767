import pytest
import torch

from tapfinder.errors import InvalidInputError
from tapfinder.inputs import normalize_example_inputs


def shapes(inputs):
    return [tuple(t.shape) for t in inputs]


def test_a_tensor_becomes_a_one_tuple():
    tensor = torch.zeros(2, 3)
    assert normalize_example_inputs(tensor) == (tensor,)


@pytest.mark.parametrize("shape", [(1, 3, 8, 8), [1, 3, 8, 8], torch.Size([1, 3, 8, 8])])
def test_a_shape_becomes_one_meta_float_tensor(shape):
    (tensor,) = normalize_example_inputs(shape)
    assert tensor.shape == (1, 3, 8, 8) and tensor.is_meta and tensor.dtype == torch.float32


def test_a_tuple_mixes_tensors_and_shapes():
    ids = torch.zeros(2, 7, dtype=torch.long)
    assert shapes(normalize_example_inputs(((2, 3), ids))) == [(2, 3), (2, 7)]


@pytest.mark.parametrize("bad", [None, "1,3,224,224", (), [[1.5, 2]], ((1, 2), "x"), 3, True])
def test_anything_else_is_refused_with_a_hint(bad):
    with pytest.raises(InvalidInputError, match="Pass a tensor"):
        normalize_example_inputs(bad)


def test_non_positive_dimensions_are_refused():
    with pytest.raises(InvalidInputError, match="not positive"):
        normalize_example_inputs((1, 0, 4))
