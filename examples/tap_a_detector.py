"""Tap a torchvision detector's backbone and add a deep-supervision loss of your own.

Detectors take a list of images (and, in training, a list of target dicts) and loop over their
proposals in the root ``forward``, which torch.fx cannot trace. tapfinder records one eager run
instead (an ``EagerGraphWarning`` says so and names the line fx stopped at), finds the
backbone's stages on that record and picks taps that are module outputs; ``imachsr.instrument``
then reads them with forward hooks. The detector's own losses stay bit for bit what they were;
the tapped features are yours to supervise. iMacHSR's objective needs segmentation or class
labels, so this example writes a small auxiliary loss instead: an objectness map per tap,
trained against the boxes.

Run:  python examples/tap_a_detector.py
      python examples/tap_a_detector.py --smoke       (tiny images and two steps, to check it runs)
"""

from __future__ import annotations

import argparse
import warnings

import torch
import torchvision
from torch import nn
from torch.nn import functional as F

import imachsr
import tapfinder


def synthetic_batch(size: int, generator: torch.Generator) -> tuple[list, list]:
    """Two images with one bright square each, and its box as the target."""
    images, targets = [], []
    for _ in range(2):
        image = torch.rand(3, size, size, generator=generator) * 0.2
        side = size // 3
        x, y = (int(v) for v in torch.randint(0, size - side, (2,), generator=generator))
        image[:, y:y + side, x:x + side] += 0.8
        images.append(image)
        targets.append({"boxes": torch.tensor([[x, y, x + side, y + side]], dtype=torch.float32),
                        "labels": torch.tensor([1])})
    return images, targets


def box_masks(targets: list[dict], size: tuple[int, int], image_size: int) -> torch.Tensor:
    """1 inside each image's boxes, 0 elsewhere, at a tap's resolution."""
    masks = torch.zeros(len(targets), 1, *size)
    scale_y, scale_x = size[0] / image_size, size[1] / image_size
    for index, target in enumerate(targets):
        for x0, y0, x1, y1 in target["boxes"].tolist():
            masks[index, 0, int(y0 * scale_y):max(int(y1 * scale_y), int(y0 * scale_y) + 1),
                  int(x0 * scale_x):max(int(x1 * scale_x), int(x0 * scale_x) + 1)] = 1
    return masks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--smoke", action="store_true", help="tiny images and two steps")
    options = parser.parse_args()
    size, steps = (96, 2) if options.smoke else (224, options.steps)
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)

    detector = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn(
        weights=None, weights_backbone=None, num_classes=2, min_size=size, max_size=size).train()
    images, targets = synthetic_batch(size, generator)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", tapfinder.EagerGraphWarning)
        arch = tapfinder.trace(detector, (images, targets))  # real targets: boxes must be valid
    print(str(caught[0].message).splitlines()[0] if caught else "traced")
    taps = tapfinder.select_taps(arch, k=3)
    for tap in taps:
        print(f"tap {arch[tap.node]['hook']:32} {tap.shape}")

    tapped = imachsr.instrument(detector, taps, (images, targets), arch=arch)
    heads = nn.ModuleDict({name.replace(".", "/"): nn.Conv2d(shape[1], 1, 1)
                           for name, shape in zip(tapped.taps, (t.shape for t in taps))})
    optimizer = torch.optim.SGD([*detector.parameters(), *heads.parameters()], lr=0.01,
                                momentum=0.9)
    for step in range(steps):
        images, targets = synthetic_batch(size, generator)
        losses, features = tapped(images, targets)  # the detector's losses, as without taps
        auxiliary = sum(
            F.binary_cross_entropy_with_logits(
                heads[name.replace(".", "/")](feature),
                box_masks(targets, feature.shape[-2:], size))
            for name, feature in features.items()) / len(features)
        loss = sum(losses.values()) + 0.4 * auxiliary
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        print(f"step {step + 1}: detector {sum(losses.values()).item():.3f}  "
              f"auxiliary {auxiliary.item():.3f}")


if __name__ == "__main__":
    main()
