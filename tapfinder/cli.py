"""The ``tapfinder`` command line.

Exit codes: 0 on success, 2 for a usage error (bad arguments, unknown model), 1 when the model
could not be analysed.
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from collections.abc import Sequence

from ._version import __version__
from .errors import InvalidInputError, TapfinderError
from .trace import trace
from .zoo import SPEC_HELP, build_model

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _shape(text: str) -> tuple[int, ...]:
    parts = re.split(r"[,x]", text.strip())
    shape = tuple(int(p) for p in parts) if all(p.strip().isdigit() for p in parts) else ()
    if not shape or any(d <= 0 for d in shape):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a shape; write positive sizes separated by commas, e.g. 1,3,224,224"
        )
    return shape


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tapfinder",
        description="Find the transition points of any PyTorch network.",
        epilog=f"MODEL is {SPEC_HELP}. Models are built with random weights.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    summary = commands.add_parser(
        "summary",
        help="trace a model and print its one-screen structure summary",
        description="Trace a model with torch.fx and print sizes, inputs, outputs, "
        "auto-leaves and the feature strides.",
    )
    summary.add_argument("model", metavar="MODEL", help=SPEC_HELP)
    summary.add_argument(
        "--input-shape", type=_shape, default=(1, 3, 224, 224), metavar="SHAPE",
        help="example input shape (default: 1,3,224,224)",
    )
    summary.add_argument("--json", metavar="FILE", help="also write the ArchGraph as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    arguments = _parser().parse_args(argv)
    try:
        model = build_model(arguments.model)
    except InvalidInputError as error:
        print(f"tapfinder: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    try:
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            arch = trace(model, arguments.input_shape)
    except TapfinderError as error:
        print(f"tapfinder: could not analyse {arguments.model}: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(arch.summary())
    if arguments.json:
        arch.to_json(arguments.json)
        print(f"wrote {arguments.json}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
