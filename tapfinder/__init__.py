"""tapfinder: find the transition points of any PyTorch network.

The package follows the data's path: :mod:`tapfinder.capture` traces a model,
:mod:`tapfinder.graph` holds the annotated graph and its structure, :mod:`tapfinder.taps`
finds candidates and chooses taps, :mod:`tapfinder.show` draws and reports them;
:mod:`tapfinder.cli`, :mod:`tapfinder.zoo` and :mod:`tapfinder.errors` sit at the top. Trace a
model into an annotated architecture graph::

    import tapfinder, torchvision
    arch = tapfinder.trace(torchvision.models.resnet50(), (1, 3, 224, 224))
    print(arch.summary())
    taps = tapfinder.select_taps(arch, k=3, position="input")
    tapfinder.render(arch, "resnet50.svg", candidates=tapfinder.find_candidates(arch), taps=taps)
"""

from importlib import import_module
from typing import TYPE_CHECKING

from ._version import __version__

if TYPE_CHECKING:  # what the lazy names below are, for type checkers
    from .capture.example_inputs import Inputs
    from .capture.tracing import AutoLeafWarning, EagerGraphWarning, trace
    from .errors import (
        InvalidInputError,
        ShapePropagationError,
        TapfinderError,
        TapShortfallWarning,
        TraceFailure,
    )
    from .graph import ArchGraph
    from .show.drawing import render
    from .show.page import write_page
    from .taps.candidates import Candidate, find_candidates, registered_kinds, rule
    from .taps.selection import Tap, select_taps

# Names load their module on first use, so `import tapfinder` (and `tapfinder --help`) does not
# import torch until something needs it.
_EXPORTS = {
    "trace": "capture.tracing", "AutoLeafWarning": "capture.tracing",
    "EagerGraphWarning": "capture.tracing", "Inputs": "capture.example_inputs",
    "ArchGraph": "graph", "Candidate": "taps.candidates", "find_candidates": "taps.candidates",
    "registered_kinds": "taps.candidates", "rule": "taps.candidates", "Tap": "taps.selection",
    "select_taps": "taps.selection", "render": "show.drawing", "write_page": "show.page", "InvalidInputError": "errors",
    "ShapePropagationError": "errors", "TapfinderError": "errors", "TraceFailure": "errors",
    "TapShortfallWarning": "errors",
}


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    elif not name.startswith("__"):
        try:
            value = import_module(f".{name}", __name__)  # tapfinder.zoo, tapfinder.graph, ...
        except ModuleNotFoundError as error:
            if error.name != f"{__name__}.{name}":
                raise  # the submodule exists but needs a package that is missing
            raise AttributeError(f"module 'tapfinder' has no attribute {name!r}") from None
    else:
        raise AttributeError(f"module 'tapfinder' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__all__ = [
    "__version__",
    "trace",
    "Inputs",
    "ArchGraph",
    "find_candidates",
    "select_taps",
    "render",
    "write_page",
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
    "TapShortfallWarning",
]
