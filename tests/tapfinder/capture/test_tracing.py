"""``tapfinder.trace`` end to end: shapes, attributes, inputs and outputs, and invariants."""

import gc

import psutil
import pytest
import torch
from support import TinyTokenTransformer, TwoInputNet, assert_same, snapshot
from torch import nn

import tapfinder
from tapfinder.errors import InvalidInputError, ShapePropagationError


def test_every_node_has_the_documented_attributes(small_net):
    arch = tapfinder.trace(small_net, (2, 3, 16, 16))
    expected = {
        "op", "target", "module", "module_type", "scope", "value", "shape", "dtype", "layout",
        "channels", "spatial", "reduction", "params", "parametric", "layer_index", "depth",
        "on_main_path",
    }
    for name in arch.graph:
        assert expected <= arch[name].keys(), name


def test_feature_attributes_of_a_strided_conv(small_net):
    arch = tapfinder.trace(small_net, (2, 3, 16, 16))
    node = arch["stage3_act"]
    assert node["shape"] == (2, 32, 4, 4) and node["dtype"] == "float32"
    assert node["layout"] == "NCHW" and node["channels"] == 32 and node["spatial"] == (4, 4)
    assert node["reduction"] == 4.0
    conv = arch["stage3_conv"]
    assert conv["params"] == 16 * 32 * 9 and conv["parametric"]
    assert arch["stage3_act"]["params"] == 0 and not arch["stage3_act"]["parametric"]


class StandardisedConv(nn.Conv2d):
    """BiT's and timm's weight-standardised convolution: the weight is normalised, then used."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = nn.functional.batch_norm(self.weight.reshape(1, self.out_channels, -1), None,
                                          None, training=True, momentum=0.0, eps=1e-6)
        return nn.functional.conv2d(x, weight.reshape_as(self.weight), self.bias, self.stride,
                                    self.padding)


def test_a_convolution_of_a_standardised_weight_is_a_layer_and_the_standardisation_is_not():
    model = nn.Sequential(StandardisedConv(3, 8, 3, bias=False), nn.ReLU(),
                          StandardisedConv(8, 8, 3, bias=False))
    arch = tapfinder.trace(model, (2, 3, 16, 16))
    layers = [name for name in arch.graph if arch[name]["parametric"]]
    assert [arch[name]["target"] for name in layers] == ["torch.conv2d", "torch.conv2d"], layers
    assert arch.max_layer_index == 2


def test_layer_index_counts_parametric_layers_on_the_longest_path(small_net):
    arch = tapfinder.trace(small_net, (2, 3, 16, 16))
    # stem (conv, bn) -> stage1 (conv, bn) -> stage2 (conv, bn) -> add -> stage3 -> head
    assert arch["stem_bn"]["layer_index"] == 2
    assert arch["add"]["layer_index"] == 6
    assert arch["head"]["layer_index"] == 9 and arch["head"]["depth"] == 1.0
    assert arch.max_layer_index == 9


def test_main_path_excludes_nodes_a_skip_connection_bypasses(small_net):
    arch = tapfinder.trace(small_net, (2, 3, 16, 16))
    assert arch["stage1_act"]["on_main_path"] and arch["add"]["on_main_path"]
    assert not arch["stage2_conv"]["on_main_path"]


def test_multiple_inputs_and_container_outputs():
    arch = tapfinder.trace(TwoInputNet(), ((2, 3, 8, 8), (2, 5)))
    assert arch.inputs == ("image", "vector")
    assert arch["vector"]["shape"] == (2, 5)
    output = arch["output"]
    assert output["value"] == "dict"
    assert output["shape"] == {"fused": (2, 8, 4, 4), "pair": ((2, 8, 4, 4), (2, 5))}
    assert set(arch.outputs) == {"add", "image_act", "vector"}


def test_wrong_number_of_inputs_names_the_forward_signature():
    with pytest.raises(InvalidInputError, match=r"1 positional input.*TwoInputNet.forward"
                       r"\(image.*vector.*missing a required argument: 'vector'"):
        tapfinder.trace(TwoInputNet(), (2, 3, 8, 8))
    with pytest.raises(InvalidInputError, match=r"3 positional input.*too many"):
        tapfinder.trace(TwoInputNet(), ((2, 3, 8, 8), (2, 5), (2, 5)))


def test_token_model_gets_token_layout_and_token_reduction():
    ids = torch.zeros(2, 12, dtype=torch.long)
    arch = tapfinder.trace(TinyTokenTransformer(), ids)
    embed = arch["embed"]
    assert embed["shape"] == (2, 12, 32) and embed["layout"] == "NLC"
    assert embed["channels"] == 32 and embed["spatial"] == (12,) and embed["reduction"] == 1.0
    attention = next(n for n in arch.graph if "scaled_dot_product" in arch[n]["target"])
    assert arch[attention]["shape"] == (2, 4, 12, 8)
    assert arch[attention]["layout"] is None  # heads are not channels


def test_wrong_rank_input_names_the_failing_node_and_shapes(small_net):
    with pytest.raises(ShapePropagationError) as caught:
        tapfinder.trace(small_net, (2, 3, 16))
    message = str(caught.value)
    assert "stem_conv" in message and "(2, 3, 16)" in message and "example_inputs" in message


def test_non_module_is_refused():
    with pytest.raises(InvalidInputError, match="expects a torch.nn.Module"):
        tapfinder.trace(lambda x: x, (1, 3))


def test_shapes_only_inputs_take_the_model_dtype():
    model = nn.Sequential(nn.Conv2d(3, 4, 3)).to(torch.bfloat16)
    arch = tapfinder.trace(model, (1, 3, 8, 8))
    assert arch["_0"]["dtype"] == "bfloat16"


class CpuTensorInForward(nn.Module):
    """Creates a CPU tensor inside forward: meta tensors cannot mix with it, fake ones can."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + torch.arange(x.shape[1] + 1).view(-1, 1, 1)


