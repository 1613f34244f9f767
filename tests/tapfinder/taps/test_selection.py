import warnings

import pytest
import torch

import tapfinder
from tapfinder.graph.structure import base_distance, decoder_scales
from tapfinder.taps.candidates import find_candidates
from tapfinder.taps.quality import tap_quality
from tapfinder.taps.selection import select_taps

tv = pytest.importorskip("torchvision.models")


@pytest.fixture(scope="module")
def resnet50():
    with torch.device("meta"):
        model = tv.resnet50().eval()
    arch = tapfinder.trace(model, (1, 3, 224, 224))
    return arch, find_candidates(arch)


@pytest.mark.parametrize("position, low, high", [("input", 0.0, 0.5), ("output", 0.5, 1.0),
                                                 ("central", 0.25, 0.75)])
def test_position_policy_keeps_taps_in_its_half(resnet50, position, low, high):
    arch, candidates = resnet50
    taps = select_taps(arch, candidates, k=3, position=position)
    assert len(taps) == 3
    assert all(low <= t.depth <= high for t in taps), [t.depth for t in taps]


def test_uniform_spreads_taps_over_the_depth(resnet50):
    arch, candidates = resnet50
    depths = [t.depth for t in select_taps(arch, candidates, k=3, position="uniform")]
    assert depths[0] < 0.34 and 0.33 < depths[1] < 0.67 and depths[2] > 0.66


@pytest.mark.parametrize("spacing", [1, 2, 5])
def test_taps_respect_the_minimum_spacing_in_bases(resnet50, spacing):
    arch, candidates = resnet50
    base = base_distance(arch)
    assert base == 6  # a bottleneck block: three convolutions and their norms
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # spacing 5 (30 layers) holds fewer than 4
        taps = select_taps(arch, candidates, k=4, spacing=spacing, position="uniform")
    indices = sorted(t.layer_index for t in taps)
    assert all(b - a >= spacing * base for a, b in zip(indices, indices[1:]))


def test_spacing_binds_on_resnet18():
    """In layers, spacing 1, 2 and 3 gave ResNet-18 the same taps: its block outputs lie 4
    layers apart. In bases (one basic block), each spacing gives other taps."""
    with torch.device("meta"):
        arch = tapfinder.trace(tv.resnet18(), (1, 3, 224, 224))
    assert base_distance(arch) == 4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # at spacing 3 the first half holds 2 taps, not 3
        chosen = {spacing: tuple(t.node for t in select_taps(arch, k=3, spacing=spacing,
                                                              position="input"))
                  for spacing in (1, 2, 3)}
    assert len(set(chosen.values())) == 3, chosen
    assert chosen[2] == ("relu", "layer1_1_relu_1", "layer2_1_relu_1")


def test_taps_are_real_tensor_nodes_with_their_reported_shape(resnet50):
    arch, candidates = resnet50
    for tap in select_taps(arch, candidates, k=5, position="uniform"):
        assert arch[tap.node]["value"] == "tensor" and arch[tap.node]["shape"] == tap.shape
        assert tap.reasons and tap.kinds and 0 < tap.score <= 1


def test_each_tap_says_what_it_beat(resnet50):
    arch, candidates = resnet50
    taps = select_taps(arch, candidates, k=3, spacing=6)
    assert any(t.beat for t in taps)
    explained = taps[0].explain()
    assert taps[0].node in explained and "beat nearby" in "\n".join(t.explain() for t in taps)


def test_each_tap_names_the_block_and_stage_it_closes(resnet50):
    arch, candidates = resnet50
    by_node = {t.node: t for t in select_taps(arch, candidates, k=4, position="uniform")}
    stage_ends = {node: tap for node, tap in by_node.items() if tap.closes in
                  ("layer1", "layer2", "layer3", "layer4")}
    assert stage_ends, by_node
    for tap in stage_ends.values():
        assert tap.stride == arch[tap.node]["reduction"]
        assert f"closes block {tap.closes}, in the stride-{tap.stride:g} stage" in tap.explain()


def test_fewer_taps_than_k_warns(resnet50):
    arch, candidates = resnet50
    with pytest.warns(UserWarning, match=r"Only .* of k=50 taps fit.*To get more, lower spacing, "
                                         r"lower k or use position='uniform'"):
        taps = select_taps(arch, candidates, k=50, spacing=10, position="input")
    assert 0 < len(taps) < 50


