"""The iMacHSR loss terms: mutual information between a tap and the labels (Eq. 1) and the
negative-entropy regulariser on a tap's features (Eq. 2).

Shapes: ``logits`` is ``(B, K, *S)`` for dense prediction (``S`` spatial sizes, equal to the
target's) or ``(B, K)`` for classification; ``target`` is ``(B, *S)`` or ``(B,)`` of class
indices, with ``ignore_index`` marking pixels that no term may see.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

__all__ = ["mutual_information_loss", "negative_entropy", "ESTIMATORS"]

ESTIMATORS = ("joint", "variational", "ce")
_TINY = 1e-12


def _flatten(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(B, N, K)`` log-probabilities, ``(B, N)`` targets (ignored set to 0), ``(B, N)`` mask.

    Classification (``(B, K)`` logits, ``(B,)`` target) becomes one "image" whose pixels are
    the batch's samples: mutual information is a property of a set of samples.
    """
    if logits.dim() == 2:
        logits, target = logits.t().unsqueeze(0), target.unsqueeze(0)
    if logits.shape[0] != target.shape[0] or logits.shape[2:] != target.shape[1:]:
        raise ValueError(
            f"logits {tuple(logits.shape)} and target {tuple(target.shape)} do not match: "
            "expected logits (B, K, *S) with target (B, *S). Resize one to the other first."
        )
    batch, classes = logits.shape[:2]
    log_probs = F.log_softmax(logits.float().reshape(batch, classes, -1), dim=1).transpose(1, 2)
    target = target.reshape(batch, -1)
    valid = target != ignore_index
    return log_probs, torch.where(valid, target, torch.zeros_like(target)), valid


def mutual_information_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    ignore_index: int = 255,
    estimator: str = "joint",
    normalize: bool = False,
) -> torch.Tensor:
    """Negative image-wise mutual information between predictions and labels (Eq. 1).

    Parameters
    ----------
    logits
        Adapter output, ``(B, K, *S)`` or ``(B, K)``.
    target
        Class indices, ``(B, *S)`` or ``(B,)``; values in ``[0, K)`` or ``ignore_index``.
    estimator
        ``"joint"`` (default, heterogeneous): per image, the plug-in MI of the joint
        distribution ``P(c, k) = mean_p onehot(y_p)_c softmax(z_p)_k``. It is invariant to
        permuting the adapter's channels, so the tap is pushed to be *informative about* the
        labels without having to predict them the way the output layer does.
        ``"variational"``: the Barber-Agakov bound ``I >= H(Y) - CE``, per image; its gradient is
        the cross-entropy's. ``"ce"``: plain cross-entropy over all valid pixels, the classic
        deep supervision (PSPNet, DSN), for comparison.
    normalize
        Divide each image's MI by ``H(Y)`` of its labels, so it lies in ``[0, 1]`` (``joint`` and
        ``variational``).

    Returns
    -------
    torch.Tensor
        A scalar to minimise. Images with no valid pixel contribute nothing; images with a
        single class have ``H(Y) = 0`` and contribute 0. When no pixel is valid at all the loss
        is an exact 0 that still carries a (zero) gradient.

    Examples
    --------
    >>> logits = torch.tensor([[[9.0, -9.0]], [[-9.0, 9.0]]]).permute(1, 0, 2)  # (1, 2, 2)
    >>> float(-mutual_information_loss(logits, torch.tensor([[0, 1]])))  # = H(Y) = log 2
    0.693...
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}; got {estimator!r}.")
    log_probs, labels, valid = _flatten(logits, target, ignore_index)
    classes = log_probs.shape[2]
    outside = valid & ((labels < 0) | (labels >= classes))
    if bool(outside.any()):
        bad = torch.unique(labels[outside]).tolist()
        raise ValueError(
            f"target holds class indices {bad} outside [0, {classes}) that are not ignore_index "
            f"({ignore_index}); check num_classes and the label mapping."
        )
    counts = valid.sum(dim=1)
    has_pixels = counts > 0
    if not bool(has_pixels.any()):
        return logits.sum() * 0.0

    onehot = F.one_hot(labels, classes).to(log_probs.dtype) * valid.unsqueeze(2)
    label_prior = onehot.sum(dim=1) / counts.clamp_min(1).unsqueeze(1)  # (B, C)
    label_entropy = -(label_prior * torch.log(label_prior.clamp_min(_TINY))).sum(dim=1)

    if estimator == "ce":
        picked = (onehot * log_probs).sum(dim=2)
        return -(picked.sum() / counts.sum())
    if estimator == "variational":
        cross_entropy = -(onehot * log_probs).sum(dim=(1, 2)) / counts.clamp_min(1)
        information = label_entropy - cross_entropy
    else:
        probs = log_probs.exp() * valid.unsqueeze(2)
        joint = onehot.transpose(1, 2) @ probs / counts.clamp_min(1).view(-1, 1, 1)  # (B, C, K)
        prediction_prior = joint.sum(dim=1, keepdim=True)
        ratio = joint / (label_prior.unsqueeze(2) * prediction_prior).clamp_min(_TINY)
        information = (joint * torch.log(ratio.clamp_min(_TINY))).sum(dim=(1, 2))
    if normalize:
        informative = label_entropy > _TINY
        information = torch.where(
            informative, information / label_entropy.clamp_min(_TINY), torch.zeros_like(information)
        )
    return -(information[has_pixels].mean())


def negative_entropy(
    features: torch.Tensor,
    *,
    dim: int = 1,
    tau: float = 1.0,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over positions of ``sum_k p_k log p_k`` with ``p = softmax(features / tau, dim)`` (Eq. 2).

    Minimising it maximises the entropy of the channel distribution at each position, which
    discourages over-confident hidden activations (the direction of Pereyra et al.'s confidence
    penalty). Its minimum, ``-log C``, is reached by the uniform distribution over ``C`` channels.

    Parameters
    ----------
    features
        Any tensor with the distribution along ``dim`` (``1`` for ``NCHW``, ``-1`` for tokens).
    mask
        Optional boolean tensor of the remaining dimensions' shape: positions to average over.

    Examples
    --------
    >>> float(negative_entropy(torch.zeros(1, 4, 2, 2)))  # uniform over 4 channels
    -1.386...
    """
    if tau <= 0:
        raise ValueError(f"tau must be positive; got {tau}.")
    log_p = F.log_softmax(features.float() / tau, dim=dim)
    per_position = (log_p.exp() * log_p).sum(dim=dim)
    if mask is None:
        return per_position.mean()
    if mask.shape != per_position.shape:
        raise ValueError(
            f"mask shape {tuple(mask.shape)} must match the positions {tuple(per_position.shape)}."
        )
    if not bool(mask.any()):
        return features.sum() * 0.0
    return per_position[mask].mean()
