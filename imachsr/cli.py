"""The ``imachsr`` command line: ``imachsr train ...`` (see ``imachsr train --help``)."""

from __future__ import annotations

import difflib
import sys
from collections.abc import Sequence

from tapfinder._version import __version__

__all__ = ["main"]

USAGE = "usage: imachsr [--version] train [options]   (imachsr train --help for the options)"


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to the sub-command; returns the exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["--version"]:
        print(f"imachsr {__version__}")
        return 0
    if arguments[:1] == ["train"]:
        from .train import main as train_main

        return train_main(arguments[1:])
    if arguments[:1] in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    print(USAGE, file=sys.stderr)
    if arguments:
        close = difflib.get_close_matches(arguments[0], ["train"], n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        print(f"imachsr: unknown command {arguments[0]!r}.{hint}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