class ValueDependentLeaf(nn.Module):
    """A leaf whose output *shape* depends on values: only a real pass can tell."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[x > -1e9]


class NeedsRealValues(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.select = ValueDependentLeaf()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.select(self.conv(x))


def test_shape_modes_fall_back_from_meta_to_fake_to_real():
    assert tapfinder.trace(nn.Conv2d(3, 4, 1), (1, 3, 4, 4)).shape_mode == "meta"
    assert tapfinder.trace(CpuTensorInForward(), (1, 3, 4, 4)).shape_mode == "fake"
    arch = tapfinder.trace(NeedsRealValues(), (1, 3, 4, 4), leaf_modules=[ValueDependentLeaf])
    assert arch.shape_mode == "real" and arch["select"]["shape"] == (64,)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_tracing_never_changes_the_model(mode, small_net):
    small_net.train(mode == "train")
    small_net.stage1.register_forward_hook(lambda *args: None)
    before = snapshot(small_net)
    tapfinder.trace(small_net, (2, 3, 16, 16))
    assert_same(before, snapshot(small_net))


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_tracing_never_changes_a_model_with_an_auto_leaf_and_a_real_pass(mode):
    model = NeedsRealValues().train(mode == "train")
    model.select.register_forward_pre_hook(lambda *args: None)
    before = snapshot(model)
    rng = torch.random.get_rng_state()
    tapfinder.trace(model, (1, 3, 4, 4), leaf_modules=[ValueDependentLeaf])
    assert_same(before, snapshot(model))
    assert torch.equal(rng, torch.random.get_rng_state())


class SharedModuleNet(nn.Module):
    """One conv registered under two paths (as timm's CoaT shares its positional encoders), a
    branch on the input shape, and optionally a CPU tensor made in forward (forces fake mode)."""

    def __init__(self, cpu_constant: bool) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 1)
        self.first = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4))
        self.second = self.first
        self.cpu_constant = cpu_constant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.second(self.first(self.stem(x)))
        if x.shape[-1] % 2 == 0:
            x = x * 2
        if self.cpu_constant:
            x = x + torch.arange(x.shape[1]).view(-1, 1, 1)
        return x


@pytest.mark.parametrize("cpu_constant, expected_mode", [(False, "meta"), (True, "fake")])
def test_tracing_restores_modules_registered_under_two_paths(cpu_constant, expected_mode):
    model = SharedModuleNet(cpu_constant).train()
    before = snapshot(model)
    arch = tapfinder.trace(model, (1, 3, 8, 8))
    assert arch.shape_mode == expected_mode and arch.shape_guards
    assert_same(before, snapshot(model))
    model(torch.randn(1, 3, 8, 8))  # still runs on the CPU: no meta tensor was left behind


class LlamaLikeBlock(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.RMSNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)
        self.gate = nn.Linear(dim, hidden, bias=False)
        self.up = nn.Linear(dim, hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(self.norm(x)).chunk(3, dim=-1)
        x = x + self.out(torch.nn.functional.scaled_dot_product_attention(q, k, v))
        hidden = torch.nn.functional.silu(self.gate(x)) * self.up(x)
        return x + self.down(hidden)


class LlamaLike(nn.Module):
    def __init__(self, vocab=32000, dim=4096, hidden=11008, depth=32) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.blocks = nn.Sequential(*(LlamaLikeBlock(dim, hidden) for _ in range(depth)))
        self.head = nn.Linear(dim, vocab, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.embed(ids)))


def test_a_seven_billion_parameter_meta_model_traces_without_allocating_weights():
    with torch.device("meta"):
        model = LlamaLike()
    parameters = sum(p.numel() for p in model.parameters())
    assert parameters > 6.5e9
    gc.collect()
    rss_before = psutil.Process().memory_info().rss
    arch = tapfinder.trace(model, torch.zeros(1, 2048, dtype=torch.long))
    rss_growth = psutil.Process().memory_info().rss - rss_before
    assert arch["head"]["shape"] == (1, 2048, 32000)
    assert sum(a["params"] for _, a in arch.graph.nodes(data=True)) == parameters
    weight_bytes = parameters * 4
    assert rss_growth < weight_bytes / 100, f"RSS grew {rss_growth / 2**20:.0f} MiB"


class TokensBackOnTheGrid(nn.Module):
    """SegFormer's pattern: map -> tokens -> linear -> tokens laid back on the grid."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 8, 4, 4)
        self.mix = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = self.embed(x)
        tokens = self.mix(patches.flatten(2).transpose(1, 2))  # (B, L, C)
        channels_first = tokens.transpose(1, 2).reshape(patches.shape)  # NCL -> NCHW
        channels_last = tokens.reshape(x.shape[0], 4, 4, 8)  # NLC -> NHWC
        return channels_first.sigmoid(), channels_last.sigmoid()


def test_tokens_reshaped_back_onto_their_grid_get_a_map_layout():
    arch = tapfinder.trace(TokensBackOnTheGrid(), (2, 3, 16, 16))
    layouts = {arch[n]["layout"] for n in arch.outputs}
    assert layouts == {"NCHW", "NHWC"}, layouts
