"""Deep supervision in PyTorch Lightning: a plain ``IMacHSR`` inside a ``LightningModule``.

What this shows, in order:

1. a ``LightningModule`` that wraps your model with ``imachsr.IMacHSR`` in ``__init__``;
2. ``training_step`` returns the scheme's loss and logs every term (``ce``, ``mi/<tap>``) with
   ``self.log_dict``, reduced over the epoch and over processes;
3. the same module under ``Trainer(accelerator="cpu")``, ``strategy="ddp"`` on several CPU
   processes, or ``torchrun`` (Lightning reads the launcher's environment);
4. the checkpoint Lightning writes holds the scheme (model and heads);
   ``imachsr.plain_state_dict(checkpoint)`` gives your model's weights alone, which load into a
   fresh instance of *your* class.

No helper class is needed: ``IMacHSR`` is an ``nn.Module`` whose parameters (model and heads)
the optimizer takes, and whose loss ``training_step`` returns.

Run:  python examples/lightning_module.py                        (about 2 minutes on a CPU)
      python examples/lightning_module.py --smoke                (a few steps, to check it runs)
      python examples/lightning_module.py --smoke --devices 2    (DDP, two CPU processes)
      torchrun --nproc-per-node 2 examples/lightning_module.py --smoke --devices 2
"""

from __future__ import annotations

import argparse
from pathlib import Path

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader

import imachsr
from imachsr.data import DigitCanvas, PairedTransform


class SmallSegmenter(nn.Module):
    """Your model: three stride-2 stages, a decoder join with the quarter-resolution features."""

    def __init__(self, num_classes: int, width: int = 16) -> None:
        super().__init__()

        def stage(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
                                 nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))

        self.stage1, self.stage2 = stage(3, width), stage(width, 2 * width)
        self.stage3 = stage(2 * width, 4 * width)
        self.fuse = nn.Conv2d(6 * width, num_classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        quarter = self.stage2(self.stage1(x))
        deep = nn.functional.interpolate(self.stage3(quarter), size=quarter.shape[-2:])
        logits = self.fuse(torch.cat([quarter, deep], dim=1))
        return nn.functional.interpolate(logits, size=x.shape[-2:], mode="bilinear")


class DeepSupervisedSegmentation(L.LightningModule):
    """Your model, trained with deep supervision on automatic taps."""

    def __init__(self, num_classes: int, size: int, lr: float = 2e-3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.scheme = imachsr.IMacHSR(SmallSegmenter(num_classes), num_classes,
                                      example_inputs=(2, 3, size, size))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        images, labels = batch
        out = self.scheme(images, labels)
        # term_tensors stay on the device: Lightning reduces them at the epoch's end.
        self.log_dict({f"train/{name}": value for name, value in out.term_tensors.items()},
                      on_step=False, on_epoch=True, sync_dist=True)
        return out.loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
        images, labels = batch
        logits = self.scheme.model(images)  # the plain model, as it will be deployed
        errors = (logits.argmax(1) != labels).float().mean()
        self.log("val/pixel_error", errors, on_epoch=True, sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.scheme.parameters(), lr=self.hparams.lr)  # model and heads


class Transformed(torch.utils.data.Dataset):
    def __init__(self, split: str, length: int, size: int) -> None:
        self.base = DigitCanvas(split, length=length, size=size, cache=True)
        self.transform = PairedTransform(train=split == "train", crop=(size, size), flip=False)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(*self.base[index])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few steps on tiny canvases")
    parser.add_argument("--devices", type=int, default=1, help="CPU processes (2+: DDP)")
    parser.add_argument("--out", default="lightning_run", help="checkpoint folder")
    options = parser.parse_args()
    size, length, epochs = (32, 16, 2) if options.smoke else (64, 512, 6)
    out = Path(options.out)  # the same in every process DDP starts
    L.seed_everything(0, verbose=False)

    num_classes = DigitCanvas.num_classes
    module = DeepSupervisedSegmentation(num_classes, size)
    trainer = L.Trainer(
        accelerator="cpu", devices=options.devices, max_epochs=epochs, default_root_dir=out,
        strategy="ddp" if options.devices > 1 else "auto", logger=False,
        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, DataLoader(Transformed("train", length, size), batch_size=8, shuffle=True),
                DataLoader(Transformed("val", 32, size), batch_size=8))
    if not trainer.is_global_zero:
        return
    print("taps:", ", ".join(module.scheme.taps))
    print("logged:", {name: round(float(value), 4) for name, value in
                      trainer.callback_metrics.items()})

    # Lightning's checkpoint holds the scheme; your class loads the model's part of it.
    checkpoint = trainer.checkpoint_callback.best_model_path or str(out / "last.ckpt")
    if not Path(checkpoint).is_file():
        trainer.save_checkpoint(checkpoint)
    restored = SmallSegmenter(num_classes)
    restored.load_state_dict(imachsr.plain_state_dict(torch.load(checkpoint, weights_only=False)))
    images, _ = Transformed("val", 8, size)[0]
    same = torch.equal(restored.eval()(images[None]), module.scheme.model.eval()(images[None]))
    print(f"checkpoint {checkpoint}: a fresh SmallSegmenter loads its model weights and "
          f"predicts the same: {same}")


if __name__ == "__main__":
    main()
