"""Graph facts several rules need: feature maps, tensor inputs, joins, block outputs."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import networkx as nx

from ..graph import ArchGraph
from ..tracer import CALL_META_KEY

SUM_TARGETS = ("operator.add", "operator.iadd", "torch.add", "add", "add_")
SCALE_TARGETS = ("operator.mul", "operator.imul", "torch.mul", "mul", "mul_")
JOIN_TARGETS = (*SUM_TARGETS, "torch.cat", "torch.concat", "torch.stack", "cat", "torch.sum")
ACTIVATION_TYPES = {"ReLU", "ReLU6", "LeakyReLU", "PReLU", "ELU", "SELU", "CELU", "GELU",
                    "SiLU", "Mish", "Hardswish", "Tanh", "Softplus", "QuickGELU", "GELUTanh"}
ACTIVATION_FUNCTIONS = {"relu", "relu_", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu",
                        "silu", "mish", "hardswish", "tanh", "softplus"}
# Fused norm + activation modules (timm's BatchNormAct2d, GroupNormAct, LayerNormAct2d, ...)
# normalise too: a convolution they follow is read at their output.
NORM_TYPE_SUFFIXES = ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm", "LayerNorm",
                      "LayerNorm2d", "GroupNorm", "InstanceNorm2d", "RMSNorm", "LocalResponseNorm",
                      "NormAct", "NormAct2d", "Norm1Act", "SyncBatchNormAct")
NORM_FUNCTIONS = {"layer_norm", "batch_norm", "group_norm", "instance_norm", "rms_norm"}


def is_feature(attrs: dict[str, Any]) -> bool:
    """A tensor with a known layout: a feature map or token sequence, not a vector or scalar."""
    return (
        attrs["value"] == "tensor"
        and attrs["spatial"] is not None
        and attrs["op"] not in ("placeholder", "output", "get_attr")
    )


def function_name(attrs: dict[str, Any]) -> str:
    """The last component of a node's target: ``relu`` for ``torch.nn.functional.relu``."""
    return str(attrs["target"]).rsplit(".", 1)[-1]


def tensor_inputs(arch: ArchGraph, name: str) -> list[str]:
    return [p for p in arch.graph.predecessors(name) if arch[p]["value"] == "tensor"]


def feature_inputs(arch: ArchGraph, name: str) -> list[str]:
    return [p for p in arch.graph.predecessors(name) if is_feature(arch[p])]


def is_join(attrs: dict[str, Any]) -> bool:
    return attrs["op"] in ("call_function", "call_method") and attrs["target"] in JOIN_TARGETS


def activation_kind(attrs: dict[str, Any]) -> str | None:
    if attrs["op"] == "call_module" and attrs["module_type"] in ACTIVATION_TYPES:
        return attrs["module_type"]
    if attrs["op"] in ("call_function", "call_method") and function_name(attrs) in ACTIVATION_FUNCTIONS:
        return function_name(attrs).rstrip("_")
    return None


def norm_kind(attrs: dict[str, Any]) -> str | None:
    if attrs["op"] == "call_module" and str(attrs["module_type"]).endswith(NORM_TYPE_SUFFIXES):
        return attrs["module_type"]
    if attrs["op"] in ("call_function", "call_method") and function_name(attrs) in NORM_FUNCTIONS:
        return function_name(attrs)
    return None


def data_nodes(arch: ArchGraph) -> set[str]:
    """Nodes computed from the model's inputs (not only from parameters or constants)."""
    reached = set(arch.inputs)
    for source in arch.inputs:
        reached |= nx.descendants(arch.graph, source)
    return reached


def size_text(attrs: dict[str, Any]) -> str:
    """``56x56`` for a feature map, ``3136 tokens`` for a token sequence."""
    spatial = attrs["spatial"] or ()
    if attrs["layout"] == "NLC":
        return f"{spatial[0]} tokens"
    return "x".join(str(s) for s in spatial)


def where(attrs: dict[str, Any]) -> str:
    """``layer2.0.conv2 (Conv2d)``, or the function name at the root."""
    if attrs["module"]:
        kind = attrs["module_type"] or ""
        return f"{attrs['module']} ({kind})" if kind else attrs["module"]
    return function_name(attrs)


