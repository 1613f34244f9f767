"""Deep supervision for a model you wrote, in a training loop you own.

What this shows, in order:

1. a small segmentation network of your own (any ``nn.Module`` works);
2. ``imachsr.IMacHSR`` wrapping it: tapfinder picks the taps, small heads are attached, and
   ``imachsr.adapter_arithmetic`` says what they add to each step;
3. your loop: ``scheme(images, labels)`` returns the loss to back-propagate (the output's
   cross-entropy plus the taps' terms at constant weights);
4. the trained weights saved from ``scheme.model`` load into a fresh instance of *your* class:
   the heads were only for training.

Run:  python examples/train_your_own_model.py            (about 2 minutes on a laptop CPU)
      python examples/train_your_own_model.py --smoke    (a few steps, to check it runs)
"""

from __future__ import annotations

import argparse

import torch
from torch import nn
from torch.utils.data import DataLoader

import imachsr
from imachsr.checkpoints import save_atomically
from imachsr.data import DigitCanvas, PairedTransform
from imachsr.metrics import SegmentationMetrics


class TinySegmenter(nn.Module):
    """An encoder of three stride-2 stages and a decoder with one skip connection."""

    def __init__(self, num_classes: int, width: int = 32) -> None:
        super().__init__()

        def stage(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
            )

        self.stage1 = stage(3, width)              # 1/2
        self.stage2 = stage(width, 2 * width)      # 1/4
        self.stage3 = stage(2 * width, 4 * width)  # 1/8
        self.reduce = nn.Conv2d(4 * width, 2 * width, 1)
        self.fuse = nn.Sequential(
            nn.Conv2d(4 * width, 2 * width, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * width), nn.ReLU(inplace=True),
        )
        self.classifier = nn.Conv2d(2 * width, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        quarter = self.stage2(self.stage1(x))
        deep = self.reduce(self.stage3(quarter))
        deep = nn.functional.interpolate(deep, size=quarter.shape[-2:], mode="bilinear",
                                         align_corners=False)
        logits = self.classifier(self.fuse(torch.cat([quarter, deep], dim=1)))
        return nn.functional.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def loaders(size: int, train_length: int, batch_size: int) -> tuple[DataLoader, DataLoader]:
    """DigitCanvas (real handwritten digits on canvases, no download) with paired augmentation."""
    augment = PairedTransform(train=True, crop=(size, size), flip=False)  # digits are not mirror-symmetric
    plain = PairedTransform(train=False)

    class Transformed(torch.utils.data.Dataset):
        def __init__(self, base: DigitCanvas, transform: PairedTransform) -> None:
            self.base, self.transform = base, transform

        def __len__(self) -> int:
            return len(self.base)

        def __getitem__(self, index: int):
            return self.transform(*self.base[index])

    train_set = Transformed(DigitCanvas("train", length=train_length, size=size, cache=True), augment)
    val_set = Transformed(DigitCanvas("val", length=64, size=size), plain)
    return (DataLoader(train_set, batch_size=batch_size, shuffle=True, drop_last=True),
            DataLoader(val_set, batch_size=batch_size))


def validation_miou(model: nn.Module, loader: DataLoader, num_classes: int) -> float:
    metrics = SegmentationMetrics(num_classes)
    model.eval()
    with torch.no_grad():
        for images, labels in loader:
            metrics.update(model(images).argmax(1), labels)
    model.train()
    return metrics.compute()["mIoU"] * 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few steps on tiny canvases")
    parser.add_argument("--out", default="tiny_segmenter.pt", help="where to save the weights")
    options = parser.parse_args()
    size, epochs, train_length = (32, 1, 16) if options.smoke else (64, 6, 512)
    torch.manual_seed(0)

    num_classes = DigitCanvas.num_classes  # background + ten digits
    model = TinySegmenter(num_classes)
    scheme = imachsr.IMacHSR(model, num_classes, example_inputs=(2, 3, size, size))
    print("taps:", ", ".join(scheme.taps))  # where tapfinder put the supervision
    # What the heads add to each step, before paying it: a head on a wide, fine tap can cost
    # more than the model (narrow it with head_width=, or pick another tap).
    print(imachsr.adapter_arithmetic(scheme, example_inputs=(8, 3, size, size)).summary())

    train_loader, val_loader = loaders(size, train_length, batch_size=8)
    optimizer = torch.optim.Adam(scheme.parameters(), lr=2e-3)  # model and heads together
    for epoch in range(epochs):
        for images, labels in train_loader:
            out = scheme(images, labels)  # out.loss: output CE + the taps' terms
            optimizer.zero_grad()
            out.loss.backward()
            optimizer.step()
        terms = out.terms  # plain floats: reading them waits for the device, so log sparingly
        print(f"epoch {epoch + 1}/{epochs}: loss {terms['loss']:.3f} (output CE {terms['ce']:.3f}),"
              f" validation mIoU {validation_miou(scheme.model, val_loader, num_classes):.1f}")

    # Keep only your model's weights: they load into the class you wrote, no heads attached.
    save_atomically(scheme.model.state_dict(), options.out)  # never a half-written file
    restored = TinySegmenter(num_classes)
    restored.load_state_dict(torch.load(options.out))
    images, _ = next(iter(val_loader))
    same = torch.equal(restored.eval()(images), scheme.model.eval()(images))
    print(f"saved {options.out}; a fresh TinySegmenter loads it and predicts the same: {same}")


if __name__ == "__main__":
    main()
