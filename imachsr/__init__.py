"""imachsr: intermediate multi-access heterogeneous supervision and regularisation (iMacHSR).

Deep supervision on the transition points that :mod:`tapfinder` finds. This package holds the
training scheme; it builds on ``tapfinder`` and is never imported by it.
"""

from tapfinder._version import __version__

__all__ = ["__version__"]
