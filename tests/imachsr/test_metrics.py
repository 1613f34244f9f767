import math

import numpy as np
import pytest
import torch

from imachsr.metrics import SegmentationMetrics


def independent(pred: np.ndarray, truth: np.ndarray, classes: int, ignore: int) -> dict:
    """Per-class scores with explicit loops over classes and pixels."""
    valid = truth != ignore
    scores = {"IoU": [], "F1": [], "precision": [], "recall": []}
    present = []
    for c in range(classes):
        tp = int(np.sum((pred == c) & (truth == c) & valid))
        fp = int(np.sum((pred == c) & (truth != c) & valid))
        fn = int(np.sum((pred != c) & (truth == c) & valid))
        if tp + fp + fn == 0:
            for values in scores.values():
                values.append(math.nan)
            continue
        present.append(c)
        scores["IoU"].append(tp / (tp + fp + fn))
        scores["precision"].append(tp / (tp + fp) if tp + fp else 0.0)
        scores["recall"].append(tp / (tp + fn) if tp + fn else 0.0)
        scores["F1"].append(2 * tp / (2 * tp + fp + fn))
    means = {f"m{k}": float(np.mean([scores[name][c] for c in present]))
             for k, name in (("IoU", "IoU"), ("F1", "F1"), ("Pre", "precision"), ("Rec", "recall"))}
    return {**scores, **means}


def test_matches_an_independent_computation_over_streamed_batches():
    rng = np.random.default_rng(0)
    classes = 5
    truth = rng.integers(0, classes - 1, (6, 9, 7))  # class 4 never in the truth...
    pred = rng.integers(0, classes - 2, (6, 9, 7))   # ...nor predicted: it is left out
    truth[rng.random(truth.shape) < 0.1] = 255
    metrics = SegmentationMetrics(classes)
    for b in range(0, 6, 2):
        metrics.update(torch.from_numpy(pred[b:b + 2]), torch.from_numpy(truth[b:b + 2]))
    result, expected = metrics.compute(), independent(pred, truth, classes, 255)
    for key in ("mIoU", "mF1", "mPre", "mRec"):
        assert result[key] == pytest.approx(expected[key], abs=1e-12)
    for key in ("IoU", "F1", "precision", "recall"):
        np.testing.assert_allclose(result[key], expected[key], atol=1e-12)
    assert math.isnan(result["IoU"][4])


def test_logits_are_reduced_with_argmax():
    metrics = SegmentationMetrics(3)
    logits = torch.zeros(1, 3, 1, 2)
    logits[0, 2, 0, 0] = logits[0, 1, 0, 1] = 1
    metrics.update(logits, torch.tensor([[[2, 0]]]))
    assert metrics.compute()["IoU"][2] == 1.0 and metrics.compute()["IoU"][0] == 0.0


def test_reset_and_errors():
    metrics = SegmentationMetrics(3)
    metrics.update(torch.tensor([[0]]), torch.tensor([[0]]))
    metrics.reset()
    assert math.isnan(metrics.compute()["mIoU"])
    with pytest.raises(ValueError, match="resize the logits"):
        metrics.update(torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="outside"):
        metrics.update(torch.zeros(1, 1, dtype=torch.long), torch.full((1, 1), 3))


def test_all_reduce_is_a_no_op_without_a_process_group():
    metrics = SegmentationMetrics(2)
    metrics.update(torch.tensor([[0, 1]]), torch.tensor([[0, 1]]))
    metrics.all_reduce()
    assert metrics.compute()["mIoU"] == 1.0
