"""What one node of an :class:`~tapfinder.graph.ArchGraph` is: a feature map or token sequence,
an activation, a norm, a sum, a join of branches, an identity placeholder, the core of an
attention computation; and how to name it in a sentence. Rules, guards and the ranker read
nodes through these, so each kind has one definition."""

from __future__ import annotations

from .arch_graph import ArchGraph, NodeAttributes

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


def is_feature(attrs: NodeAttributes) -> bool:
    """A tensor with a known layout: a feature map or token sequence, not a vector or scalar."""
    return (
        attrs["value"] == "tensor"
        and attrs["spatial"] is not None
        and attrs["op"] not in ("placeholder", "output", "get_attr")
    )


def function_name(attrs: NodeAttributes) -> str:
    """The last component of a node's target: ``relu`` for ``torch.nn.functional.relu``."""
    return str(attrs["target"]).rsplit(".", 1)[-1]


def tensor_inputs(arch: ArchGraph, name: str) -> list[str]:
    return [p for p in arch.graph.predecessors(name) if arch[p]["value"] == "tensor"]


def feature_inputs(arch: ArchGraph, name: str) -> list[str]:
    return [p for p in arch.graph.predecessors(name) if is_feature(arch[p])]


def is_join(attrs: NodeAttributes) -> bool:
    return attrs["op"] in ("call_function", "call_method") and attrs["target"] in JOIN_TARGETS


def activation_kind(attrs: NodeAttributes) -> str | None:
    if attrs["op"] == "call_module" and attrs["module_type"] in ACTIVATION_TYPES:
        return attrs["module_type"]
    if attrs["op"] in ("call_function", "call_method") and function_name(attrs) in ACTIVATION_FUNCTIONS:
        return function_name(attrs).rstrip("_")
    return None


def norm_kind(attrs: NodeAttributes) -> str | None:
    if attrs["op"] == "call_module" and str(attrs["module_type"]).endswith(NORM_TYPE_SUFFIXES):
        return attrs["module_type"]
    if attrs["op"] in ("call_function", "call_method") and function_name(attrs) in NORM_FUNCTIONS:
        return function_name(attrs)
    return None


def size_text(attrs: NodeAttributes) -> str:
    """``56x56`` for a feature map, ``3136 tokens`` for a token sequence."""
    spatial = attrs["spatial"] or ()
    if attrs["layout"] == "NLC":
        return f"{spatial[0]} tokens"
    return "x".join(str(s) for s in spatial)


def where(attrs: NodeAttributes) -> str:
    """``layer2.0.conv2 (Conv2d)``, or the function name at the root."""
    if attrs["module"]:
        kind = attrs["module_type"] or ""
        return f"{attrs['module']} ({kind})" if kind else attrs["module"]
    return function_name(attrs)


def stride(attrs: NodeAttributes) -> int | None:
    """A node's feature stride as an integer (its ``reduction`` rounded), ``None`` if unknown."""
    return None if attrs["reduction"] is None else round(attrs["reduction"])


def is_padding(attrs: NodeAttributes) -> bool:
    """Explicit padding (``nn.ZeroPad2d``, ``F.pad``): a larger map that is no upsampling."""
    if attrs["op"] == "call_module":
        return str(attrs["module_type"]).endswith(("ZeroPad2d", "ConstantPad2d", "ZeroPad1d",
                                                   "ConstantPad1d", "ZeroPad3d", "ConstantPad3d"))
    return attrs["op"] == "call_function" and function_name(attrs) == "pad"


def is_sum(attrs: NodeAttributes) -> bool:
    """An elementwise sum of tensors (``a + b``, ``torch.add``, ``x.add_(y)``)."""
    return attrs["op"] in ("call_function", "call_method") and attrs["target"] in SUM_TARGETS


def is_identity(attrs: NodeAttributes) -> bool:
    """A placeholder module that returns its input (``nn.Identity``: timm's disabled
    anti-aliasing or drop-path, smp's U-Net centre and attention when switched off)."""
    return attrs["op"] == "call_module" and attrs["module_type"] == "Identity"


_ATTENTION_MODULES = {"MultiheadAttention"}
_ATTENTION_FUNCTIONS = {"scaled_dot_product_attention", "multi_head_attention_forward"}


def is_attention_core(arch: ArchGraph, name: str) -> bool:
    """An attention operation: scaled dot-product attention, ``nn.MultiheadAttention``, or a
    softmax over attention scores: a square score matrix, or any matrix product of queries and
    keys (scaled or biased on the way), as in attention with reduced keys (SegFormer)."""
    attrs = arch[name]
    if attrs["op"] == "call_module":
        return attrs["module_type"] in _ATTENTION_MODULES
    function = function_name(attrs)
    if function in _ATTENTION_FUNCTIONS:
        return True
    shape = attrs["shape"]
    if function != "softmax" or attrs["value"] != "tensor" or len(shape) < 3:
        return False
    return shape[-1] == shape[-2] or _from_scores(arch, name)


_SCORE_PRODUCTS = {"matmul", "bmm", "einsum"}
_SCORE_STEPS = {"mul", "truediv", "div", "add", "sub", "masked_fill"}


def _from_scores(arch: ArchGraph, name: str) -> bool:
    """Whether the softmax's input is a matrix product, through at most three elementwise steps
    (scale, bias, mask)."""
    current = name
    for _ in range(4):
        inputs = tensor_inputs(arch, current)
        if not inputs:
            return False
        current = inputs[0]
        function = function_name(arch[current])
        if function in _SCORE_PRODUCTS:
            return True
        if function not in _SCORE_STEPS:
            return False
    return False