class SharedBlock(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.expand, self.reduce = torch.nn.Linear(16, 32), torch.nn.Linear(32, 16)
        self.norm = torch.nn.LayerNorm(16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.reduce(torch.nn.functional.gelu(self.expand(x))))


class SharedBlockNet(torch.nn.Module):
    """One block applied four times, as ALBERT shares its layer across the depth."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Linear(8, 16)
        self.layers = torch.nn.ModuleList([SharedBlock()])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        for _ in range(4):
            x = self.layers[0](x)
        return x


def test_a_block_shared_across_the_depth_is_a_block_per_call():
    from tapfinder.graph.structure import repeated_blocks

    arch = tapfinder.trace(SharedBlockNet(), (2, 10, 8))
    assert set(repeated_blocks(arch).values()) == {"layers.0", "layers.0@1", "layers.0@2",
                                                   "layers.0@3"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # three taps fit: no shortfall warning
        taps = select_taps(arch, k=3)
    assert len({repeated_blocks(arch).get(t.node) for t in taps}) == 3
    # Each call has its own output, which the tap closes and the quality measure counts.
    assert [t.closes for t in taps] == ["layers.0", "layers.0@1", "layers.0@2"]
    assert tap_quality(arch, taps).block_outputs == 3


class TwoSumBlock(torch.nn.Module):
    """A pre-norm transformer-like block: two residual units, so two candidate sums."""

    def __init__(self) -> None:
        super().__init__()
        nn = torch.nn
        self.mix = nn.Sequential(nn.LayerNorm(16), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 16))
        self.mlp = nn.Sequential(nn.LayerNorm(16), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mix(x)
        return x + self.mlp(x)


def test_the_fewer_taps_warning_names_repeated_blocks_that_held_candidates_back():
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), *[TwoSumBlock() for _ in range(4)])
    arch = tapfinder.trace(model, (2, 10, 8))
    with pytest.warns(UserWarning, match=r"3 candidates lie in a repeated block that already holds "
                                         r"a tap \(one tap per block\)\. To get more, lower k\.$"):
        taps = select_taps(arch, k=50, spacing=0)
    assert len({t.node for t in taps}) == len(taps) < 50


def test_spacing_zero_never_picks_a_node_twice(resnet50):
    arch, candidates = resnet50
    taps = select_taps(arch, candidates, k=12, spacing=0)
    assert len({t.node for t in taps}) == len(taps) == 12


@pytest.mark.parametrize("arguments, message", [
    ({"k": 0}, "k must be a positive integer"),
    ({"spacing": -1}, "spacing must be a non-negative"),
    ({"position": "middle"}, "position must be one of"),
])
def test_bad_arguments_are_refused(resnet50, arguments, message):
    arch, candidates = resnet50
    with pytest.raises(ValueError, match=message):
        select_taps(arch, candidates, **arguments)


def test_kinds_filter_restricts_the_evidence(resnet50):
    arch, candidates = resnet50
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        taps = select_taps(arch, candidates, k=3, kinds=["downsampling"])
    assert taps and all(t.kinds == ("downsampling",) for t in taps)


def test_kinds_whose_every_candidate_breaks_a_guard_say_which_guard(resnet50):
    arch, candidates = resnet50
    # A ResNet-50's channel compressions all lie inside its residual blocks.
    with pytest.warns(UserWarning, match=r"No tap: none of the \d+ candidates \(bottleneck\) may "
                                         r"be a tap; \d+ lie inside a residual unit"):
        assert select_taps(arch, candidates, k=3, kinds=["bottleneck"]) == []


def test_a_full_window_is_completed_by_the_nearest_candidates_outside_it():
    torchvision = pytest.importorskip("torchvision")
    with torch.device("meta"):
        vgg = torchvision.models.vgg11()
    arch = tapfinder.trace(vgg, (1, 3, 224, 224))
    with pytest.warns(UserWarning, match=r"1 of the 3 taps lie outside depths 0.0-0.5"):
        taps = select_taps(arch, k=3, spacing=2, position="input")  # no blocks: 2 layers
    depths = sorted(t.depth for t in taps)
    assert len(taps) == 3 and depths[1] <= 0.5 < depths[2]


def test_a_lone_layer_is_not_a_block_a_tap_closes():
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3),
                          nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3), nn.ReLU())
    arch = tapfinder.trace(model, (1, 3, 32, 32))
    taps = select_taps(arch, find_candidates(arch), k=2, spacing=1)
    assert taps and all(tap.closes is None for tap in taps), [(t.node, t.closes) for t in taps]


def test_layers_of_torch_transformer_encoder_are_blocks_with_one_tap_each():
    from support import TorchEncoderViT

    from tapfinder.graph.structure import repeated_blocks

    arch = tapfinder.trace(TorchEncoderViT(), (2, 3, 32, 32))
    assert set(repeated_blocks(arch).values()) == {f"encoder.layers.{i}" for i in range(4)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # three taps fit: no shortfall warning
        taps = select_taps(arch, find_candidates(arch), k=3)
    blocks = [repeated_blocks(arch).get(tap.node) for tap in taps]
    assert len(taps) == 3 and len([b for b in blocks if b]) == len({b for b in blocks if b}) >= 2


class _Residual(torch.nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        nn = torch.nn
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels),
                                  nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1),
                                  nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.body(x))


def test_a_tap_moves_to_another_resolution_when_one_stage_holds_most_of_the_depth():
    """Swin-S3-like proportions: a long early stage would take all three uniform taps."""
    nn = torch.nn
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Sequential(*[_Residual(8) for _ in range(10)]),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Sequential(_Residual(16)),
    )
    arch = tapfinder.trace(model, (2, 3, 64, 64))
    taps = select_taps(arch, find_candidates(arch), k=3)
    strides = [arch[tap.node]["reduction"] for tap in taps]
    assert strides[:2] == [4.0, 4.0] and strides[2] == 8.0, [(t.node, s) for t, s in zip(taps, strides)]


def test_the_first_tap_moves_to_an_earlier_stage_when_the_last_stage_holds_most_of_the_depth():
    """NesT- and ViTamin-like proportions: short stride-4 and stride-8 stages, then a long
    stride-16 one. Every uniform tap falls in the last stage; the first moves to the end of the
    stride-8 stage (it picked the stride-16 stage's first ReLU before), and says why."""
    nn = torch.nn

    def down(channels_in: int, channels_out: int, stride: int) -> list:
        return [nn.Conv2d(channels_in, channels_out, 3, stride=stride, padding=1),
                nn.BatchNorm2d(channels_out), nn.ReLU()]

    model = nn.Sequential(
        *down(3, 8, 4), nn.Sequential(_Residual(8)),
        *down(8, 16, 2), nn.Sequential(_Residual(16)),
        *down(16, 32, 2), nn.Sequential(*[_Residual(32) for _ in range(16)]),
    )
    arch = tapfinder.trace(model, (2, 3, 64, 64))
    taps = select_taps(arch, find_candidates(arch), k=3)
    strides = [arch[tap.node]["reduction"] for tap in taps]
    assert strides == [8.0, 16.0, 16.0], [(t.node, s) for t, s in zip(taps, strides)]
    assert taps[0].closes == "7"  # the stride-8 stage's one-block Sequential
    assert any("so that the taps read two resolutions" in reason for reason in taps[0].reasons)
    assert tap_quality(arch, taps).covers_resolutions


def test_a_conv_stem_is_no_stage_to_move_a_tap_to():
    """XCiT-like: strided convolutions down to stride 8, then every block at stride 8. The
    stem's strides hold one layer each, so the model has one stage and the taps stay in it."""
    from tapfinder.graph.structure import stage_strides

    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.GELU(),
                          nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.GELU(),
                          nn.Conv2d(8, 16, 3, stride=2, padding=1),
                          nn.Sequential(*[_Residual(16) for _ in range(6)]))
    arch = tapfinder.trace(model, (2, 3, 64, 64))
    assert stage_strides(arch) == {8}
    taps = select_taps(arch, find_candidates(arch), k=3)
    assert {arch[tap.node]["reduction"] for tap in taps} == {8.0}


class _Separable(torch.nn.Sequential):
    def __init__(self, channels: int) -> None:
        nn = torch.nn
        super().__init__(nn.Conv2d(channels, channels, 3, padding=1, groups=channels),
                         nn.Conv2d(channels, channels, 1))


class _XceptionLikeBlock(torch.nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.stack = torch.nn.Sequential()
        for i in (1, 2, 3):
            self.stack.add_module(f"conv{i}", _Separable(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.stack(x)


def test_numbered_names_are_blocks_outside_indexed_blocks_and_parts_inside_them():
    from tapfinder.graph.structure import repeated_blocks

    with torch.device("meta"):
        vit = tapfinder.trace(tv.vit_b_16(), (1, 3, 224, 224))
    assert set(repeated_blocks(vit).values()) == {
        f"encoder.layers.encoder_layer_{i}" for i in range(12)}
    xception = tapfinder.trace(torch.nn.Sequential(*[_XceptionLikeBlock(8) for _ in range(3)]),
                               (2, 8, 16, 16))
    assert set(repeated_blocks(xception).values()) == {"0", "1", "2"}


def test_a_u_net_taps_its_decoder_scales_finest_first_and_spreads_what_is_left():
    from support import TinyUNet

    arch = tapfinder.trace(TinyUNet(), (2, 3, 32, 32))
    blocks = ["up.0.body.1.act", "up.1.body.1.act", "up.2.body.1.act"]
    assert [t.module for t in select_taps(arch, k=3)] == blocks
    assert [t.module for t in select_taps(arch, k=1)] == blocks[-1:]
    five = select_taps(arch, k=5)
    assert len(five) == 5 and [t.module for t in five][-3:] == blocks
    assert all("decoder scale output" not in t.explain() for t in five[:2])
    # A base is one decoder scale: spacing 2 takes every other scale.
    assert [t.module for t in select_taps(arch, k=2, spacing=2)] == [blocks[0], blocks[2]]
    # The paper's position policies keep their meaning: depths, not decoder scales.
    assert all(t.depth <= 0.5 for t in select_taps(arch, k=3, position="input"))



def test_a_dpt_decoder_taps_its_fusion_outputs_though_the_next_scale_sums_onto_them():
    """A DPT fusion block's projection is read by the next block's sum, beside a skip that
    passed fewer layers: a residual branch's end by that test alone, but the decoder's own path."""
    from support import TinyDPT

    arch = tapfinder.trace(TinyDPT(), (2, 3, 32, 32))
    projections = [f"fusion.{i}.project" for i in (1, 2, 3)]  # fusion.0 joins nothing
    assert [arch[node]["module"] for node in decoder_scales(arch)] == projections
    assert [t.module for t in select_taps(arch, k=3)] == projections
    assert all("a decoder scale output" in t.explain() for t in select_taps(arch, k=3))
