"""The iMacHSR loss terms: the information a tap carries about the labels (the paper's Eq. 1) and
the negative-entropy regulariser on a tap's features (its Eq. 2).

Eq. 1 as the paper's authors publish it (iMacSR, their earlier paper with the same results):
``L_m = -1/(|D||Omega|) sum_i sum_p sum_k y_ipk log q_k(z_ip; phi_m)``, the cross-entropy of the
tap's dimension adapter over every valid pixel. Minimising it maximises the Barber-Agakov lower
bound ``I(Y; Z) >= H(Y) + E log q(y | z)`` on the mutual information between the tap and the
labels (``H(Y)`` does not depend on the model). That is the estimator ``"eq1"``. The other two
are this project's own readings of "heterogeneous" supervision, kept for study.

Shapes: ``logits`` is ``(B, K, *S)`` for dense prediction (``S`` spatial sizes, equal to the
target's) or ``(B, K)`` for classification; ``target`` is ``(B, *S)`` or ``(B,)`` of class
indices, with ``ignore_index`` marking pixels that no term may see.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from torch.nn import functional as F

from .region_information import region_information_loss

__all__ = [
    "mutual_information_loss", "information_loss", "LabelStatistics", "label_statistics",
    "check_label_range", "negative_entropy", "Estimator", "ESTIMATORS", "canonical_estimator",
    "RMI_SHARE",
]

# The estimators of Eq. 1's mutual information: the paper's, this project's per-image readings,
# then heterogeneous losses from the literature (issue 24: batch-level joint MI, as IIC computes
# it; region MI beside cross-entropy, as Zhao et al. 2019 train with it; supervised pixel
# contrast on the head's embedding beside cross-entropy, imachsr.pixel_contrast).
Estimator = Literal["eq1", "joint-image", "variational-image", "joint-batch", "rmi", "contrast"]
ESTIMATORS: tuple[Estimator, ...] = ("eq1", "joint-image", "variational-image", "joint-batch",
                                     "rmi", "contrast")
# "rmi" is the published recipe: this share of the region-MI bound, the rest cross-entropy.
RMI_SHARE = 0.5
# Earlier names, still accepted (the records in docs/results/ keep them).
ESTIMATOR_ALIASES: dict[str, Estimator] = {"ce": "eq1", "joint": "joint-image",
                                           "variational": "variational-image"}
_TINY = 1e-12


def _at_least_float32(tensor: torch.Tensor) -> torch.Tensor:
    """Half-precision inputs (autocast) are computed in float32; float64 stays float64."""
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor


class _computed_once:  # noqa: N801 - used as a decorator, like functools.cached_property
    """``functools.cached_property`` without its lock: Python 3.11's takes an ``RLock``, which
    ``torch.compile`` cannot trace, so every tap's term would break the compiled graph."""

    def __init__(self, compute: Callable[[Any], Any]) -> None:
        self.compute, self.name = compute, compute.__name__
        self.__doc__ = compute.__doc__

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        value = instance.__dict__[self.name] = self.compute(instance)  # later reads skip this
        return value


class LabelStatistics:
    """What the loss terms need from one label map, computed once per label size and step, and
    each part only when a term first asks for it: cross-entropy per tap needs the valid-pixel
    count alone, so it pays for no label histogram.

    Classification labels ``(B,)`` are one "image" whose pixels are the batch's samples: mutual
    information is a property of a set of samples.
    """

    def __init__(self, target: torch.Tensor, classes: int, ignore_index: int = 255,
                 dtype: torch.dtype = torch.float32) -> None:
        self.shape: tuple[int, ...] = tuple(target.shape)  # to check the logits against
        self.classes, self.ignore_index, self.dtype = classes, ignore_index, dtype
        # (B, N) class indices, ignored pixels included; classification labels are one "image"
        self.labels = target.reshape(1 if target.dim() == 1 else target.shape[0], -1)

    @_computed_once
    def valid(self) -> torch.Tensor:
        """(B, N) True where the pixel is not ``ignore_index``."""
        return self.labels != self.ignore_index

    @_computed_once
    def weight(self) -> torch.Tensor:
        """(B, N) 1.0 where the pixel is valid."""
        return self.valid.to(self.dtype)

    @_computed_once
    def binned(self) -> torch.Tensor:
        """(B, N) class indices, ignored pixels moved to the extra bin ``classes``: no masks over
        (B, K, N) tensors."""
        return torch.where(self.valid, self.labels, self.classes)

    @_computed_once
    def valid_per_image(self) -> torch.Tensor:
        """(B,) valid pixels per image."""
        return self.weight.sum(dim=1)

    @_computed_once
    def counts(self) -> torch.Tensor:
        """(B, 1, 1) valid pixels per image, at least 1."""
        return self.valid_per_image.clamp_min(1).view(-1, 1, 1)

    @_computed_once
    def prior(self) -> torch.Tensor:
        """(B, C) label distribution per image."""
        label_counts = self.weight.new_zeros(self.labels.shape[0], self.classes + 1).scatter_add_(
            1, self.binned, self.weight)[:, :self.classes]
        return label_counts / self.counts.view(-1, 1)

    @_computed_once
    def entropy(self) -> torch.Tensor:
        """(B,) H(Y) per image."""
        return -torch.special.xlogy(self.prior, self.prior).sum(dim=1)

    @_computed_once
    def image_weight(self) -> torch.Tensor:
        """(B,) 1 / (images with a valid pixel) for those images, else 0."""
        has_pixels = (self.valid_per_image > 0).to(self.dtype)
        return has_pixels / has_pixels.sum().clamp_min(1)

    @_computed_once
    def pixel_weight(self) -> torch.Tensor:
        """(B, N) 1 / (valid pixels in the batch) where valid, else 0."""
        return self.weight / self.valid_per_image.sum().clamp_min(1)


