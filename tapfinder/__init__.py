"""tapfinder: find the transition points of any PyTorch network.

Trace a model into an annotated architecture graph::

    import tapfinder, torchvision
    arch = tapfinder.trace(torchvision.models.resnet50(), (1, 3, 224, 224))
    print(arch.summary())
"""

from ._version import __version__
from .errors import InvalidInputError, ShapePropagationError, TapfinderError, TraceFailure
from .graph import ArchGraph
from .trace import AutoLeafWarning, trace

__all__ = [
    "__version__",
    "trace",
    "ArchGraph",
    "AutoLeafWarning",
    "TapfinderError",
    "InvalidInputError",
    "TraceFailure",
    "ShapePropagationError",
]
