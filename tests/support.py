"""What several test modules share: small purpose-built models that exercise tracing's hard
cases and the scheme's objective, and snapshots of everything about a model that analysis and
failed calls must leave alone. Test modules import it as ``support`` (pytest puts ``tests/`` on
the path through ``tests/conftest.py``)."""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import nn
from torch.nn import functional as F

# --- models ----------------------------------------------------------------------------------


class ConvBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class ValueDependentGate(nn.Module):
    """Branches on tensor *values*: fx cannot trace it symbolically."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.scale = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.mean() > 0:
            return self.scale(x)
        return x


class SmallNet(nn.Module):
    """A three-stage CNN with BatchNorm, a residual add and a classifier."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = ConvBlock(3, 8)
        self.stage1 = ConvBlock(8, 16, stride=2)
        self.stage2 = ConvBlock(16, 16)
        self.stage3 = ConvBlock(16, 32, stride=2)
        self.head = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.stage1(x)
        x = x + self.stage2(x)
        x = self.stage3(x)
        return self.head(x.mean(dim=(2, 3)))


class GatedNet(SmallNet):
    """SmallNet with a value-dependent submodule that must become an auto-leaf."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = ValueDependentGate(16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage1(self.stem(x))
        x = self.gate(x)
        return self.head(self.stage3(x).mean(dim=(2, 3)))


class RootBranchNet(nn.Module):
    """Value-dependent control flow in the root's own forward: no leaf can rescue it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # the line the error must name
            return self.conv(x)
        return x


