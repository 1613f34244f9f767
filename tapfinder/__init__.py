"""tapfinder: find the transition points of any PyTorch network.

Trace a model into an annotated architecture graph::

    import tapfinder, torchvision
    arch = tapfinder.trace(torchvision.models.resnet50(), (1, 3, 224, 224))
    print(arch.summary())
    taps = tapfinder.select_taps(arch, k=3, position="input")
    tapfinder.render(arch, "resnet50.svg", candidates=tapfinder.find_candidates(arch), taps=taps)
"""

from ._version import __version__
from .candidates import Candidate, find_candidates, registered_kinds, rule
from .errors import InvalidInputError, ShapePropagationError, TapfinderError, TraceFailure
from .graph import ArchGraph
from .rank import Tap, select_taps
from .render import render
from .trace import AutoLeafWarning, trace

__all__ = [
    "__version__",
    "trace",
    "ArchGraph",
    "find_candidates",
    "select_taps",
    "render",
    "rule",
    "registered_kinds",
    "Candidate",
    "Tap",
    "AutoLeafWarning",
    "TapfinderError",
    "InvalidInputError",
    "TraceFailure",
    "ShapePropagationError",
]
