"""Train a segmenter with iMacHSR on a data set in the Cityscapes folder layout.

    ROOT/leftImg8bit/{train,val}/CITY/NAME_leftImg8bit.png
    ROOT/gtFine/{train,val}/CITY/NAME_gtFine_labelIds.png

``imachsr.data.Cityscapes`` reads the pairs and maps the label ids to the 19 train ids (255 is
ignored); ``PairedTransform`` scales, crops and flips image and labels together. The model here
is an smp DeepLabV3Plus; any segmenter whose output is ``(B, classes, h, w)`` works (the output
loss resizes logits to the labels).

The same run from the command line, without writing a loop:

    imachsr train --data cityscapes --data-root ROOT --size 512 --epochs 40 --out runs/cityscapes

Run:  python examples/train_on_cityscapes_folder.py --data-root /data/cityscapes
      python examples/train_on_cityscapes_folder.py --smoke   (writes a tiny stand-in folder of
                                                              random images, to check it runs)
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

import imachsr
from imachsr.checkpoints import save_atomically
from imachsr.data import Cityscapes, PairedTransform
from imachsr.metrics import SegmentationMetrics
from tapfinder.zoo import build_model


def write_stand_in(root: Path, images_per_split: int = 4, size: tuple[int, int] = (64, 128)) -> None:
    """Random images and label-id maps in the Cityscapes layout (only for ``--smoke``)."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for index in range(images_per_split):
            name = f"smoke_{index:06d}_000019"
            image_dir, label_dir = root / "leftImg8bit" / split / "smoke", root / "gtFine" / split / "smoke"
            image_dir.mkdir(parents=True, exist_ok=True)
            label_dir.mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            label_ids = rng.choice(Cityscapes.LABEL_IDS + (0,), size=size).astype(np.uint8)
            Image.fromarray(pixels).save(image_dir / f"{name}_leftImg8bit.png")
            Image.fromarray(label_ids).save(label_dir / f"{name}_gtFine_labelIds.png")


def run(root: Path, crop: int, epochs: int, batch_size: int, device: torch.device, out: Path) -> None:
    train_set = Cityscapes(root, "train", transform=PairedTransform(train=True, crop=(crop, crop)))
    val_set = Cityscapes(root, "val", transform=PairedTransform(train=False))
    train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, drop_last=True,
                              num_workers=2 if device.type == "cuda" else 0)
    val_loader = DataLoader(val_set, batch_size=1)

    model = build_model("smp:DeepLabV3Plus:resnet18", classes=Cityscapes.num_classes).train()
    scheme = imachsr.IMacHSR(model, Cityscapes.num_classes,
                             example_inputs=(2, 3, crop, crop)).to(device)
    print("taps:", ", ".join(scheme.taps))
    optimizer = torch.optim.AdamW(scheme.parameters(), lr=1e-3, weight_decay=1e-4)

    for epoch in range(epochs):
        for images, labels in train_loader:
            output = scheme(images.to(device), labels.to(device))
            optimizer.zero_grad(set_to_none=True)
            output.loss.backward()
            optimizer.step()
        terms = output.terms  # every term as a float: total, output CE, and each tap's terms
        print(f"epoch {epoch + 1}/{epochs}: loss {terms['loss']:.3f}, output CE {terms['ce']:.3f}")

    metrics = SegmentationMetrics(Cityscapes.num_classes)
    model.eval()
    with torch.no_grad():
        for images, labels in val_loader:  # full images: the model sees a size it never trained on
            logits = imachsr.model_logits(model(images.to(device)))
            logits = torch.nn.functional.interpolate(logits, size=labels.shape[1:], mode="bilinear")
            metrics.update(logits.argmax(1).cpu(), labels)
    print(f"validation mIoU {metrics.compute()['mIoU'] * 100:.2f}")
    save_atomically(model.state_dict(), out)  # the plain model's weights, no heads
    print(f"saved {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, help="the folder holding leftImg8bit/ and gtFine/")
    parser.add_argument("--crop", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("deeplabv3plus_cityscapes.pt"))
    parser.add_argument("--smoke", action="store_true", help="a tiny random stand-in folder")
    options = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if options.smoke:
        with tempfile.TemporaryDirectory() as folder:
            write_stand_in(Path(folder))
            run(Path(folder), crop=64, epochs=1, batch_size=2, device=device, out=options.out)
    elif options.data_root is None:
        parser.error("give --data-root (the Cityscapes folder), or --smoke")
    else:
        run(options.data_root, options.crop, options.epochs, options.batch_size, device, options.out)


if __name__ == "__main__":
    main()
