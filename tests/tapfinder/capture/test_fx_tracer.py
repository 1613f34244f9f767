"""Auto-leaf, shape guards, scopes and root-failure messages of the fx tracer."""

import warnings

import pytest
import torch
from support import GatedNet, RootBranchNet, ShapeCheckNet, SmallNet

import tapfinder
from tapfinder.errors import InvalidInputError, TraceFailure


def test_functional_nodes_record_their_enclosing_module_scopes():
    arch = tapfinder.trace(SmallNet(), (2, 3, 16, 16))
    conv = arch["stage1_conv"]
    assert conv["module"] == "stage1.conv" and conv["module_type"] == "Conv2d"
    assert conv["scope"] == ("stage1", "stage1.conv")
    add = next(n for n in arch.graph if arch[n]["target"] == "operator.add")
    assert arch[add]["scope"] == () and arch[add]["module"] is None


def test_value_dependent_submodule_becomes_a_leaf_with_a_warning():
    with pytest.warns(tapfinder.AutoLeafWarning, match="gate"):
        arch = tapfinder.trace(GatedNet().eval(), (2, 3, 16, 16))
    assert list(arch.leaves) == ["gate"]
    assert "control flow" in arch.leaves["gate"]
    gate_nodes = [n for n in arch.graph if arch[n]["module"] == "gate"]
    assert len(gate_nodes) == 1 and arch[gate_nodes[0]]["op"] == "call_module"
    assert arch[gate_nodes[0]]["shape"] == (2, 16, 8, 8)


def test_auto_leaf_keeps_the_graph_runnable_and_equal_to_the_model():
    model = GatedNet().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arch = tapfinder.trace(model, (2, 3, 16, 16))
    graph_module = arch.graph_module
    x = torch.randn(2, 3, 16, 16)
    assert arch.leaves.keys() == {"gate"}
    assert torch.equal(graph_module(x), model(x))
    assert torch.equal(graph_module(-x.abs() - 1), model(-x.abs() - 1))


def test_root_control_flow_records_one_eager_run_naming_the_line_and_the_fix_that_applies():
    with pytest.warns(tapfinder.EagerGraphWarning) as caught:
        arch = tapfinder.trace(RootBranchNet(), (1, 3, 8, 8))
    message = str(caught[0].message)
    assert "RootBranchNet.forward" in message
    assert "if x.sum() > 0:" in message and "support.py" in message
    assert "move the code at that line into a submodule" in message
    assert "concrete_args" not in message  # unfed arguments are traced at their real defaults
    assert arch.shape_mode == "eager" and arch.graph_module is None
    assert arch["conv"]["hook"] == "conv" and arch["conv"]["shape"] == (1, 4, 6, 6)


def test_a_model_that_can_neither_trace_nor_run_gets_the_trace_failure():
    with pytest.raises(TraceFailure, match=r"(?s)if x.sum\(\) > 0.*record it instead failed too"):
        tapfinder.trace(RootBranchNet().to("meta"), (1, 3, 8, 8))


def test_branches_on_shapes_are_decided_from_the_example_inputs():
    arch = tapfinder.trace(ShapeCheckNet(), (1, 3, 8, 8))
    assert not arch.leaves
    assert len(arch.shape_guards) == 1
    assert "x.shape[-1] % 2 != 0" in arch.shape_guards[0]
    assert arch.shape_guards[0].endswith("-> False")


def test_leaf_modules_by_path_and_by_type():
    arch = tapfinder.trace(SmallNet(), (1, 3, 8, 8), leaf_modules=["stage1"])
    assert arch["stage1"]["op"] == "call_module" and arch["stage1"]["params"] > 0
    from support import ConvBlock

    arch = tapfinder.trace(SmallNet(), (1, 3, 8, 8), leaf_modules=[ConvBlock])
    called = [a["module"] for _, a in arch.graph.nodes(data=True) if a["op"] == "call_module"]
    assert called == ["stem", "stage1", "stage2", "stage3", "head"]


