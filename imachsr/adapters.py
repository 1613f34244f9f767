"""Dimension adapters ``g_m``: map a tap's features to class logits so they can meet the labels.

Built from the traced shape and layout of each tap:

- ``NCHW`` / ``NCDHW`` / ``NCL`` feature maps: a 1x1 convolution to ``num_classes`` channels;
- ``NHWC`` channels-last maps (Swin, ConvNeXt blocks): a linear layer on the channels, then the
  result is laid out channels-first;
- ``NLC`` tokens: a linear layer, then the tokens are laid back on their grid (leading class or
  register tokens dropped) when the grid follows from the input size;
- classification (labels ``(B,)``): features are averaged over positions first, then a linear
  layer gives ``(B, num_classes)``.

``capacity="head"`` puts a small hidden layer in front of that projection, as mmsegmentation's
auxiliary FCN head does: a 3x3 convolution, BatchNorm and ReLU for channels-first maps, a linear
layer, LayerNorm and GELU for channels-last maps and tokens. The auxiliary objective then need not
make the tap's own features linearly class-separable. Its width is the tap's channels, at most
``head_width``: the 3x3 convolution's cost grows with both, and on a high-resolution tap with
many channels it can rival the backbone's own. Two cheaper hidden layers for channels-first maps
(for channels-last maps and tokens both are the head, whose hidden layer is already per
position):

- ``capacity="pointwise"``: a 1x1 convolution instead of the 3x3, a ninth of its arithmetic and
  no spatial context;
- ``capacity="separable"``: a depthwise 3x3 convolution, then the 1x1: the 3x3's spatial context
  at about the 1x1's arithmetic (MobileNet's separable convolution).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
from torch import nn

from tapfinder import ArchGraph
from tapfinder.graph.tokens import token_grid

__all__ = ["DimensionAdapter", "build_adapters", "adapters_for", "token_grid", "AdapterKind",
           "CAPACITIES", "HEAD_WIDTH"]

AdapterKind = Literal["linear", "head", "pointwise", "separable"]
CAPACITIES: tuple[AdapterKind, ...] = ("linear", "head", "pointwise", "separable")
HEAD_WIDTH = 256  # default hidden width of a head: the tap's channels, at most this


class DimensionAdapter(nn.Module):
    """Maps one tap's features to logits: ``(B, K, *grid)`` for dense labels, ``(B, K)`` when
    ``pool`` is set (classification)."""

    def __init__(
        self,
        layout: str | None,
        channels: int,
        num_classes: int,
        *,
        pool: bool = False,
        grid: tuple[int, int, int] | None = None,
        capacity: str = "linear",
        head_width: int = HEAD_WIDTH,
    ) -> None:
        super().__init__()
        if capacity not in CAPACITIES:
            raise ValueError(f"capacity must be one of {', '.join(CAPACITIES)}; got {capacity!r}.")
        check_head_width(head_width)
        self.layout = layout
        self.pool = pool
        self.grid = grid
        spatial_dims = {"NCL": 1, "NCHW": 2, "NCDHW": 3}.get(layout or "", 0)
        dense = bool(spatial_dims) and not pool
        hidden = capacity != "linear"
        width = min(channels, head_width) if hidden else channels
        layers: list[nn.Module] = []
        if dense:
            convolution = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[spatial_dims - 1]
            if hidden:
                norm = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)[spatial_dims - 1]
                if capacity == "separable":
                    layers.append(convolution(channels, channels, kernel_size=3, padding=1,
                                              groups=channels, bias=False))
                kernel = 3 if capacity == "head" else 1
                layers += [convolution(channels, width, kernel_size=kernel, padding=kernel // 2,
                                       bias=False), norm(width), nn.ReLU(inplace=True)]
            layers.append(convolution(width, num_classes, kernel_size=1))
        else:
            if hidden:
                layers += [nn.Linear(channels, width), nn.LayerNorm(width), nn.GELU()]
            layers.append(nn.Linear(width, num_classes))
        bias = layers[-1].bias
        if isinstance(bias, torch.Tensor):  # the classifier starts unbiased
            nn.init.zeros_(bias)
        self.project = layers[0] if len(layers) == 1 else nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embed(features))

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """The head's hidden features (the tap's own for a ``"linear"`` adapter), laid out as
        the logits are: ``(B, D, *grid)`` for dense labels, ``(B, D)`` when pooled. Pixel
        contrast (``mi="contrast"``) compares pixels in this space."""
        layout = self.layout
        if self.pool:
            if features.dim() > 2 and layout in ("NHWC", "NLC"):
                features = features.flatten(1, -2).mean(dim=1)
            elif features.dim() > 2:
                features = features.flatten(2).mean(dim=2)
            return self._body(features)
        if layout == "NHWC":
            return self._body(features).permute(0, 3, 1, 2)
        if layout == "NLC":
            if self.grid is None:
                raise ValueError("a token adapter needs the token grid it was built with.")
            extra, height, width = self.grid
            if features.shape[1] != extra + height * width:
                raise ValueError(
                    f"This adapter lays {extra} + {height}x{width} tokens on a grid, as traced, "
                    f"but got {features.shape[1]} tokens: the input size changed. Build the "
                    "scheme with example_inputs of the size you train on (fixed-size crops)."
                )
            hidden = self._body(features[:, extra:])
            return hidden.transpose(1, 2).reshape(hidden.shape[0], -1, height, width)
        return self._body(features)

    def _body(self, features: torch.Tensor) -> torch.Tensor:
        """Every layer but the last (none for a single layer), without building a module per
        call as slicing the Sequential would on every training step."""
        if isinstance(self.project, nn.Sequential):
            for layer in list(self.project)[:-1]:
                features = layer(features)
        return features

    def classify(self, embedding: torch.Tensor) -> torch.Tensor:
        """Logits from :meth:`embed`'s output: the adapter's last layer, a 1x1 convolution or
        a linear layer over the channel dimension 1."""
        last = self.project[-1] if isinstance(self.project, nn.Sequential) else self.project
        if isinstance(last, nn.Linear) and embedding.dim() > 2:
            return last(embedding.movedim(1, -1)).movedim(-1, 1)
        return last(embedding)


def build_adapters(
    arch: ArchGraph, taps: list[str], num_classes: int, *, pool: bool = False,
    capacity: str = "linear", head_width: int = HEAD_WIDTH,
) -> nn.ModuleDict:
    """One :class:`DimensionAdapter` per tap, keyed by :func:`adapter_key`, from the traced shapes;
    ``capacity`` is ``"linear"`` (a 1x1 convolution or linear layer), ``"head"`` (a hidden
    layer of the tap's channels, at most ``head_width``, first), ``"pointwise"`` (the same
    hidden layer through a 1x1 convolution) or ``"separable"`` (through a depthwise 3x3
    convolution and a 1x1).

    Raises
    ------
    ValueError
        For a tap whose features cannot become per-position logits (a vector, tokens without a
        grid, an unknown layout), naming the tap and what to do.
    """
    image_size = next(
        (arch[name]["spatial"] for name in arch.inputs if arch[name]["spatial"]), None
    )
    described = {name: (arch[name]["layout"], arch[name]["shape"]) for name in taps}
    return adapters_for(described, num_classes, image_size, pool=pool, capacity=capacity,
                        head_width=head_width)


def adapters_for(
    taps: Mapping[str, tuple[str | None, tuple[int, ...]]], num_classes: int,
    image_size: tuple[int, ...] | None, *, pool: bool = False, capacity: str = "linear",
    head_width: int = HEAD_WIDTH,
) -> nn.ModuleDict:
    """:func:`build_adapters` from each tap's ``(layout, shape)`` and the input's spatial size,
    for taps known without a trace (forward hooks)."""
    adapters = nn.ModuleDict()
    for name, (layout, shape) in taps.items():
        grid = None
        if layout is None and len(shape) == 2:
            if not pool:
                raise ValueError(
                    f"Tap {name!r} is a vector {shape}: it has no positions to compare with "
                    "dense labels. Tap an earlier feature map, or train a classifier (labels (B,))."
                )
            layout = "NC"
        elif layout is None:
            raise ValueError(
                f"Tap {name!r} {shape} has no known layout (channels-first map, channels-last "
                "map or token sequence), so no adapter can be built for it; choose another tap."
            )
        if layout == "NLC" and not pool:
            grid = token_grid(shape[1], tuple(image_size or ()))
            if grid is None:
                raise ValueError(
                    f"Tap {name!r} holds {shape[1]} tokens that do not form a grid with the "
                    f"input's aspect ratio {image_size}; choose another tap or use labels (B,)."
                )
        channels = shape[1] if layout.startswith("NC") else shape[-1]
        adapters[adapter_key(name)] = DimensionAdapter(layout, channels, num_classes, pool=pool,
                                                       grid=grid, capacity=capacity,
                                                       head_width=head_width)
    return adapters


def check_head_width(head_width: int) -> None:
    """Refuse a ``head_width`` that is not a positive integer, saying what it is."""
    if isinstance(head_width, bool) or not isinstance(head_width, int) or head_width < 1:
        raise ValueError(f"head_width must be a positive integer (hidden channels of a head "
                         f"adapter); got {head_width!r}.")


def adapter_key(tap: str) -> str:
    """The tap's key in the adapters' ``ModuleDict``: a module path's dots become slashes
    (``nn.ModuleDict`` refuses dots; fx node names have neither)."""
    return tap.replace(".", "/")
