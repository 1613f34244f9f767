"""``OutputOnly``: the baseline objective, the output's cross-entropy alone, with the same call
and result as :class:`~imachsr.IMacHSR`, so one training loop runs either."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .scheme import SchemeOutput, check_label_shape, masked_cross_entropy, model_logits

__all__ = ["OutputOnly"]


class OutputOnly(nn.Module):
    """Output-only cross-entropy (with ``ignore_index``) on :func:`~imachsr.model_logits`,
    resized to the labels where the model predicts at a lower resolution.

    ``OutputOnly(model)(x)`` is the model's plain forward; ``OutputOnly(model)(x, labels)`` a
    :class:`~imachsr.SchemeOutput` whose ``terms`` are ``loss`` and ``ce`` (the same value).
    """

    def __init__(self, model: nn.Module, ignore_index: int = 255) -> None:
        super().__init__()
        self.model, self.ignore_index = model, ignore_index

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None) -> Any:
        if target is not None:  # before the model runs: a bad call changes nothing
            check_label_shape(target, [x], x.dim() - 2 if target.dim() > 1 else None)
        output = self.model(x)
        if target is None:
            return output
        logits = model_logits(output)
        sized = F.interpolate(logits, size=target.shape[1:], mode="bilinear", align_corners=False) \
            if logits.shape[2:] != target.shape[1:] else logits
        loss = masked_cross_entropy(sized, target, self.ignore_index)
        return SchemeOutput(loss, {"loss": loss, "ce": loss}, logits)