def test_unknown_leaf_module_path_suggests_close_matches():
    with pytest.raises(InvalidInputError, match="Did you mean 'stage1'"):
        tapfinder.trace(SmallNet(), (1, 3, 8, 8), leaf_modules=["stage_1"])


def test_concrete_args_must_be_a_dict():
    with pytest.raises(InvalidInputError, match="concrete_args must be a dict"):
        tapfinder.trace(SmallNet(), (1, 3, 8, 8), concrete_args=[1])


class OptionalMaskNet(torch.nn.Module):
    """``forward(x, mask=None, pre_logits=False)`` as timm's Hiera and heads have it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 1)

    def forward(self, x, mask=None, pre_logits=False):
        if mask is not None:
            x = x * mask.view(x.shape[0], 1, *x.shape[2:])
        x = self.conv(x)
        return x if pre_logits else x.mean((2, 3))


def test_arguments_no_example_feeds_keep_their_defaults():
    model = OptionalMaskNet()
    arch = tapfinder.trace(model, (2, 3, 8, 8))
    assert arch[arch.outputs[0]]["shape"] == (2, 4)
    assert not any(a["op"] == "call_method" and a["target"] == "view"
                   for _, a in arch.graph.nodes(data=True))
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(arch.graph_module(x), model(x))


def test_concrete_args_override_the_defaults():
    arch = tapfinder.trace(OptionalMaskNet(), (2, 3, 8, 8), concrete_args={"pre_logits": True})
    assert arch[arch.outputs[0]]["shape"] == (2, 4, 8, 8)


class TokensToGrid(torch.nn.Module):
    """``int(n ** 0.5)`` of a token count, and a loop over a shape, as ConViT and SAM write."""

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, count, channels = tokens.shape
        side = int(count ** 0.5)
        for size in tokens.shape[1:]:  # iterating a traced torch.Size
            tokens = tokens * (size > 0)
        return tokens.transpose(1, 2).reshape(batch, channels, side, side)


class TokenNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(4, 8)
        self.grid = TokensToGrid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.grid(self.proj(x))


def test_int_of_a_size_and_iteration_over_a_shape_are_traced_through():
    model = TokenNet()
    arch = tapfinder.trace(model, (2, 16, 4))
    assert not arch.leaves
    assert any("int(count ** 0.5)" in guard for guard in arch.shape_guards)
    x = torch.randn(2, 16, 4)
    assert torch.equal(arch.graph_module(x), model(x))
    assert arch[arch.outputs[0]]["shape"] == (2, 8, 4, 4)


class LengthOfShapes(torch.nn.Module):
    """The root's own forward takes ``len`` and ``list`` of sizes: fx alone refuses both."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        sizes = list(y.shape)
        if len(y.size()) == 4:
            y = y.reshape(sizes[0], sizes[1], -1)
        return y


def test_len_and_list_of_a_shape_are_traced_through_as_shape_guards():
    model = LengthOfShapes()
    arch = tapfinder.trace(model, (2, 3, 8, 8))
    assert any("list(y.shape)" in guard for guard in arch.shape_guards)
    assert any("len(y.size()) == 4" in guard for guard in arch.shape_guards)
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(arch.graph_module(x), model(x)) and arch[arch.outputs[0]]["shape"] == (2, 4, 64)


class SizeIndexNet(torch.nn.Module):
    """Sizes as indices: a buffer sliced to the sequence length, a loop over the batch."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("positions", torch.arange(64).float())
        self.proj = torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x) + self.positions[: x.shape[1], None]
        return torch.stack([x[i] * 2 for i in range(x.shape[0])])


def test_sizes_used_as_indices_are_decided_from_the_example_shapes():
    model = SizeIndexNet()
    arch = tapfinder.trace(model, (2, 10, 4))
    assert not arch.leaves and arch.shape_mode != "eager"
    assert any("range(x.shape[0])" in guard for guard in arch.shape_guards)
    x = torch.randn(2, 10, 4)
    assert torch.equal(arch.graph_module(x), model(x))
