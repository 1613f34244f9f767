"""Figures a training run writes: loss and metric curves, and a qualitative comparison (image,
ground truth and each model's prediction, as in the paper's Table 3)."""

from __future__ import annotations

from collections.abc import Sequence, Sized
from pathlib import Path
from typing import TYPE_CHECKING, cast

import torch
from torch import nn
from torch.utils.data import Dataset

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .train import RunResult

__all__ = ["plot_curves", "loss_figure", "metric_figure", "plot_predictions", "prediction_figure"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(runs: Sequence[RunResult], labels: Sequence[str], out: Path) -> None:
    """``loss_curve.png`` (:func:`loss_figure`) and ``metric_curve.png`` (validation mIoU per
    epoch) in ``out``."""
    plt = _pyplot()
    for name, figure in (("loss_curve.png", loss_figure(runs, labels)),
                         ("metric_curve.png", metric_figure(runs, labels))):
        figure.savefig(out / name, dpi=120)
        plt.close(figure)


def loss_figure(runs: Sequence[RunResult], labels: Sequence[str]):
    """Two panels: the output cross-entropy, which every arm minimises and so can be compared
    across arms, and each arm's whole objective, which for iMacHSR adds the taps' terms and so
    is not comparable with output-only's."""
    plt = _pyplot()
    figure, (output_axis, objective_axis) = plt.subplots(1, 2, figsize=(9, 3.5))
    for run, label in zip(runs, labels):
        epochs = [r["epoch"] + 1 for r in run.history]
        output_axis.plot(epochs, [r["ce"] for r in run.history], marker="o", label=label)
        objective_axis.plot(epochs, [r["loss"] for r in run.history], marker="o", label=label)
    output_axis.set(xlabel="epoch", ylabel="cross-entropy", title="Output cross-entropy (training)")
    objective_axis.set(xlabel="epoch", ylabel="objective",
                       title="Whole objective (iMacHSR adds the taps' terms)")
    for axis in (output_axis, objective_axis):
        _whole_epochs(axis)
        axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def metric_figure(runs: Sequence[RunResult], labels: Sequence[str]):
    """Validation mIoU per epoch, one line per arm."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5, 3.5))
    for run, label in zip(runs, labels):
        axis.plot([r["epoch"] + 1 for r in run.history], [r["val"]["mIoU"] * 100 for r in run.history],
                  marker="o", label=label)
    axis.set(xlabel="epoch", ylabel="validation mIoU (%)", title="Validation mIoU")
    _whole_epochs(axis)
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def _whole_epochs(axis) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.xaxis.set_major_locator(MaxNLocator(integer=True))


def plot_predictions(models: Sequence[nn.Module], labels: Sequence[str], test_set: Dataset,
                     class_names: Sequence[str], path: Path, samples: int = 4) -> Path:
    """Write :func:`prediction_figure` to ``path``."""
    plt = _pyplot()
    figure = prediction_figure(models, labels, test_set, class_names, samples)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return path


def prediction_figure(models: Sequence[nn.Module], labels: Sequence[str], test_set: Dataset,
                      class_names: Sequence[str], samples: int = 4) -> Figure:
    """A grid: one image of ``test_set`` (normalised as for training) per row; the image, its
    ground truth, then each model's prediction (``labels`` name the models), with a legend of
    the classes that appear (ignored pixels are black)."""
    from matplotlib.patches import Patch

    from .data.transforms import IMAGENET_MEAN, IMAGENET_STD
    from .scheme import model_logits

    plt = _pyplot()
    classes = len(class_names)
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    colours = plt.get_cmap("tab20").resampled(max(classes, 20))
    # One RGB colour per class, then black for anything else (ignored pixels).
    palette = torch.tensor([colours(c)[:3] for c in range(classes)] + [(0.0, 0.0, 0.0)])
    columns = ["image", "ground truth", *labels]
    figure, axes = plt.subplots(samples, len(columns), figsize=(2 * len(columns), 2 * samples),
                                squeeze=False)
    present: set[int] = set()
    with torch.no_grad():
        for row in range(min(samples, len(cast(Sized, test_set)))):
            image, truth = test_set[row]
            maps = [truth, *(model_logits(model(image[None])).argmax(1)[0] for model in models)]
            axes[row][0].imshow(((image * std + mean).clamp(0, 1)).permute(1, 2, 0).numpy())
            for axis, class_map in zip(axes[row][1:], maps):
                present.update(int(c) for c in class_map.unique() if c < classes)
                known = torch.where(class_map < classes, class_map, torch.full_like(class_map, classes))
                axis.imshow(palette[known].numpy(), interpolation="nearest")
            for column, axis in enumerate(axes[row]):
                axis.set_axis_off()
                if row == 0:
                    axis.set_title(columns[column], fontsize=9)
    handles = [Patch(color=colours(c), label=class_names[c]) for c in sorted(present)]
    figure.tight_layout()
    figure.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0),
                  ncol=min(len(handles), 11), fontsize=7, frameon=False, handlelength=1.0,
                  columnspacing=0.8)
    return figure
