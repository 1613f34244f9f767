"""A model's call, bound to its ``forward`` and flattened into the tensors a traced graph takes.

``torch.fx`` makes one placeholder per ``forward`` parameter and hands it a proxy. That fails for
the calls real models expect: a list of images (torchvision detection), keyword inputs
(``pixel_values=``), a ``**kwargs`` the forward reads from (Hugging Face), optional arguments
whose default must stay a Python value. So tapfinder traces the model through a generated
``forward`` whose parameters are the call's tensors, one each, in order; it rebuilds the call's
lists, dicts and keyword arguments around the proxies and calls the model's own ``forward``
with them. Arguments the call does not give keep their defaults. Module paths, node names and
the model's code are unchanged: the traced root is a shallow copy of the model whose class only
swaps ``forward`` for the generated one.
"""

from __future__ import annotations

import dataclasses
import inspect
import keyword
import re
import types
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from ..errors import InvalidInputError
from .example_inputs import Inputs, map_leaves, same_sequence

__all__ = ["CallSpec"]


class _Tensor:
    """Marks where a tensor goes in a call's skeleton."""

    def __repr__(self) -> str:
        return "<tensor>"


_TENSOR = _Tensor()


class CallSpec:
    """The structure of one call of ``model.forward``: which arguments it gives, where their
    tensors are, and the constants (``None``, concrete arguments) around them.

    Attributes
    ----------
    names
        One identifier per tensor of the call, in order: the parameter's name for a tensor
        argument (``pixel_values``), with the index or key of nested ones (``images_0``).
    batches
        The tensors that are items of a list or tuple argument (torchvision detection's list of
        images), each mapped to the length of its list: the items carry no batch axis, the list
        is the batch.
    output_types
        Filled in when the model is traced through this call: where the model's output holds
        mappings of their own class (Hugging Face's ``ModelOutput``), which fx turns into plain
        dicts; ``None`` when it holds none. :meth:`restore_output` puts the classes back.
    """

    def __init__(self, signature: inspect.Signature, skeleton: dict[str, Any],
                 names: tuple[str, ...]) -> None:
        self.signature = signature
        self.skeleton = skeleton
        self.names = names
        self.batches = {name: length for name, length
                        in zip(names, _list_lengths(skeleton.values())) if length}
        self.output_types: Any = None
        parameters = signature.parameters
        # A call of plain tensors, one per leading positional parameter, flattens to itself.
        self.plain = list(skeleton) == list(parameters)[:len(skeleton)] and all(
            value is _TENSOR and parameters[name].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
            for name, value in skeleton.items())

    @classmethod
    def bind(cls, model: nn.Module, inputs: Inputs,
             constants: dict[str, Any] | None = None) -> CallSpec:
        """Bind ``inputs`` (and the ``constants`` to fix, ``concrete_args``) to ``model.forward``.

        Raises
        ------
        InvalidInputError
            When the call does not fit the signature (too many inputs, an unknown keyword, a
            missing required argument), quoting the signature.
        """
        signature = _signature(model)
        arguments = _bind(model, signature, inputs.args, inputs.kwargs, "example_inputs")
        for name, value in (constants or {}).items():
            if name not in signature.parameters and not _takes_var_keyword(signature):
                raise InvalidInputError(
                    f"concrete_args names {name!r}, which is not an argument of "
                    f"{_described_forward(model, signature)}.")
            if isinstance(arguments.get(name), torch.Tensor):
                raise InvalidInputError(
                    f"{name!r} is given both as an example input and in concrete_args; give "
                    "it once.")
            arguments[name] = value
        skeleton = {name: map_leaves(value, lambda _: _TENSOR)
                    for name, value in arguments.items()}
        names: list[str] = []
        for name, value in arguments.items():
            parameter = signature.parameters.get(name)
            if parameter is not None and parameter.kind is inspect.Parameter.VAR_KEYWORD:
                for key, item in value.items():  # **kwargs: named by their keywords
                    _leaf_names(item, _identifier(key), names)
            else:
                _leaf_names(value, _identifier(name), names)
        return cls(signature, skeleton, tuple(_unique(names)))

    def flatten(self, args: Sequence[Any], kwargs: dict[str, Any],
                model: nn.Module) -> list[torch.Tensor]:
        """The tensors of a call made like the example call, in the graph's order.

        Raises
        ------
        ValueError
            When the call is shaped differently from the example (another number of inputs,
            other keywords, a list of another length, a tensor where the example had none).
        """
        if self.plain and not kwargs and len(args) == len(self.skeleton):
            return list(args)
        arguments = _bind(model, self.signature, args, kwargs, "The call")
        tensors: list[torch.Tensor] = []
        for name, skeleton in self.skeleton.items():
            if name not in arguments:
                if skeleton is _TENSOR or _holds_tensor(skeleton):
                    raise ValueError(self._mismatch(f"argument {name!r} is missing"))
                continue  # a constant of the example (concrete_args) may be left out
            problem = _collect(arguments.pop(name), skeleton, name, tensors)
            if problem:
                raise ValueError(self._mismatch(problem))
        parameters = self.signature.parameters
        extra = [name for name, value in arguments.items()
                 if name not in parameters or not _same_constant(value, parameters[name].default)]
        if extra:  # an argument the example left out may be passed only at its default
            raise ValueError(self._mismatch(
                f"it also passes {', '.join(map(repr, extra))}, which the traced call left at "
                "its default"))
        return tensors

    def rebuild(self, tensors: Sequence[Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The positional and keyword arguments of the call with ``tensors`` in its places."""
        supply = iter(tensors)
        arguments = {name: map_leaves(value, lambda _: next(supply), _Tensor)
                     for name, value in self.skeleton.items()}
        bound = inspect.BoundArguments(self.signature, OrderedDict(arguments))
        return bound.args, bound.kwargs

    def record_output(self, output: Any) -> Any:
        """Remember the mapping classes in the output of the traced forward; return it."""
        self.output_types = _mapping_types(output)
        return output

    def restore_output(self, output: Any) -> Any:
        """``output`` (a graph's result) with the model's own mapping classes back in place."""
        return output if self.output_types is None else _restore_types(output, self.output_types)

    def traceable_root(self, model: nn.Module) -> nn.Module:
        """A shallow copy of ``model`` (sharing every submodule, parameter and buffer) whose
        ``forward`` takes this call's tensors, one parameter each, and calls the model's own."""
        root = object.__new__(_flat_class(type(model), self))
        root.__dict__.update(model.__dict__)
        return root

    def _mismatch(self, problem: str) -> str:
        return (f"This model was traced for calls like forward({self.describe()}), and this call "
                f"differs: {problem}. Call it as the example inputs were given, or trace it again "
                "with example inputs shaped like this call.")

    def describe(self) -> str:
        return ", ".join(f"{name}={_describe_skeleton(value)}"
                         for name, value in self.skeleton.items())


def _signature(model: nn.Module) -> inspect.Signature:
    try:
        return inspect.signature(model.forward)
    except (TypeError, ValueError):
        variadic = inspect.Parameter.VAR_POSITIONAL
        return inspect.Signature([inspect.Parameter("inputs", variadic)])


def _bind(model: nn.Module, signature: inspect.Signature, args: Sequence[Any],
          kwargs: dict[str, Any], what: str) -> dict[str, Any]:
    try:
        return dict(signature.bind(*args, **kwargs).arguments)
    except TypeError as error:
        given = f"{len(args)} positional input(s)" + (
            f" and keywords {', '.join(kwargs)}" if kwargs else "")
        raise InvalidInputError(
            f"{what} gives {given}, which do not fit {_described_forward(model, signature)}: "
            f"{error}. Pass one tensor or shape per positional argument, as a tuple; keyword "
            "inputs as a dict or with tapfinder.Inputs(x, name=value)."
        ) from None


def _described_forward(model: nn.Module, signature: inspect.Signature) -> str:
    return f"{type(model).__name__}.forward{signature}"


def _takes_var_keyword(signature: inspect.Signature) -> bool:
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())


def _holds_tensor(skeleton: Any) -> bool:
    if skeleton is _TENSOR:
        return True
    if isinstance(skeleton, (tuple, list)):
        return any(_holds_tensor(item) for item in skeleton)
    if isinstance(skeleton, dict):
        return any(_holds_tensor(item) for item in skeleton.values())
    return False


def _list_lengths(values: Any, length: int = 0) -> Iterator[int]:
    """For each tensor of the skeletons ``values``, in order: the length of the list or tuple
    it is an item of, or 0."""
    for value in values:
        if value is _TENSOR:
            yield length
        elif isinstance(value, (tuple, list)):
            yield from _list_lengths(value, len(value))
        elif isinstance(value, dict):
            yield from _list_lengths(value.values())


def _leaf_names(value: Any, prefix: str, names: list[str]) -> None:
    if isinstance(value, torch.Tensor):
        names.append(prefix)
    elif isinstance(value, (tuple, list)):
        for index, item in enumerate(value):
            _leaf_names(item, f"{prefix}_{index}", names)
    elif isinstance(value, dict):
        for key, item in value.items():
            _leaf_names(item, f"{prefix}_{_identifier(str(key))}", names)


def _collect(value: Any, skeleton: Any, where: str, tensors: list[torch.Tensor]) -> str | None:
    """Append ``value``'s tensors to ``tensors``; a description of the first difference from
    ``skeleton``, if any."""
    if skeleton is _TENSOR:
        if not isinstance(value, torch.Tensor):
            return f"{where} is {type(value).__name__}, not a tensor"
        tensors.append(value)
        return None
    if isinstance(skeleton, (tuple, list)):
        if not isinstance(value, (tuple, list)) or len(value) != len(skeleton):
            return f"{where} is not a sequence of {len(skeleton)} items"
        for index, (item, part) in enumerate(zip(value, skeleton)):
            problem = _collect(item, part, f"{where}[{index}]", tensors)
            if problem:
                return problem
        return None
    if isinstance(skeleton, dict):
        if not isinstance(value, dict) or list(value) != list(skeleton):
            return f"{where} does not have the keys {list(skeleton)}"
        for key, part in skeleton.items():
            problem = _collect(value[key], part, f"{where}[{key!r}]", tensors)
            if problem:
                return problem
        return None
    if not _same_constant(value, skeleton):
        return f"{where} is {value!r}, not {skeleton!r} as traced"
    return None


def _same_constant(value: Any, constant: Any) -> bool:
    if value is constant:
        return True
    try:
        return type(value) is type(constant) and bool(value == constant)
    except Exception:  # noqa: BLE001 - objects whose == is not a plain comparison
        return False


def _describe_skeleton(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        inner = ", ".join(_describe_skeleton(item) for item in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {_describe_skeleton(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _mapping_types(value: Any) -> Any:
    """Where ``value`` holds dicts of a class other than ``dict``: ``(class, {key: inner})`` for
    those, ``(None, [inner...])`` for sequences on the way; ``None`` where there are none."""
    if isinstance(value, dict):
        inner = {key: _mapping_types(item) for key, item in value.items()}
        if type(value) is dict and all(v is None for v in inner.values()):
            return None
        return type(value), inner
    if isinstance(value, (tuple, list)):
        inner_items = [_mapping_types(item) for item in value]
        return None if all(v is None for v in inner_items) else (None, inner_items)
    return None


def _restore_types(value: Any, types_: Any) -> Any:
    if types_ is None:
        return value
    cls: Any
    cls, inner = types_
    if cls is None:
        return same_sequence(value, [_restore_types(v, t) for v, t in zip(value, inner)])
    items = {key: _restore_types(item, inner.get(key)) for key, item in value.items()}
    if cls is dict:
        return items
    return cls(**items) if isinstance(cls, type) and dataclasses.is_dataclass(cls) else cls(items)


def _identifier(text: str) -> str:
    name = re.sub(r"\W", "_", text) or "input"
    if name[0].isdigit() or keyword.iskeyword(name) or name == "self":
        name = f"input_{name}"
    return name


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        candidate = name
        while candidate in seen:
            seen[name] += 1
            candidate = f"{name}_{seen[name]}"
        seen.setdefault(candidate, 0)
        unique.append(candidate)
    return unique


def _flat_class(cls: type[nn.Module], call: CallSpec) -> type[nn.Module]:
    """A subclass of ``cls`` whose ``forward(self, <one parameter per tensor>)`` rebuilds the
    call and runs ``cls.forward``. It is compiled with ``cls.forward``'s module globals, which fx
    inspects for functions to wrap, as it would for ``cls.forward`` itself."""
    parameters = ", ".join(call.names)
    as_tuple = f"({parameters}{',' if len(call.names) == 1 else ''})"
    source = (
        "def factory(call, forward):\n"
        f"    def forward_flat(self, {parameters}):\n"
        f"        args, kwargs = call.rebuild({as_tuple})\n"
        "        return call.record_output(forward(self, *args, **kwargs))\n"
        "    return forward_flat\n"
    )
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<tapfinder call of {cls.__name__}>", "exec"), namespace)  # noqa: S102
    flat = namespace["factory"](call, cls.forward)
    original = cls.forward
    forward = types.FunctionType(flat.__code__, getattr(original, "__globals__", namespace),
                                 "forward", None, flat.__closure__)
    return type(cls.__name__, (cls,), {
        "forward": forward, "__module__": cls.__module__, "__qualname__": cls.__qualname__,
    })
