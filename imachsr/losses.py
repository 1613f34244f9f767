"""The iMacHSR loss terms: mutual information between a tap and the labels (Eq. 1) and the
negative-entropy regulariser on a tap's features (Eq. 2).

Shapes: ``logits`` is ``(B, K, *S)`` for dense prediction (``S`` spatial sizes, equal to the
target's) or ``(B, K)`` for classification; ``target`` is ``(B, *S)`` or ``(B,)`` of class
indices, with ``ignore_index`` marking pixels that no term may see.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

__all__ = [
    "mutual_information_loss", "information_loss", "check_label_range", "negative_entropy",
    "ESTIMATORS",
]

ESTIMATORS = ("joint", "variational", "ce")
_TINY = 1e-12


def _at_least_float32(tensor: torch.Tensor) -> torch.Tensor:
    """Half-precision inputs (autocast) are computed in float32; float64 stays float64."""
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor


def _flatten(
    logits: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits as ``(B, K, N)`` and targets as ``(B, N)``.

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
    return _at_least_float32(logits).reshape(batch, classes, -1), target.reshape(batch, -1)


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

    Raises
    ------
    ValueError
        For an unknown estimator, shapes that do not match, or labels outside ``[0, K)`` that
        are not ``ignore_index``. This check reads the labels on the host once per call;
        :class:`imachsr.IMacHSR` checks its labels itself and calls the unchecked computation.

    Examples
    --------
    >>> logits = torch.tensor([[[9.0, -9.0]], [[-9.0, 9.0]]]).permute(1, 0, 2)  # (1, 2, 2)
    >>> float(-mutual_information_loss(logits, torch.tensor([[0, 1]])))  # = H(Y) = log 2
    0.693...
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}; got {estimator!r}.")
    check_label_range(target, logits.shape[1], ignore_index)
    return information_loss(logits, target, ignore_index=ignore_index, estimator=estimator,
                            normalize=normalize)


def check_label_range(target: torch.Tensor, classes: int, ignore_index: int) -> None:
    """Raise ``ValueError`` naming the labels outside ``[0, classes)`` that are not
    ``ignore_index``. One host synchronisation."""
    outside = (target != ignore_index) & ((target < 0) | (target >= classes))
    if bool(outside.any()):
        values = torch.unique(target[outside]).tolist()
        shown = ", ".join(map(str, values[:8])) + (", ..." if len(values) > 8 else "")
        raise ValueError(
            f"target holds class indices outside [0, {classes}) that are not ignore_index "
            f"({ignore_index}): {shown} (min {values[0]}, max {values[-1]}); check num_classes "
            "and the label mapping."
        )


def information_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    ignore_index: int,
    estimator: str,
    normalize: bool,
) -> torch.Tensor:
    """:func:`mutual_information_loss` without the label check: no host synchronisation, a
    fixed number of operations whatever the batch. Labels must already be in range."""
    flat_logits, labels = _flatten(logits, target)
    batch, classes, _ = flat_logits.shape
    valid = labels != ignore_index
    # Ignored pixels go to an extra bin that is dropped: no masks over (B, K, N) tensors.
    binned = torch.where(valid, labels, classes)
    label_counts = torch.zeros(batch, classes + 1, device=labels.device).scatter_add_(
        1, binned, valid.float()
    )[:, :classes]
    counts = label_counts.sum(dim=1)
    label_prior = label_counts / counts.clamp_min(1).unsqueeze(1)  # (B, C)
    label_entropy = -torch.special.xlogy(label_prior, label_prior).sum(dim=1)

    if estimator in ("ce", "variational"):
        pixel_loss = F.cross_entropy(flat_logits, binned.clamp_max(classes - 1), reduction="none")
        pixel_loss = pixel_loss * valid
        if estimator == "ce":
            return pixel_loss.sum() / counts.sum().clamp_min(1)
        information = label_entropy - pixel_loss.sum(dim=1) / counts.clamp_min(1)
    else:
        probs = flat_logits.softmax(dim=1)  # (B, K, N)
        index = binned.unsqueeze(1).expand(batch, classes, -1)
        joint = torch.zeros(batch, classes, classes + 1, device=probs.device,
                            dtype=probs.dtype).scatter_add_(2, index, probs)[:, :, :classes]
        joint = joint / counts.clamp_min(1).view(-1, 1, 1)  # (B, K predicted, C labels)
        prediction_prior = joint.sum(dim=2, keepdim=True)
        ratio = joint / (prediction_prior * label_prior.unsqueeze(1)).clamp_min(_TINY)
        information = (joint * torch.log(ratio.clamp_min(_TINY))).sum(dim=(1, 2))
    if normalize:
        information = information / label_entropy.clamp_min(_TINY) * (label_entropy > _TINY)
    # The mean over images that have a valid pixel, without indexing (which would synchronise).
    has_pixels = counts > 0
    return -(information * has_pixels).sum() / has_pixels.sum().clamp_min(1)


class _NegativeEntropy(torch.autograd.Function):
    """Weighted sum over positions of ``sum_k p_k log p_k``, saving only its input.

    The model keeps a tap's features alive for its own backward pass anyway; recomputing the
    softmax in backward, in place, keeps this term's saved memory to none of its own and its
    transient memory to two feature-sized buffers, with a fixed number of operations per call.
    """

    @staticmethod
    def forward(ctx, features: torch.Tensor, dim: int, tau: float,
                weights: torch.Tensor | float) -> torch.Tensor:
        if isinstance(weights, torch.Tensor):
            ctx.save_for_backward(features, weights)
        else:
            ctx.save_for_backward(features)
            ctx.weight = weights
        ctx.dim, ctx.tau = dim, tau
        log_p = _scaled_log_softmax(features, dim, tau)
        per_position = (log_p.exp().mul_(log_p)).sum(dim=dim, keepdim=True)
        return (per_position * weights).sum()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        features, *saved_weights = ctx.saved_tensors
        weights = saved_weights[0] if saved_weights else ctx.weight
        log_p = _scaled_log_softmax(features, ctx.dim, ctx.tau)
        p = log_p.exp()
        per_position = (p * log_p).sum(dim=ctx.dim, keepdim=True)
        # d/dx_k sum_j p_j log p_j = p_k (log p_k - sum_j p_j log p_j), times 1/tau
        gradient = log_p.sub_(per_position).mul_(p).mul_(weights * (grad / ctx.tau))
        return gradient.to(features.dtype), None, None, None


def _scaled_log_softmax(features: torch.Tensor, dim: int, tau: float) -> torch.Tensor:
    scaled = _at_least_float32(features)
    return F.log_softmax(scaled / tau if tau != 1.0 else scaled, dim=dim)


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
    dim = dim % features.dim()
    if dim == 0:
        raise ValueError("dim must not be the batch dimension 0: the distribution runs over channels.")
    weights: torch.Tensor | float
    if mask is None:
        weights = 1.0 / max(features.numel() // max(features.shape[dim], 1), 1)
    else:
        expected = features.shape[:dim] + features.shape[dim + 1:]
        if mask.shape != expected:
            raise ValueError(f"mask shape {tuple(mask.shape)} must match the positions {tuple(expected)}.")
        # An all-False mask gives zero weights: an exact 0 with a zero gradient, and no sync.
        weights = (mask.to(_at_least_float32(features).dtype) / mask.sum().clamp_min(1)).unsqueeze(dim)
    return _NegativeEntropy.apply(features, dim, float(tau), weights)
