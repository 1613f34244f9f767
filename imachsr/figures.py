"""Figures a training run writes: loss and metric curves, and a qualitative comparison (image,
ground truth and each model's prediction, as in the paper's Table 3)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .train import RunResult, TrainConfig

__all__ = ["plot_curves", "plot_predictions"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(runs: Sequence[RunResult], labels: Sequence[str], out: Path) -> None:
    """``loss_curve.png`` (training loss and output CE per epoch) and ``metric_curve.png``
    (validation mIoU per epoch) in ``out``."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5, 3.5))
    for run, label in zip(runs, labels):
        epochs = [r["epoch"] + 1 for r in run.history]
        axis.plot(epochs, [r["loss"] for r in run.history], marker="o", label=f"{label}: total loss")
        axis.plot(epochs, [r["ce"] for r in run.history], linestyle="--", label=f"{label}: output CE")
    axis.set(xlabel="epoch", ylabel="training loss", title="Training loss")
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(out / "loss_curve.png", dpi=120)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(5, 3.5))
    for run, label in zip(runs, labels):
        axis.plot([r["epoch"] + 1 for r in run.history], [r["val"]["mIoU"] * 100 for r in run.history],
                  marker="o", label=label)
    axis.set(xlabel="epoch", ylabel="validation mIoU (%)", title="Validation mIoU")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out / "metric_curve.png", dpi=120)
    plt.close(figure)


def plot_predictions(config: TrainConfig, checkpoints: Sequence[Path], labels: Sequence[str],
                     path: Path, samples: int = 4) -> Path:
    """A grid: one test image per row; image, ground truth, then each checkpoint's prediction."""
    from .data.transforms import IMAGENET_MEAN, IMAGENET_STD
    from .train import _build, _datasets

    plt = _pyplot()
    _, _, test_set, classes = _datasets(config)
    models = []
    for checkpoint in checkpoints:
        model = _build(config, classes)
        model.load_state_dict(torch.load(checkpoint, map_location="cpu"))
        models.append(model.eval())
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    columns = ["image", "ground truth", *labels]
    figure, axes = plt.subplots(samples, len(columns), figsize=(2 * len(columns), 2 * samples),
                                squeeze=False)
    with torch.no_grad():
        for row in range(min(samples, len(test_set))):
            image, truth = test_set[row]
            shown = [((image * std + mean).clamp(0, 1)).permute(1, 2, 0), truth]
            for model in models:
                from .scheme import model_logits

                logits = model_logits(model(image[None]))
                shown.append(logits.argmax(1)[0])
            for column, picture in enumerate(shown):
                axis = axes[row][column]
                if column == 0:
                    axis.imshow(picture.numpy())
                else:
                    axis.imshow(picture.numpy(), cmap="tab20", vmin=0, vmax=max(classes, 20) - 1,
                                interpolation="nearest")
                axis.set_axis_off()
                if row == 0:
                    axis.set_title(columns[column], fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
