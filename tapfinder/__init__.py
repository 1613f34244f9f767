"""tapfinder: find the transition points of any PyTorch network.

Trace a model into an annotated architecture graph::

    import tapfinder, torchvision
    arch = tapfinder.trace(torchvision.models.resnet50(), (1, 3, 224, 224))
    print(arch.summary())
    taps = tapfinder.select_taps(arch, k=3, position="input")
    tapfinder.render(arch, "resnet50.svg", candidates=tapfinder.find_candidates(arch), taps=taps)
"""

import sys
import types
from importlib import import_module

from ._version import __version__

# Names load their module on first use, so `import tapfinder` (and `tapfinder --help`) does not
# import torch until something needs it.
_EXPORTS = {
    "Candidate": "candidates", "find_candidates": "candidates", "registered_kinds": "candidates",
    "rule": "candidates", "InvalidInputError": "errors", "ShapePropagationError": "errors",
    "TapfinderError": "errors", "TraceFailure": "errors", "ArchGraph": "graph", "Tap": "rank",
    "select_taps": "rank", "AutoLeafWarning": "trace", "Inputs": "inputs",
    "EagerGraphWarning": "trace",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    elif not name.startswith("__"):
        try:
            value = import_module(f".{name}", __name__)  # tapfinder.rank, tapfinder.zoo, ...
        except ModuleNotFoundError as error:
            if error.name != f"{__name__}.{name}":
                raise  # the submodule exists but needs a package that is missing
            raise AttributeError(f"module 'tapfinder' has no attribute {name!r}") from None
    else:
        raise AttributeError(f"module 'tapfinder' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS, "trace", "render"})


class _Package(types.ModuleType):
    """``trace`` and ``render`` name both a submodule and the function it defines. Importing a
    submodule sets the package attribute to the module; these properties keep the functions
    (as the eager ``from .trace import trace`` did)."""

    @property
    def trace(self):  # noqa: ANN202 - the function, typed where it is defined
        from .trace import trace

        return trace

    @trace.setter
    def trace(self, module: types.ModuleType) -> None:
        pass

    @property
    def render(self):  # noqa: ANN202
        from .render import render

        return render

    @render.setter
    def render(self, module: types.ModuleType) -> None:
        pass


sys.modules[__name__].__class__ = _Package


__all__ = [
    "__version__",
    "trace",
    "Inputs",
    "ArchGraph",
    "find_candidates",
    "select_taps",
    "render",
    "rule",
    "registered_kinds",
    "Candidate",
    "Tap",
    "AutoLeafWarning",
    "EagerGraphWarning",
    "TapfinderError",
    "InvalidInputError",
    "TraceFailure",
    "ShapePropagationError",
]
