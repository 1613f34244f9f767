"""Read an unfamiliar network: its stages, its transition points, where deep supervision goes,
and a drawing of it.

For each model (a timm classifier and an smp segmenter by default, any zoo spec with
``--model``) this prints the one-screen structure summary, the strongest transition points the
rules found, the taps ``select_taps`` chose with the reason for each, and draws the graph with
the candidates coloured and the taps numbered.

Run:  python examples/inspect_unfamiliar_model.py
      python examples/inspect_unfamiliar_model.py --model timm:convnext_tiny --model torchvision:fcn_resnet50
      python examples/inspect_unfamiliar_model.py --smoke       (small inputs, to check it runs)

Models get random weights (nothing is downloaded) and are analysed on meta tensors, so even
large ones take seconds and no memory for activations.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import tapfinder
from tapfinder.zoo import build_model

DEFAULT_MODELS = ("timm:efficientnet_b0", "smp:Unet:resnet34")


def inspect(spec: str, input_shape: tuple[int, ...], out: Path) -> None:
    model = build_model(spec)  # random weights; any nn.Module of yours works the same way
    arch = tapfinder.trace(model, input_shape)
    print(arch.summary())

    # Every rule's evidence, strongest first: what kind of transition, and why.
    candidates = tapfinder.find_candidates(arch)
    print(f"\n{len(candidates)} transition points; the five strongest:")
    for candidate in sorted(candidates, key=lambda c: -c.score)[:5]:
        print(f"  {candidate.node:32} {candidate.kind:15} {candidate.score:.2f}  {candidate.reason}")

    # Three taps spread over the depth, at least two parametric layers apart.
    taps = tapfinder.select_taps(arch, candidates, k=3, spacing=1, position="uniform")
    print("\ntaps:")
    for tap in taps:
        print(tap.explain())

    # Fold each module two levels deep (a residual block, an MBConv block) into one box.
    drawing = out / f"{spec.replace(':', '_')}.svg"
    tapfinder.render(arch, drawing, candidates=candidates, taps=taps, collapse=2)
    print(f"\ndrawing: {drawing}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="a zoo spec (repeatable); default: "
                        + ", ".join(DEFAULT_MODELS))
    parser.add_argument("--out", default="inspected", help="folder for the drawings")
    parser.add_argument("--smoke", action="store_true", help="small inputs, to check it runs")
    options = parser.parse_args()
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    side = 64 if options.smoke else 224
    for spec in options.model or DEFAULT_MODELS:
        inspect(spec, (1, 3, side, side), out)


if __name__ == "__main__":
    main()
