"""Nodes that must never be taps (issue: taps a deep-supervision expert would pick)."""

import warnings

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import tapfinder
from tapfinder.taps.guards import guard_violations
from tapfinder.taps.selection import merge_candidates


class PaddedStem(nn.Module):
    """TF-"same" style: the input is zero-padded before the strided stem convolution."""

    def __init__(self) -> None:
        super().__init__()
        self.pad = nn.ZeroPad2d((0, 1, 0, 1))
        self.stem = nn.Conv2d(3, 8, 3, 2)
        self.body = nn.Sequential(nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 16, 3, 2, 1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(F.relu(self.stem(self.pad(x))))


class Windows(nn.Module):
    """Swin-like: 2x2 windows folded into the batch axis, attention-free mixing, unfolded."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.ReLU())
        self.mix = nn.Conv2d(8, 8, 3, 1, 1)
        self.down = nn.Sequential(nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 16, 3, 2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        b, c, h, w = x.shape
        windows = x.reshape(b, c, 2, h // 2, 2, w // 2).permute(0, 2, 4, 1, 3, 5)
        windows = self.mix(windows.reshape(b * 4, c, h // 2, w // 2))
        x = windows.reshape(b, 2, 2, c, h // 2, w // 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)
        return self.down(x)


class ClassToken(nn.Module):
    """A (B, 1, C) class-token projection beside the patch tokens."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 16, 4, 4)
        self.token = nn.Parameter(torch.zeros(1, 1, 16))
        self.token_proj = nn.Linear(16, 16)
        self.blocks = nn.Sequential(nn.Linear(16, 16), nn.GELU(), nn.Linear(16, 16), nn.GELU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = self.embed(x).flatten(2).transpose(1, 2)
        token = self.token_proj(self.token.expand(x.shape[0], -1, -1))
        return self.blocks(torch.cat([token, patches], dim=1))


class NormChecksShape(nn.Module):
    """A conv whose output a traced-through norm reads (.shape) and normalises, as timm's
    BatchNormAct2d does: the conv's raw output must not be the tap."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, 2, 1)
        self.weight = nn.Parameter(torch.ones(8))
        self.bias = nn.Parameter(torch.zeros(8))
        self.body = nn.Sequential(nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        assert y.dim() == 4
        y = F.relu(F.group_norm(y, 2, self.weight, self.bias))
        return self.body(y)


class ReducedAttention(nn.Module):
    """SegFormer-style efficient attention: keys and values from a spatially reduced map, so the
    score matrix (N, N / 16) is not square."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.q = nn.Linear(channels, channels)
        self.sr = nn.Conv2d(channels, channels, 4, 4)
        self.kv = nn.Linear(channels, 2 * channels)
        self.proj = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        reduced = self.sr(x).flatten(2).transpose(1, 2)
        k, v = self.kv(reduced).chunk(2, dim=-1)
        scores = (self.q(tokens) @ k.transpose(1, 2)) * c ** -0.5
        out = self.proj(scores.softmax(dim=-1) @ v)
        return out.transpose(1, 2).reshape(b, c, h, w)


class EfficientAttentionNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU())
        self.attn = ReducedAttention(16)
        self.head = nn.Sequential(nn.Conv2d(16, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 4, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.attn(self.stem(x)))


class PartialConvBlock(nn.Module):
    """FasterNet-style: the block's input is split (a tuple, not a tensor, consumes it) and also
    added back: it feeds the block's own path, so it is no shortcut."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU())
        self.partial = nn.Conv2d(4, 4, 3, 1, 1)
        self.mlp = nn.Sequential(nn.Conv2d(8, 8, 1), nn.ReLU(), nn.Conv2d(8, 8, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        mixed, kept = torch.split(x, [4, 4], dim=1)
        return x + self.mlp(torch.cat([self.partial(mixed), kept], dim=1))


def taps_and_violations(model: nn.Module, shape: tuple[int, ...], k: int = 3):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arch = tapfinder.trace(model, shape)
        taps = tapfinder.select_taps(arch, k=k, spacing=1, position="uniform")
    return arch, taps


def test_the_padded_input_is_never_a_tap():
    arch, taps = taps_and_violations(PaddedStem(), (2, 3, 32, 32))
    assert guard_violations(arch, "pad") and "no parametric layer before it" in guard_violations(arch, "pad")
    assert "pad" not in [t.node for t in taps] and taps


def candidate_nodes(arch) -> set[str]:
    return {e.node for e in merge_candidates(arch, tapfinder.find_candidates(arch))}


def test_windows_folded_into_the_batch_axis_are_never_taps():
    arch, taps = taps_and_violations(Windows(), (2, 3, 16, 16))
    assert any("not the batch" in v for v in guard_violations(arch, "mix"))
    assert all(arch[n]["shape"][0] == 2 for n in candidate_nodes(arch))
    assert all(arch[t.node]["shape"][0] == 2 for t in taps)


def test_a_single_token_is_never_a_tap():
    arch, taps = taps_and_violations(ClassToken(), (2, 3, 16, 16))
    assert "a single position" in guard_violations(arch, "token_proj")
    assert "token_proj" not in candidate_nodes(arch) | {t.node for t in taps}


def test_a_convolution_is_read_at_the_end_of_its_norm_and_activation():
    arch, taps = taps_and_violations(NormChecksShape(), (2, 3, 32, 32), k=2)
    assert "read before its normalisation" in guard_violations(arch, "conv")
    assert "conv" not in [t.node for t in taps]
    assert "relu" in [t.node for t in taps]  # the chain's end


def test_nothing_strictly_inside_an_attention_computation_is_a_tap():
    arch, taps = taps_and_violations(EfficientAttentionNet(), (2, 3, 32, 32), k=3)
    assert "inside an attention computation" in guard_violations(arch, "attn_sr")
    assert "inside an attention computation" in guard_violations(arch, "attn_q")
    output = [n for n, a in arch.graph.nodes(data=True) if a["module"] == "attn"][-1]
    assert "inside an attention computation" not in guard_violations(arch, output)
    assert not any(n.startswith("attn_") and n != output for n in candidate_nodes(arch))


tv = pytest.importorskip("torchvision.models")


BRANCH_END = "a residual branch's end, before its sum"


def test_neither_input_of_a_residual_sum_is_a_tap_the_sum_is():
    arch, _ = taps_and_violations(tv.resnet18(), (2, 3, 64, 64))
    assert "a shortcut into a residual sum" in guard_violations(arch, "layer2_0_downsample_1")
    assert BRANCH_END in guard_violations(arch, "layer2_0_bn2")  # P(x) + f(x)
    assert BRANCH_END in guard_violations(arch, "layer1_0_bn2")  # x + f(x)
    assert guard_violations(arch, "layer1_0_relu_1") == []  # the block's output
    # Before these guards, the projection shortcuts and the branch ends were candidates.
    assert not any("downsample" in node or "bn2" in node for node in candidate_nodes(arch))


def test_an_attention_branch_end_is_no_tap_but_tokens_plus_a_position_embedding_are():
    arch, _ = taps_and_violations(tv.vit_b_16(), (2, 3, 224, 224))
    assert BRANCH_END in guard_violations(arch, "encoder_layers_encoder_layer_0_dropout")
    assert guard_violations(arch, "add_1") == []  # the attention's residual sum
    # The position embedding is a parameter, not a skip: the tokens it is added to may be taps.
    assert guard_violations(arch, "cat") == []


def test_a_block_input_that_is_also_split_is_no_shortcut():
    arch, _ = taps_and_violations(PartialConvBlock(), (2, 3, 16, 16))
    assert "a shortcut into a residual sum" not in guard_violations(arch, "stem_2")


@pytest.mark.parametrize("build", [tv.resnet18, tv.efficientnet_b0, tv.swin_t, tv.vit_b_16,
                                   tv.mobilenet_v3_large, tv.convnext_tiny])
@pytest.mark.parametrize("position", ["input", "uniform"])
def test_default_taps_on_the_zoo_break_no_guard(build, position):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arch = tapfinder.trace(build(), (2, 3, 224, 224))
        taps = tapfinder.select_taps(arch, k=3, position=position)
    assert len(taps) == 3
    assert {t.node: guard_violations(arch, t.node) for t in taps} == {t.node: [] for t in taps}


@pytest.mark.parametrize("position", ["input", "uniform"])
def test_at_most_one_tap_per_repeated_block(position):
    from tapfinder.graph.structure import repeated_blocks

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arch = tapfinder.trace(tv.mobilenet_v2(), (2, 3, 224, 224))
        taps = tapfinder.select_taps(arch, k=3, position=position)
    blocks = repeated_blocks(arch)
    assert blocks["features_2_conv_0_2"] == blocks["features_2_conv_1_2"] == "features.2"
    chosen = [blocks.get(t.node) for t in taps]
    assert len(taps) == 3 and len(set(chosen)) == len(chosen), chosen  # was features.2 twice


class _LayerScaledBlock(torch.nn.Module):
    """A pre-norm MLP block with Dinov2's layer scale: ``x + gamma * fc2(act(fc1(norm(x))))``."""

    def __init__(self, width: int) -> None:
        super().__init__()
        nn = torch.nn
        self.norm, self.fc1, self.fc2 = nn.LayerNorm(width), nn.Linear(width, width), nn.Linear(
            width, width)
        self.gamma = nn.Parameter(torch.full((width,), 0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(torch.relu(self.fc1(self.norm(x)))) * self.gamma


def test_a_layer_scaled_branch_end_moves_to_its_scale_and_is_no_tap():
    from tapfinder.graph.structure import canonical_node

    model = torch.nn.Sequential(torch.nn.Linear(8, 16), *[_LayerScaledBlock(16) for _ in range(4)])
    arch = tapfinder.trace(model, (2, 10, 8))
    assert canonical_node(arch, "_1_fc2") == "mul"  # through gamma: a parameter, no second input
    assert BRANCH_END in guard_violations(arch, "mul")
    taps = tapfinder.select_taps(arch, k=3)
    assert all(arch[tap.node]["target"] == "operator.add" for tap in taps), [t.node for t in taps]