def label_statistics(target: torch.Tensor, classes: int, ignore_index: int = 255,
                     dtype: torch.dtype = torch.float32) -> LabelStatistics:
    """The :class:`LabelStatistics` of ``target`` (``(B, *S)`` or ``(B,)``), in ``dtype``.
    Labels must be in ``[0, classes)`` or ``ignore_index`` (see :func:`check_label_range`).
    Nothing is computed until a term reads it."""
    return LabelStatistics(target, classes, ignore_index, dtype)


def canonical_estimator(name: str) -> str:
    """The current name of an estimator, given it or an earlier name (``"ce"`` is ``"eq1"``).

    >>> canonical_estimator("ce"), canonical_estimator("joint-image")
    ('eq1', 'joint-image')
    """
    name = ESTIMATOR_ALIASES.get(name, name)
    if name not in ESTIMATORS:
        earlier = ", ".join(f"{old} ({new})" for old, new in ESTIMATOR_ALIASES.items())
        raise ValueError(f"the estimator must be one of {', '.join(ESTIMATORS)} (earlier names: "
                         f"{earlier}); got {name!r}.")
    return name


def mutual_information_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    ignore_index: int = 255,
    estimator: str = "eq1",
    normalize: bool = False,
) -> torch.Tensor:
    """The Eq. 1 loss of a tap's adapter output: its negative information about the labels.

    Parameters
    ----------
    logits
        Adapter output, ``(B, K, *S)`` or ``(B, K)``.
    target
        Class indices, ``(B, *S)`` or ``(B,)``; values in ``[0, K)`` or ``ignore_index``.
    estimator
        ``"eq1"`` (default): the paper's Eq. 1, the cross-entropy over every valid pixel of the
        batch, which maximises the Barber-Agakov bound ``I(Y; Z) >= H(Y) - CE``; the same
        computation as classic deep supervision (PSPNet, DSN). Earlier name: ``"ce"``.
        ``"joint-image"`` (this project's, earlier ``"joint"``): per image, the plug-in MI of the
        joint distribution ``P(c, k) = mean_p onehot(y_p)_c softmax(z_p)_k``, invariant to
        permuting the adapter's channels, so a channel may mean one class in one image and
        another in the next. ``"variational-image"`` (this project's, earlier
        ``"variational"``): the same bound as ``"eq1"`` taken per image, ``H(Y_b) - CE_b``,
        each image weighted equally instead of each pixel.
        ``"joint-batch"``: the plug-in MI of the joint distribution over every valid pixel of
        the batch (IIC's form), so a channel must mean one class across images: a perfect
        adapter scores ``H(Y)`` of the batch's labels, where ``"joint-image"`` scores each
        image's own, near 0 on single-digit canvases. ``"rmi"``: region mutual information
        (:mod:`imachsr.region_information`, Zhao et al. 2019) beside cross-entropy, half and
        half as published; dense labels of at least 3x3 only. ``"contrast"`` (supervised pixel
        contrast on the head's hidden embedding beside cross-entropy) is computed by
        :class:`imachsr.IMacHSR`, which holds the heads.
    normalize
        Divide each image's MI by ``H(Y)`` of its labels, so it lies in ``[0, 1]``
        (``"joint-image"`` and ``"variational-image"``).

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
    >>> labels = torch.tensor([[0, 1]])
    >>> float(-mutual_information_loss(logits, labels, estimator="joint-image"))  # H(Y) = log 2
    0.693...
    """
    estimator = canonical_estimator(estimator)
    check_label_range(target, logits.shape[1], ignore_index)
    statistics = label_statistics(target, logits.shape[1], ignore_index,
                                  _at_least_float32(logits).dtype)
    return information_loss(logits, statistics, estimator=estimator, normalize=normalize)


