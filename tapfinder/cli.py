"""The ``tapfinder`` command line.

Exit codes: 0 on success, 2 for a usage error (bad arguments, unknown model), 1 when the model
could not be analysed.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from ._version import __version__
from .errors import InvalidInputError, TapfinderError
from .taps.positions import POSITIONS
from .zoo import SPEC_HELP, build_model

# The analysis modules (and torch) are imported in main(), after the arguments are parsed, so
# `tapfinder --help` and usage errors answer at once.

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
INPUT_DTYPES = ("float32", "float16", "bfloat16", "int64")


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
    _model_arguments(summary)
    summary.add_argument("--json", metavar="FILE", help="also write the ArchGraph as JSON")

    inspect = commands.add_parser(
        "inspect",
        help="find transition points, choose taps, print them (and optionally draw them)",
        description="Trace a model, run the transition-point rules, choose K well-spaced "
        "taps and print candidates and taps with their reasons.",
    )
    _model_arguments(inspect)
    _selection_arguments(inspect)
    inspect.add_argument("--json", action="store_true", help="print a JSON document instead")
    inspect.add_argument("--render", metavar="FILE", help="also draw the graph (.svg/.png/.pdf/.dot)")
    inspect.add_argument("--collapse", type=int, metavar="DEPTH",
                         help="draw modules at this nesting depth as single boxes")
    inspect.add_argument("--html", metavar="FILE",
                         help="also write one self-contained, interactive HTML page (search, "
                         "fold levels, each node's evidence)")

    render = commands.add_parser(
        "render", help="draw the annotated architecture graph",
        description="Draw the model with candidates coloured by kind and the chosen taps numbered.",
    )
    _model_arguments(render)
    _selection_arguments(render)
    render.add_argument("-o", "--output", required=True, metavar="FILE",
                        help="output file: .svg, .png, .pdf or .dot")
    render.add_argument("--collapse", type=int, metavar="DEPTH",
                        help="draw modules at this nesting depth as single boxes")
    return parser


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help=SPEC_HELP)
    parser.add_argument(
        "--input-shape", type=_shape, action="append", metavar="SHAPE",
        help="example input shape (default: 1,3,224,224); repeat it for a model with several "
        "inputs (RAFT's two images)",
    )
    parser.add_argument(
        "--input-dtype", choices=INPUT_DTYPES, default="float32",
        help="example input dtype: int64 for token ids (default: float32)",
    )


def _selection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--k", type=int, default=3, help="number of taps (default: 3)")
    parser.add_argument("--spacing", type=int, default=1,
                        help="minimum distance between taps in bases, the layers a typical "
                        "block spans (default: 1; 0: only one tap per block)")
    parser.add_argument("--position", choices=POSITIONS, default="uniform",
                        help="where to favour taps (default: uniform, spread over the depth)")
    parser.add_argument("--kinds", nargs="+", metavar="KIND",
                        help="only these kinds of transition point (downsampling, stage_boundary, "
                        "bottleneck, attention, skip_join, fusion, norm_act, and any registered "
                        "with @tapfinder.rule)")


def _example_inputs(shapes: list[tuple[int, ...]] | None, dtype: str) -> tuple[Any, ...]:
    """One input per shape (default: one 1x3x224x224 image): the shape itself for float32 (the
    model's floating dtype is then used), else a meta tensor of that dtype, which carries shape
    and dtype without memory."""
    shapes = shapes or [(1, 3, 224, 224)]
    if dtype == "float32":
        return tuple(shapes)
    import torch

    return tuple(torch.empty(shape, dtype=getattr(torch, dtype), device="meta")
                 for shape in shapes)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    arguments = _parser().parse_args(argv)
    from .capture.tracing import EagerGraphWarning, trace
    from .show.drawing import LARGE_DRAWING, drawn_boxes, render
    from .show.page import write_page
    from .show.report import report_document, report_table
    from .taps.candidates import find_candidates
    from .taps.selection import select_taps

    try:
        model = build_model(arguments.model)
    except InvalidInputError as error:
        print(f"tapfinder: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    examples = _example_inputs(arguments.input_shape, arguments.input_dtype)
    try:
        with warnings.catch_warnings(record=True) as traced_warnings:
            warnings.simplefilter("always")
            arch = trace(model, examples)
    except TapfinderError as error:
        print(f"tapfinder: could not analyse {arguments.model}: {error}", file=sys.stderr)
        shapes = [tuple(example.shape if hasattr(example, "shape") else example)
                  for example in examples]
        if len(shapes) == 1 and len(shapes[0]) == 3:
            shape = ",".join(map(str, shapes[0]))
            print(f"tapfinder: hint: if {shape} is one image, the shape lacks the batch "
                  f"dimension that comes first: --input-shape 1,{shape}", file=sys.stderr)
        return EXIT_FAILED
    for warning in traced_warnings:  # the graph records one eager run: say so and why
        if issubclass(warning.category, EagerGraphWarning):
            print(f"tapfinder: note: {warning.message}", file=sys.stderr)
    if arguments.command == "summary":
        print(arch.summary())
        if arguments.json:
            arch.to_json(arguments.json)
            print(f"wrote {arguments.json}")
        return EXIT_OK
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            candidates = find_candidates(arch, arguments.kinds)
            taps = select_taps(
                arch, candidates, k=arguments.k, spacing=arguments.spacing,
                position=arguments.position,
            )
        if arguments.command == "render" or arguments.render:
            target = arguments.output if arguments.command == "render" else arguments.render
            render(arch, target, candidates=candidates, taps=taps, collapse=arguments.collapse)
            boxes = len(drawn_boxes(arch, arguments.collapse))
            if boxes > LARGE_DRAWING:
                deeper = "a smaller --collapse DEPTH" if arguments.collapse else "--collapse 2"
                print(f"tapfinder: hint: the drawing has {boxes} boxes, too tall to read; "
                      f"{deeper} draws each block as one box", file=sys.stderr)
        if arguments.command == "inspect" and arguments.html:
            notes = [str(w.message) for w in [*traced_warnings, *caught]
                     if issubclass(w.category, UserWarning)]
            write_page(arch, arguments.html, candidates, taps, warnings=notes,
                       command=" ".join(["tapfinder", *(argv if argv is not None else sys.argv[1:])]))
    except ValueError as error:
        print(f"tapfinder: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:
        print(f"tapfinder: could not write the drawing: {error}", file=sys.stderr)
        return EXIT_FAILED
    for warning in caught:
        if issubclass(warning.category, UserWarning):
            print(f"tapfinder: warning: {warning.message}", file=sys.stderr)
    if arguments.command == "render":
        print(f"wrote {target}")
    elif arguments.json:
        print(json.dumps(report_document(arch, candidates, taps), indent=1))
    else:
        print(report_table(arch, candidates, taps))
        if arguments.render:
            print(f"wrote {target}")
    if arguments.command == "inspect" and arguments.html:
        print(f"wrote {arguments.html}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
