"""Segmentation metrics as the paper reports them: mIoU, mF1, mPre, mRec from one streaming
confusion matrix."""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["SegmentationMetrics"]


class SegmentationMetrics:
    """Accumulates a confusion matrix over batches and computes per-class and mean scores.

    Means run over the classes that occur in the ground truth *or* the prediction of the data
    seen so far (a class absent from both has no defined IoU and is left out rather than
    counted as 0 or 1). Per-class lists hold ``nan`` for such classes.

    Parameters
    ----------
    num_classes
        Number of classes ``K``.
    ignore_index
        Label value whose pixels are not counted.

    Examples
    --------
    >>> metrics = SegmentationMetrics(3)
    >>> metrics.update(torch.tensor([[0, 1, 2]]), torch.tensor([[0, 1, 1]]))
    >>> round(metrics.compute()["mIoU"], 4)
    0.5
    """

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive; got {num_classes}.")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def reset(self) -> None:
        self.confusion.zero_()

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ``prediction`` is class indices ``(B, *S)`` or logits ``(B, K, *S)``."""
        if prediction.is_floating_point():
            prediction = prediction.argmax(dim=1)
        if prediction.shape != target.shape:
            raise ValueError(
                f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ; "
                "resize the logits to the label size before updating."
            )
        valid = target != self.ignore_index
        truth, guess = target[valid].long().cpu(), prediction[valid].long().cpu()
        if truth.numel() and (int(truth.min()) < 0 or int(truth.max()) >= self.num_classes):
            raise ValueError(f"target holds values outside [0, {self.num_classes}) besides ignore_index.")
        counts = torch.bincount(truth * self.num_classes + guess, minlength=self.num_classes**2)
        self.confusion += counts.reshape(self.num_classes, self.num_classes)

    def all_reduce(self) -> None:
        """Sum the confusion matrices of all ``torch.distributed`` ranks (one collective)."""
        if dist.is_available() and dist.is_initialized():
            backend_device = "cuda" if dist.get_backend() == "nccl" else "cpu"
            confusion = self.confusion.to(backend_device)
            dist.all_reduce(confusion)
            self.confusion = confusion.cpu()

    def compute(self) -> dict[str, float | list[float]]:
        """``mIoU``, ``mF1``, ``mPre``, ``mRec``, ``pixel_accuracy`` and per-class lists
        (``IoU``, ``F1``, ``precision``, ``recall``), all in [0, 1]."""
        confusion = self.confusion.double()
        true_positive = confusion.diag()
        in_truth, in_prediction = confusion.sum(1), confusion.sum(0)
        present = (in_truth + in_prediction) > 0

        def ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
            scores = torch.where(denominator > 0, numerator / denominator.clamp_min(1), torch.zeros_like(numerator))
            return torch.where(present, scores, torch.full_like(scores, float("nan")))

        iou = ratio(true_positive, in_truth + in_prediction - true_positive)
        precision = ratio(true_positive, in_prediction)
        recall = ratio(true_positive, in_truth)
        f1 = ratio(2 * true_positive, in_truth + in_prediction)
        total = confusion.sum()

        def mean(scores: torch.Tensor) -> float:
            return float(scores[present].mean()) if bool(present.any()) else float("nan")

        return {
            "mIoU": mean(iou), "mF1": mean(f1), "mPre": mean(precision), "mRec": mean(recall),
            "pixel_accuracy": float(true_positive.sum() / total) if total > 0 else float("nan"),
            "IoU": iou.tolist(), "F1": f1.tolist(), "precision": precision.tolist(),
            "recall": recall.tolist(),
        }