@torch.compiler.disable  # a data-dependent check: run eagerly, not traced into a compiled step
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
    labels: LabelStatistics,
    *,
    estimator: str,
    normalize: bool,
) -> torch.Tensor:
    """:func:`mutual_information_loss` from precomputed :func:`label_statistics`: no label check,
    no host synchronisation, a fixed number of operations whatever the batch. ``estimator`` is
    a current name (:data:`ESTIMATORS`)."""
    given = tuple(logits.shape)
    if logits.dim() == 2:
        matches = labels.shape == (logits.shape[0],)
        logits = logits.t().unsqueeze(0)
    else:
        matches = labels.shape == (logits.shape[0], *logits.shape[2:])
    if not matches:
        raise ValueError(
            f"logits {given} and target {labels.shape} do not match: expected "
            "logits (B, K, *S) with target (B, *S). Resize one to the other first."
        )
    batch, classes = logits.shape[:2]
    flat_logits = _at_least_float32(logits).reshape(batch, classes, -1)
    if estimator == "eq1":
        total = F.cross_entropy(flat_logits, labels.labels, ignore_index=labels.ignore_index,
                                reduction="sum")
        return total / labels.counts.sum()
    if estimator == "contrast":
        raise ValueError("mi='contrast' compares the head's hidden embedding, which logits do not "
                         "carry: use IMacHSR(..., mi='contrast'), or "
                         "imachsr.pixel_contrast.pixel_contrast_loss on embeddings.")
    if estimator == "rmi":
        if len(labels.shape) != 3:
            raise ValueError(f"region MI needs (B, H, W) labels; got {labels.shape}.")
        total = F.cross_entropy(flat_logits, labels.labels, ignore_index=labels.ignore_index,
                                reduction="sum")
        region = region_information_loss(flat_logits.softmax(dim=1).view(_at_least_float32(logits).shape),
                                         labels.labels.view(labels.shape),
                                         labels.valid.view(labels.shape))
        return (1 - RMI_SHARE) * total / labels.counts.sum() + RMI_SHARE * region
    if estimator == "joint-batch":
        probs = flat_logits.softmax(dim=1)
        index = labels.binned.unsqueeze(1).expand(batch, classes, -1)
        counts = probs.new_zeros(batch, classes, classes + 1).scatter_add_(2, index, probs)
        joint = counts[:, :, :classes].sum(dim=0) / labels.valid_per_image.sum().clamp_min(1)
        label_prior = joint.sum(dim=0)  # each valid pixel's probabilities sum to 1
        ratio = joint / (joint.sum(dim=1, keepdim=True) * label_prior).clamp_min(_TINY)
        information = (joint * torch.log(ratio.clamp_min(_TINY))).sum()
        if normalize:
            entropy = -torch.special.xlogy(label_prior, label_prior).sum()
            information = information / entropy.clamp_min(_TINY) * (entropy > _TINY)
        return -information
    if estimator == "variational-image":
        pixel_loss = F.cross_entropy(flat_logits, labels.labels, ignore_index=labels.ignore_index,
                                     reduction="none")  # 0 at ignored pixels
        information = labels.entropy - pixel_loss.sum(dim=1) / labels.counts.view(-1)
    else:
        probs = flat_logits.softmax(dim=1)  # (B, K, N)
        index = labels.binned.unsqueeze(1).expand(batch, classes, -1)
        joint = probs.new_zeros(batch, classes, classes + 1).scatter_add_(2, index, probs)
        joint = joint[:, :, :classes] / labels.counts  # (B, K predicted, C labels)
        prediction_prior = joint.sum(dim=2, keepdim=True)
        ratio = joint / (prediction_prior * labels.prior.unsqueeze(1)).clamp_min(_TINY)
        information = (joint * torch.log(ratio.clamp_min(_TINY))).sum(dim=(1, 2))
    if normalize:
        informative = (labels.entropy > _TINY).to(information.dtype)
        information = information / labels.entropy.clamp_min(_TINY) * informative
    # The mean over images that have a valid pixel, without indexing (which would synchronise).
    return -(information * labels.image_weight).sum()


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
        return gradient if gradient.dtype == features.dtype else gradient.to(features.dtype), None, None, None


def _scaled_log_softmax(features: torch.Tensor, dim: int, tau: float) -> torch.Tensor:
    scaled = _at_least_float32(features)
    return F.log_softmax(scaled / tau if tau != 1.0 else scaled, dim=dim)


def negative_entropy(
    features: torch.Tensor,
    *,
    dim: int = 1,
    tau: float = 1.0,
    mask: torch.Tensor | None = None,
    labels: LabelStatistics | None = None,
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
    labels
        Instead of ``mask``: :func:`label_statistics` of labels at the positions' size, whose
        valid pixels are the positions to average over (computed once, shared with the MI term).

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
    positions = features.shape[:dim] + (1,) + features.shape[dim + 1:]
    expected = features.shape[:dim] + features.shape[dim + 1:]
    weights: torch.Tensor | float
    if labels is not None:
        if labels.shape != tuple(expected):
            raise ValueError(f"labels of shape {labels.shape} must match the positions {tuple(expected)}.")
        weights = labels.pixel_weight.view(positions)
    elif mask is not None:
        if mask.shape != expected:
            raise ValueError(f"mask shape {tuple(mask.shape)} must match the positions {tuple(expected)}.")
        # An all-False mask gives zero weights: an exact 0 with a zero gradient, and no sync.
        weights = mask.to(_at_least_float32(features).dtype).unsqueeze(dim)
        weights = weights / weights.sum().clamp_min(1)
    else:
        weights = 1.0 / max(features.numel() // max(features.shape[dim], 1), 1)
    return _NegativeEntropy.apply(features, dim, float(tau), weights)
