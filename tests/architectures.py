"""Small purpose-built models that exercise tracing's hard cases."""

from __future__ import annotations

import torch
from torch import nn


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
