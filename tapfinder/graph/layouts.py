"""Infer each tensor's memory layout (``NCHW``, ``NHWC``, ``NLC`` ...) from neighbouring layers.

A ``(B, 56, 56, 96)`` tensor is a channels-last feature map in Swin or ConvNeXt and a batch of
56 images of 56x96 elsewhere: the shape alone cannot tell. The layers around a tensor can. A
convolution, batch norm or 2-D pooling reads and writes channels first; a linear layer or layer
norm works on the last dimension. Those layers anchor layouts, and the anchors spread along the
graph: unchanged through shape-preserving operations, transformed through ``permute``,
``transpose`` and ``flatten``. Tensors that no anchor reaches (attention score matrices, reshaped
heads) get ``None`` rather than a guess.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping

import torch
from torch import fx, nn
from torch.nn import functional as F

from ..capture.shape_propagation import ValueInfo

__all__ = ["infer_layouts", "KNOWN_LAYOUTS"]

KNOWN_LAYOUTS = {"NCL", "NCHW", "NCDHW", "NLC", "NHWC"}

_CHANNELS_FIRST_BY_RANK = {3: "NCL", 4: "NCHW", 5: "NCDHW"}
_CHANNELS_LAST_BY_RANK = {3: "NLC", 4: "NHWC"}

_CHANNELS_FIRST_MODULES = (
    nn.modules.conv._ConvNd,
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.GroupNorm,
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.PixelShuffle,
    nn.PixelUnshuffle,
    nn.Upsample,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
)
_CHANNELS_LAST_MODULES = (nn.Linear, nn.LayerNorm, nn.MultiheadAttention, nn.Embedding)

_CHANNELS_FIRST_FUNCTIONS = {
    F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d,
    F.batch_norm, F.group_norm, F.instance_norm,
    F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
    F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d,
    F.interpolate, F.pixel_shuffle, F.pixel_unshuffle, F.grid_sample,
    torch.conv2d, torch.batch_norm, torch.max_pool2d, torch.avg_pool1d, torch.pixel_shuffle,
}
_CHANNELS_LAST_FUNCTIONS = {F.linear, F.layer_norm, F.embedding, torch.layer_norm}

# Operations whose output keeps the layout of their first input of the same rank.
_RESHAPING_METHODS = {"view", "reshape", "unsqueeze", "squeeze", "expand", "unflatten", "unbind",
                      "chunk", "split", "unfold", "flatten", "permute", "transpose"}
_RESHAPING_FUNCTIONS = {torch.reshape, torch.unsqueeze, torch.squeeze, torch.matmul, torch.bmm,
                        torch.einsum, operator.matmul, torch.flatten, torch.permute,
                        torch.transpose, torch.unbind, torch.chunk, torch.split, operator.getitem}


def infer_layouts(
    nodes: list[fx.Node], infos: Mapping[str, ValueInfo], modules: Mapping[str, nn.Module]
) -> dict[str, str | None]:
    """Return the inferred layout of every node (``None`` where unknown or not a tensor).

    Parameters
    ----------
    nodes
        The graph's nodes in topological order.
    infos
        Each node's :class:`~tapfinder.capture.shape_propagation.ValueInfo`.
    modules
        ``dict(graph_module.named_modules())``, to look up the modules that ``call_module`` nodes
        call.
    """
    layouts: dict[str, str | None] = {n.name: None for n in nodes}
    rank = {n.name: len(infos[n.name].shape) for n in nodes if infos[n.name].kind == "tensor"}

    for node in nodes:
        anchor = _anchor(node, modules)
        if anchor is None:
            continue
        for name in [node.name, *(a.name for a in node.all_input_nodes)]:
            if name in rank and layouts[name] is None:
                layouts[name] = anchor.get(rank[name])

    for _ in range(2):
        for node in nodes:
            if node.name in rank and layouts[node.name] is None:
                layouts[node.name] = _from_inputs(node, layouts, infos, rank)
        for node in reversed(nodes):
            if node.name in rank and layouts[node.name] is None:
                layouts[node.name] = _from_same_shape_users(node, layouts, infos)
    return layouts


def _anchor(node: fx.Node, modules: Mapping[str, nn.Module]) -> dict[int, str] | None:
    if node.op == "call_module":
        module = modules.get(str(node.target))
        if isinstance(module, _CHANNELS_FIRST_MODULES):
            return _CHANNELS_FIRST_BY_RANK
        if isinstance(module, _CHANNELS_LAST_MODULES):
            return _CHANNELS_LAST_BY_RANK
    elif node.op == "call_function":
        if node.target in _CHANNELS_FIRST_FUNCTIONS:
            return _CHANNELS_FIRST_BY_RANK
        if node.target in _CHANNELS_LAST_FUNCTIONS:
            return _CHANNELS_LAST_BY_RANK
    return None


def _from_inputs(
    node: fx.Node,
    layouts: Mapping[str, str | None],
    infos: Mapping[str, ValueInfo],
    rank: Mapping[str, int],
) -> str | None:
    inputs = [a for a in node.all_input_nodes if a.name in rank]
    if not inputs:
        return None
    source = inputs[0]
    source_layout = layouts[source.name]
    if source_layout is None:
        return None
    method = node.target if node.op == "call_method" else None
    if method in ("permute", "transpose") or node.target in (torch.permute, torch.transpose):
        return _permuted(node, source_layout)
    if method == "flatten" or node.target is torch.flatten:
        return _flattened(node, source_layout)
    if method in _RESHAPING_METHODS or node.target in _RESHAPING_FUNCTIONS:
        before, after = infos[source.name].shape, infos[node.name].shape
        if after == before:
            return source_layout
        return _unflattened(source_layout, tuple(before), tuple(after))
    for candidate in inputs:
        if rank[candidate.name] == rank[node.name] and layouts[candidate.name]:
            return layouts[candidate.name]
    return None


def _from_same_shape_users(
    node: fx.Node, layouts: Mapping[str, str | None], infos: Mapping[str, ValueInfo]
) -> str | None:
    for user in node.users:
        if layouts.get(user.name) and infos[user.name].shape == infos[node.name].shape:
            if user.op == "call_method" and user.target in ("permute", "transpose"):
                continue
            return layouts[user.name]
    return None


def _call_args(node: fx.Node) -> list:
    """Positional arguments after the tensor itself, with keyword forms folded in."""
    args = list(node.args[1:])
    for key in ("dims", "dim0", "dim1", "start_dim", "end_dim"):
        if key in node.kwargs:
            args.append(node.kwargs[key])
    return args


def _permuted(node: fx.Node, layout: str) -> str | None:
    args = _call_args(node)
    letters = list(layout)
    try:
        if node.target in ("permute", torch.permute):
            dims = args[0] if len(args) == 1 and isinstance(args[0], (list, tuple)) else args
            result = "".join(letters[int(d)] for d in dims)
        else:
            first, second = (int(a) for a in args[:2])
            letters[first], letters[second] = letters[second], letters[first]
            result = "".join(letters)
    except (ValueError, TypeError, IndexError):
        return None
    return result if result in KNOWN_LAYOUTS else None


def _flattened(node: fx.Node, layout: str) -> str | None:
    args = _call_args(node)
    try:
        start = int(args[0]) if args else 0
        end = int(args[1]) if len(args) > 1 else -1
    except (ValueError, TypeError):
        return None
    start, end = start % len(layout), end % len(layout)
    merged = layout[start : end + 1]
    if not merged or not set(merged) <= set("DHWL"):
        return None
    result = layout[:start] + "L" + layout[end + 1 :]
    return result if result in KNOWN_LAYOUTS else None


def _unflattened(layout: str, before: tuple[int, ...], after: tuple[int, ...]) -> str | None:
    """Tokens laid back on a grid: ``NCL`` (B, C, L) -> (B, C, H, W) is ``NCHW`` and ``NLC``
    (B, L, C) -> (B, H, W, C) is ``NHWC`` when H * W = L (SegFormer, ViT decoders)."""
    if len(before) != 3 or len(after) != 4:
        return None
    if layout == "NCL" and after[:2] == before[:2] and after[2] * after[3] == before[2]:
        return "NCHW"
    if layout == "NLC" and (after[0], after[3]) == (before[0], before[2]) \
            and after[1] * after[2] == before[1]:
        return "NHWC"
    return None
