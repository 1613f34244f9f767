import pytest
import torch

from tapfinder import Inputs
from tapfinder.capture.example_inputs import normalize_example_inputs, random_inputs
from tapfinder.errors import InvalidInputError


def shapes(inputs):
    return [tuple(t.shape) for t in inputs.tensors()]


def test_a_tensor_becomes_the_one_positional_input():
    tensor = torch.zeros(2, 3)
    inputs = normalize_example_inputs(tensor)
    assert inputs.args == (tensor,) and inputs.kwargs == {}


@pytest.mark.parametrize("shape", [(1, 3, 8, 8), [1, 3, 8, 8], torch.Size([1, 3, 8, 8])])
def test_a_shape_becomes_one_meta_float_tensor(shape):
    (tensor,) = normalize_example_inputs(shape).args
    assert tensor.shape == (1, 3, 8, 8) and tensor.is_meta and tensor.dtype == torch.float32


def test_a_tuple_mixes_tensors_and_shapes():
    ids = torch.zeros(2, 7, dtype=torch.long)
    inputs = normalize_example_inputs(((2, 3), ids))
    assert shapes(inputs) == [(2, 3), (2, 7)] and inputs.args[1] is ids


def test_a_dict_gives_keyword_inputs():
    inputs = normalize_example_inputs({"pixel_values": (1, 3, 8, 8), "mask": None})
    assert inputs.args == () and inputs.kwargs["mask"] is None
    assert inputs.kwargs["pixel_values"].shape == (1, 3, 8, 8)


def test_lists_and_dicts_of_shapes_nest_and_keep_their_order():
    inputs = normalize_example_inputs(
        Inputs([(3, 16, 16), (3, 20, 12)], extra={"a": (1, 2), "b": [(1, 3)]}))
    assert isinstance(inputs.args[0], list)
    assert shapes(inputs) == [(3, 16, 16), (3, 20, 12), (1, 2), (1, 3)]
    assert repr(Inputs((1, 2), flag=None)) == "Inputs((1, 2), flag=None)"


def test_random_inputs_keep_the_structure_dtypes_and_shapes():
    ids = torch.zeros(2, 7, dtype=torch.long)
    example = normalize_example_inputs(Inputs([(3, 4, 4)], ids=ids))
    real = random_inputs(example, torch.device("cpu"))
    assert isinstance(real.args[0], list) and not real.args[0][0].is_meta
    assert real.kwargs["ids"].dtype == torch.long and torch.equal(real.kwargs["ids"], ids)


@pytest.mark.parametrize("bad", [None, "1,3,224,224", (), [[1.5, 2]], ((1, 2), "x"), 3, True, {},
                                 {1: (1, 2)}, Inputs((1, 2), flag=True)])
def test_anything_else_is_refused_with_a_hint(bad):
    with pytest.raises(InvalidInputError, match="Pass a tensor"):
        normalize_example_inputs(bad)


def test_the_error_names_where_the_bad_item_is():
    with pytest.raises(InvalidInputError, match=r"example_inputs\[0\]\[1\] is str"):
        normalize_example_inputs(([(1, 2), "x"],))
    with pytest.raises(InvalidInputError, match=r"example_inputs\['flag'\] is bool.*concrete_args"):
        normalize_example_inputs(Inputs((1, 2), flag=True))


def test_non_positive_dimensions_are_refused():
    with pytest.raises(InvalidInputError, match=r"example_inputs is the shape.*not positive"):
        normalize_example_inputs((1, 0, 4))
    with pytest.raises(InvalidInputError, match=r"example_inputs\[0\]\[1\] is the shape"):
        normalize_example_inputs(([(1, 2), (0, 2)],))
