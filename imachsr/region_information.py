"""Region mutual information (Zhao, Wang, Zhang and Yang, NeurIPS 2019) between a tap's
adapter and the labels: a Gaussian lower bound on the information that each pixel's 3x3
neighbourhood of predictions carries about the neighbourhood of labels.

For each class ``k`` and image, the label indicators ``Y`` and predicted probabilities ``P`` of
every 3x3 neighbourhood are vectors of ``d = 9`` numbers. With their covariances over the
image's neighbourhoods, the conditional covariance ``S = Cov(Y) - Cov(Y, P) Cov(P)^-1
Cov(Y, P)^T`` bounds the conditional entropy: ``H(Y | P) <= 1/2 log det S + const``, so
``I(Y; P) >= H(Y) - 1/2 log det S - const``. The loss is ``1/2 log det S / d`` averaged over
images and classes: lower when the neighbourhoods of predictions explain those of the labels,
structure (edges, shapes) included, where per-pixel cross-entropy sees each pixel alone.

As in the paper, both maps are first average-pooled by 3 (when the map is large enough), the
covariances carry a small ridge ``EPSILON`` for stability, and the published objective mixes
the bound with cross-entropy half and half (the estimator ``mi="rmi"``, its share
:data:`imachsr.losses.RMI_SHARE`).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

__all__ = ["region_information_loss", "EPSILON", "RADIUS", "POOL"]

RADIUS = 3  # neighbourhoods of RADIUS x RADIUS pixels
POOL = 3  # average-pool stride before the neighbourhoods are taken, where the map allows
EPSILON = 5e-4  # ridge on the covariances (the paper's value)


def region_information_loss(probabilities: torch.Tensor, labels: torch.Tensor,
                            valid: torch.Tensor) -> torch.Tensor:
    """The region-MI loss of ``probabilities`` ``(B, K, H, W)`` against class indices
    ``labels`` ``(B, H, W)``; ``valid`` ``(B, H, W)`` is True where a pixel counts (ignored
    pixels are zeroed in both maps, as the paper does). Computed in float64 for the 9x9
    algebra; no host synchronisation. A map smaller than 3x3 (a deep tap at
    ``resolution="feature"``) holds no neighbourhood: the term is an exact 0 there, and such a
    tap learns from the cross-entropy share of ``"rmi"`` alone."""
    batch, classes, height, width = probabilities.shape
    if min(height, width) < RADIUS:  # no neighbourhood fits: nothing regional to score
        return probabilities.sum() * 0.0
    mask = valid.unsqueeze(1).to(probabilities.dtype)
    # One-hot by comparison: F.one_hot checks the labels' range on the host (a synchronisation).
    class_index = torch.arange(classes, device=labels.device).view(1, classes, 1, 1)
    targets = (labels.unsqueeze(1) == class_index).to(probabilities.dtype) * mask
    predictions = probabilities * mask
    if min(height, width) // POOL >= RADIUS:
        targets = F.avg_pool2d(targets, POOL, POOL)
        predictions = F.avg_pool2d(predictions, POOL, POOL)
    y = _neighbourhoods(targets.double())  # (B, K, d, M)
    p = _neighbourhoods(predictions.double())
    y = y - y.mean(dim=3, keepdim=True)
    p = p - p.mean(dim=3, keepdim=True)
    positions = y.shape[3]
    ridge = EPSILON * torch.eye(y.shape[2], dtype=y.dtype, device=y.device)
    cov_y = y @ y.transpose(2, 3) / positions
    cov_p = p @ p.transpose(2, 3) / positions + ridge
    cov_yp = y @ p.transpose(2, 3) / positions
    # Cov(Y,P) Cov(P)^-1 Cov(P,Y) = W^T W with Cov(P) = L L^T and W = L^-1 Cov(P,Y): Cholesky
    # and a triangular solve, the linear-algebra calls that never read back to the host.
    lower, _ = torch.linalg.cholesky_ex(cov_p)
    whitened = torch.linalg.solve_triangular(lower, cov_yp.transpose(2, 3), upper=False)
    conditional = cov_y - whitened.transpose(2, 3) @ whitened + ridge
    cholesky, _ = torch.linalg.cholesky_ex(conditional)
    half_log_det = torch.log(torch.diagonal(cholesky, dim1=2, dim2=3)).sum(dim=2)  # (B, K)
    return (half_log_det / y.shape[2]).mean().to(probabilities.dtype)


def _neighbourhoods(maps: torch.Tensor) -> torch.Tensor:
    """``(B, K, H, W)`` -> ``(B, K, RADIUS**2, M)``: each neighbourhood's values as a vector,
    over the ``M`` neighbourhoods that fit inside the map."""
    height, width = maps.shape[2] - RADIUS + 1, maps.shape[3] - RADIUS + 1
    shifted = [maps[:, :, dy:dy + height, dx:dx + width]
               for dy in range(RADIUS) for dx in range(RADIUS)]
    return torch.stack(shifted, dim=2).flatten(3)