class ShapeCheckNet(nn.Module):
    """Validates its input size in the root forward, as segmentation models do."""

    def __init__(self) -> None:
        super().__init__()
        self.body = ConvBlock(3, 4, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 2 != 0:
            raise ValueError("width must be even")
        return self.body(x)


class TwoInputNet(nn.Module):
    """An image and a vector, fused; returns a dict and a tuple."""

    def __init__(self) -> None:
        super().__init__()
        self.image = ConvBlock(3, 8, stride=2)
        self.vector = nn.Linear(5, 8)

    def forward(self, image: torch.Tensor, vector: torch.Tensor) -> dict:
        features = self.image(image)
        fused = features + self.vector(vector)[:, :, None, None]
        return {"fused": fused, "pair": (features, vector)}


class TinyTokenTransformer(nn.Module):
    """Token ids -> embedding -> pre-norm attention blocks -> logits, all (B, N, C)."""

    def __init__(self, vocab: int = 50, dim: int = 32, depth: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.blocks = nn.ModuleList(TokenBlock(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids)
        for block in self.blocks:
            x = block(x)
        return self.out(self.norm(x))


class TokenBlock(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(batch, tokens, 3, self.heads, dim // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attended = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        x = x + self.proj(attended.transpose(1, 2).reshape(batch, tokens, dim))
        return x + self.mlp(self.norm2(x))


class TorchEncoderViT(nn.Module):
    """Patch embedding, then torch's own ``nn.TransformerEncoder`` (post-norm layers, dropout),
    then mean pooling and a classifier: a ViT written with the standard library's layers."""

    def __init__(self, dim: int = 32, depth: int = 4, classes: int = 10) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 8, 8)
        self.position = nn.Parameter(torch.zeros(1, 16, dim))
        layer = nn.TransformerEncoderLayer(dim, 4, 2 * dim, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch(x).flatten(2).transpose(1, 2) + self.position
        return self.head(self.encoder(tokens).mean(1))


class TinySegmenter(nn.Module):
    """Encoder (two strided stages) and a head upsampling to the input size."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU())
        self.down = nn.Sequential(nn.Conv2d(8, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU())
        self.head = nn.Conv2d(16, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.head(self.down(self.stem(x))), size=x.shape[-2:], mode="bilinear")


ENCODER_WIDTHS = (8, 16, 32, 64)


def four_scale_encoder() -> nn.ModuleList:
    """Stages at strides 1, 2, 4 and 8 with ENCODER_WIDTHS channels: the encoder of the tiny
    U-Net, DPT and FPN below."""
    return nn.ModuleList([ConvBlock(3, ENCODER_WIDTHS[0])] + [
        nn.Sequential(nn.MaxPool2d(2), ConvBlock(a, b)) for a, b in pairwise(ENCODER_WIDTHS)])


class UpBlock(nn.Module):
    """A U-Net decoder block: upsample, join the skip, two convolutions on the join."""

    def __init__(self, channels_in: int, skip: int, channels_out: int, join: str) -> None:
        super().__init__()
        self.join = join
        # A sum needs the skip's width: a 1x1 brings the coarser map to it first (LinkNet-like).
        self.reduce = nn.Identity() if join == "cat" else nn.Conv2d(channels_in, skip, 1)
        width = channels_in + skip if join == "cat" else skip
        self.body = nn.Sequential(ConvBlock(width, channels_out),
                                  ConvBlock(channels_out, channels_out))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = nn.functional.interpolate(self.reduce(x), scale_factor=2.0)
        x = torch.cat([x, skip], dim=1) if self.join == "cat" else x + skip
        return self.body(x)


class TinyUNet(nn.Module):
    """Four scales down, ``levels`` decoder blocks back up (cat or sum skips)."""

    def __init__(self, levels: int = 3, join: str = "cat") -> None:
        super().__init__()
        widths = ENCODER_WIDTHS
        self.down = four_scale_encoder()
        self.up = nn.ModuleList([UpBlock(widths[i + 1], widths[i], widths[i], join)
                                 for i in reversed(range(3))][:levels])
        self.head = nn.Conv2d(widths[3 - levels], 5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for stage in self.down:
            x = stage(x)
            skips.append(x)
        x = skips.pop()
        for block in self.up:
            x = block(x, skips.pop())
        return self.head(x)


class FusionBlock(nn.Module):
    """A DPT fusion block: the skip, refined, is added to the coarser fused map; a convolution
    on the sum, an upsampling and a 1x1 projection, which the next block's sum reads."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.refine = ConvBlock(width, width)
        self.body = ConvBlock(width, width)
        self.project = nn.Conv2d(width, width, 1)

    def forward(self, skip: torch.Tensor, previous: torch.Tensor | None = None) -> torch.Tensor:
        x = self.refine(skip)
        if previous is not None:
            x = x + previous
        x = nn.functional.interpolate(self.body(x), scale_factor=2.0)
        return self.project(x)


class TinyDPT(nn.Module):
    """Four scales down, each brought to one width, then fusion blocks from the coarsest:
    a U-shaped decoder whose joins are sums with the decoder's own path as the deeper input."""

    def __init__(self) -> None:
        super().__init__()
        widths = ENCODER_WIDTHS
        self.down = four_scale_encoder()
        self.reassemble = nn.ModuleList([nn.Conv2d(w, 16, 1) for w in widths])
        self.fusion = nn.ModuleList([FusionBlock(16) for _ in widths])
        self.head = nn.Conv2d(16, 5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = []
        for stage, reassemble in zip(self.down, self.reassemble):
            x = stage(x)
            features.append(reassemble(x))
        fused = None
        for block, feature in zip(self.fusion, features[::-1]):
            fused = block(feature, fused)
        return self.head(fused)


class TinyFPN(nn.Module):
    """An FPN: top-down sums with nothing computed on them before the next one, then one
    convolution per level and a merge."""

    def __init__(self) -> None:
        super().__init__()
        widths = ENCODER_WIDTHS
        self.down = four_scale_encoder()
        self.lateral = nn.ModuleList([nn.Conv2d(w, 16, 1) for w in widths])
        self.smooth = nn.ModuleList([nn.Conv2d(16, 16, 3, padding=1) for _ in widths])
        self.head = nn.Conv2d(16, 5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = []
        for stage in self.down:
            x = stage(x)
            features.append(x)
        top = self.lateral[3](features[3])
        levels = [top]
        for index in (2, 1, 0):
            top = self.lateral[index](features[index]) + nn.functional.interpolate(
                top, scale_factor=2.0)
            levels.append(top)
        size = features[0].shape[-2:]
        merged = sum(nn.functional.interpolate(smooth(level), size=size)
                     for smooth, level in zip(self.smooth, levels))
        return self.head(merged)


def batch(classes: int = 3, size: int = 16):
    torch.manual_seed(0)
    x = torch.randn(2, 3, size, size)
    y = torch.randint(0, classes, (2, size, size))
    y[0, :3] = 255
    return x, y


# --- model state -----------------------------------------------------------------------------


def _describe(value: object) -> object:
    """What an attribute holds, deeply enough to see a cache being filled: containers by their
    items (tensors by identity), everything else by identity."""
    if isinstance(value, dict):
        return ("dict", [(key, _describe(item)) for key, item in value.items()])
    if isinstance(value, (list, tuple, set)):
        return (type(value).__name__, [_describe(item) for item in value])
    if isinstance(value, (str, int, float, bool, type(None))):
        return value
    return ("object", id(value))


def snapshot(model: nn.Module) -> dict:
    """Flags, state values and identities, devices, dtypes, every module's attributes (caches
    included), hooks and the CPU random-number state."""
    return {
        "training": [m.training for m in model.modules()],
        "state": {k: v.clone() for k, v in model.state_dict(keep_vars=True).items()},
        "tensors": [id(t) for t in [*model.parameters(), *model.buffers()]],
        "devices": {t.device for t in model.state_dict().values()},
        "dtypes": [t.dtype for t in model.state_dict().values()],
        "attributes": [sorted(vars(m)) for m in model.modules()],
        "attribute_values": [
            {key: _describe(value) for key, value in vars(m).items()
             if key not in ("_parameters", "_buffers", "_modules")}  # compared as "state" above
            for m in model.modules()
        ],
        "hooks": [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()],
        "rng": torch.get_rng_state(),
    }


def assert_same(before: dict, after: dict) -> None:
    """Fail naming the first part of two snapshots that differs."""
    assert before.keys() == after.keys()
    for key in before:
        if key == "rng":
            assert torch.equal(before["rng"], after["rng"]), "the random-number state changed"
        elif key == "state":
            assert before["state"].keys() == after["state"].keys()
            for name, value in before["state"].items():
                assert torch.equal(value, after["state"][name]), name
        elif key == "attribute_values":
            for index, (old, new) in enumerate(zip(before[key], after[key])):
                changed = sorted(k for k in {*old, *new} if old.get(k) != new.get(k))
                assert not changed, f"module {index} attributes {changed} changed"
        else:
            assert before[key] == after[key], key