def scope_bounds(arch: ArchGraph) -> tuple[dict[str, str], dict[str, str]]:
    """For every module path: the first node recorded inside its forward, and the last tensor
    node (the block's output). One pass over the graph serves every rule that asks."""
    first: dict[str, str] = {}
    last_tensor: dict[str, str] = {}
    for name, attrs in arch.graph.nodes(data=True):
        for path in attrs["scope"]:
            first.setdefault(path, name)
            if attrs["value"] == "tensor":
                last_tensor[path] = name
    return first, last_tensor


def call_outputs(arch: ArchGraph) -> dict[str, dict[str, str]]:
    """For each block that ran more than once (ALBERT's one shared layer at every depth): the
    last tensor node of each call, by call key as fx counts calls (``path``, ``path@1``, ...).
    A block records two or more tensor steps per call: a ReLU module applied twice is none.
    A graph loaded from JSON or recorded eagerly keeps no calls: nothing."""
    if arch.traced is None or arch.traced.eager:
        return {}
    last: dict[str, dict[str, str]] = {}
    steps: Counter[str] = Counter()
    for node in arch.traced.graph.nodes:
        if node.name in arch.graph and arch[node.name]["value"] == "tensor":
            for path, key in node.meta.get(CALL_META_KEY, {}).items():
                last.setdefault(path, {})[key] = node.name
                steps[key] += 1
    return {path: calls for path, calls in last.items()
            if len(calls) >= 2 and all(steps[key] >= 2 for key in calls)}


def block_outputs(arch: ArchGraph) -> dict[str, str]:
    """The output node of every block: a module whose forward records more than one tensor
    step (a lone layer, such as a pool or an Identity, is not a block), outer modules first;
    a block that ran more than once has an output per call (``path@1``, ...)."""
    steps = Counter(path for _, attrs in arch.graph.nodes(data=True)
                    if attrs["value"] == "tensor" for path in attrs["scope"])
    _, last_tensor = scope_bounds(arch)
    outputs = {path: node for path, node in last_tensor.items() if steps[path] >= 2}
    for path, calls in call_outputs(arch).items():
        if path in outputs:
            outputs.update(calls)
    return outputs


def stride(attrs: dict[str, Any]) -> int | None:
    """A node's feature stride as an integer (its ``reduction`` rounded), ``None`` if unknown."""
    return None if attrs["reduction"] is None else round(attrs["reduction"])


def input_batch(arch: ArchGraph) -> int | None:
    """The first input's batch: its first axis, or the length of the list it is an item of."""
    batches = arch.traced.call.batches if arch.traced is not None else {}
    for name in arch.inputs:
        if name in batches:
            return batches[name]
        if arch[name]["shape"]:
            return arch[name]["shape"][0]
    return None


def stage_strides(arch: ArchGraph) -> set[int]:
    """The feature strides at which the model has a stage: a main-path node (:meth:`ArchGraph.
    stages`) of more than one position lies there, and two or more layers (convolutions or
    linear layers, not norms) compute there on tensors that carry the input's batch on their
    first axis.

    A conv stem's lone strided convolution is no stage, so a hybrid whose blocks all run at one
    stride (XCiT, a ViT on a ResNet stem) has one; an isotropic ViT or MLP-Mixer has one
    whatever its transposes look like; layers on tensors folded into the batch axis (Swin's
    windows, TNT's inner tokens) count for no stride.
    """
    batch = input_batch(arch)
    layers: Counter[int | None] = Counter(
        stride(attrs) for _, attrs in arch.graph.nodes(data=True)
        if attrs["parametric"] and norm_kind(attrs) is None and attrs["value"] == "tensor"
        and (batch is None or (attrs["shape"] or (None,))[0] == batch))
    return {stride(arch[node]) for node in arch.stages()
            if arch[node]["spatial"] and math.prod(arch[node]["spatial"]) > 1
            and layers[stride(arch[node])] >= 2}


def is_sum(attrs: dict[str, Any]) -> bool:
    """An elementwise sum of tensors (``a + b``, ``torch.add``, ``x.add_(y)``)."""
    return attrs["op"] in ("call_function", "call_method") and attrs["target"] in SUM_TARGETS


def is_identity(attrs: dict[str, Any]) -> bool:
    """A placeholder module that returns its input (``nn.Identity``: timm's disabled
    anti-aliasing or drop-path, smp's U-Net centre and attention when switched off)."""
    return attrs["op"] == "call_module" and attrs["module_type"] == "Identity"
