"""Supervised pixel contrast (Wang et al., ICCV 2021; for intermediate layers, Zhang et al.,
ECCV 2022, "Contrastive Deep Supervision") on a tap head's embedding.

Anchors are pixels of the batch; each anchor's positives are the other anchors of its class,
anywhere in the batch, and its negatives the anchors of other classes. With the embeddings
L2-normalised and a temperature ``TEMPERATURE``, an anchor's loss is the mean over its
positives ``p`` of ``-log(exp(s_ip / t) / sum_{a != i} exp(s_ia / t))``: same-class pixels are
pulled together, others pushed apart, across images. The cost is bounded: at most ``ANCHORS``
pixels are drawn (uniformly among the valid ones, without a host synchronisation), so the
similarity matrix is at most ``ANCHORS x ANCHORS`` whatever the image size.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

__all__ = ["pixel_contrast_loss", "ANCHORS", "TEMPERATURE", "CONTRAST_WEIGHT"]

ANCHORS = 1024
TEMPERATURE = 0.1  # Wang et al.'s
CONTRAST_WEIGHT = 0.1  # beside cross-entropy, as Wang et al. weight it


def pixel_contrast_loss(embedding: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor,
                        *, anchors: int = ANCHORS, temperature: float = TEMPERATURE) -> torch.Tensor:
    """The supervised contrastive loss of ``embedding`` ``(B, D, *S)`` (or ``(B, D)``) against
    class indices ``labels`` ``(B, *S)`` (or ``(B,)``), counting only ``valid`` pixels.

    Where the batch has no more than ``anchors`` pixels, every valid one is an anchor, so the
    loss is deterministic; otherwise ``anchors`` valid pixels are drawn from torch's random
    stream. Anchors without a positive contribute nothing; with none at all the loss is an
    exact 0 that still carries a (zero) gradient.
    """
    dimensions = embedding.shape[1]
    points = embedding.movedim(1, -1).reshape(-1, dimensions)
    flat_labels, flat_valid = labels.reshape(-1), valid.reshape(-1)
    if points.shape[0] > anchors:
        # The top scores of uniform noise, lifted by 2 where valid: valid pixels drawn first,
        # uniformly, with a count fixed by the shapes (no host synchronisation).
        scores = torch.rand(points.shape[0], device=points.device) + 2 * flat_valid
        chosen = scores.topk(anchors).indices
        points, flat_labels, flat_valid = points[chosen], flat_labels[chosen], flat_valid[chosen]
    points = F.normalize(points.float() if points.dtype in (torch.float16, torch.bfloat16)
                         else points, dim=1)
    similarity = points @ points.t() / temperature
    count = points.shape[0]
    others = ~torch.eye(count, dtype=torch.bool, device=points.device)
    pairs = others & flat_valid.unsqueeze(0) & flat_valid.unsqueeze(1)
    # A finite stand-in for -inf: exp() of it is 0, and a row with no pair keeps a finite
    # gradient (a row of -inf would give NaN through logsumexp's backward).
    log_probability = similarity - torch.logsumexp(
        similarity.masked_fill(~pairs, -1e4), dim=1, keepdim=True)
    positives = pairs & (flat_labels.unsqueeze(0) == flat_labels.unsqueeze(1))
    positive_count = positives.sum(dim=1)
    per_anchor = -(log_probability.masked_fill(~positives, 0.0)).sum(dim=1) / positive_count.clamp_min(1)
    has_positive = (positive_count > 0).to(per_anchor.dtype)
    return (per_anchor * has_positive).sum() / has_positive.sum().clamp_min(1)
