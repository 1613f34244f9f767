"""``IMacHSR``: the paper's training objective (Eq. 3) around any model, in three lines::

    scheme = imachsr.IMacHSR(model, num_classes=19, example_inputs=(2, 3, 512, 512))
    optimizer = torch.optim.Adam(scheme.parameters(), lr=1e-3)    # model + adapters (Eq. 4)
    scheme(images, labels).loss.backward(); optimizer.step()

``L = CE(f(x), y) + sum_m alpha_m * L_MI(g_m(z_m), y) + beta_m * NE(z_m)``. The user's model is
``scheme.model``, untouched: evaluate and deploy it as it is.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

import tapfinder
from tapfinder import Tap

from .adapters import build_adapters
from .instrument import instrument
from .losses import ESTIMATORS, mutual_information_loss, negative_entropy

__all__ = ["IMacHSR", "SchemeOutput", "model_logits"]

RESOLUTIONS = ("label", "feature")


@dataclass
class SchemeOutput:
    """``loss`` to back-propagate, ``terms`` for logging (floats: ``ce``, ``mi/<tap>``,
    ``ne/<tap>``) and the model's ``logits``."""

    loss: torch.Tensor
    terms: dict[str, float]
    logits: torch.Tensor


def model_logits(output: Any) -> torch.Tensor:
    """The prediction in a model's output: the tensor itself, ``output["out"]`` (torchvision
    segmentation) or the first value of a dict, or the first element of a tuple (Inception and
    GoogLeNet in training mode return ``(logits, aux...)``)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict) and output:
        return output["out"] if "out" in output else next(iter(output.values()))
    if isinstance(output, (tuple, list)) and output:
        return model_logits(output[0])
    raise TypeError(
        f"Cannot find the logits in a model output of type {type(output).__name__}; pass "
        "output_loss=callable(output, target) to compute the output loss yourself."
    )


def _per_tap(value: float | Sequence[float], taps: Sequence[str], name: str) -> list[float]:
    if isinstance(value, (int, float)):
        return [float(value)] * len(taps)
    values = [float(v) for v in value]
    if len(values) != len(taps):
        raise ValueError(f"{name} has {len(values)} values for {len(taps)} taps {list(taps)}.")
    return values


class IMacHSR(nn.Module):
    """Intermediate multi-access heterogeneous supervision and regularisation around a model.

    Parameters
    ----------
    model
        The user's network; shared, never copied or modified.
    num_classes
        Number of classes ``K`` of the labels (ignore_index excluded).
    example_inputs
        A tensor, a shape or a tuple of them, as for :func:`tapfinder.trace`.
    taps
        ``"auto"`` (:func:`tapfinder.select_taps` with ``k``, ``spacing``, ``position``) or a list
        of fx node names, module paths or :class:`tapfinder.Tap`.
    alpha, beta
        Weights of each tap's MI loss and negative-entropy term: one number or one per tap.
    mi
        ``"joint"`` (heterogeneous MI, the default), ``"variational"``, or ``"ce"`` (classic deep
        supervision with the same cross-entropy as the output, for comparison).
    ne_on
        ``"features"`` (Eq. 2 on the tap's channels) or ``"adapter"`` (on the adapter's logits).
    resolution
        ``"feature"`` (default): labels are resized (nearest, so ``ignore_index`` survives) to
        the tap's size; ``"label"``: adapter logits are resized (bilinear) to the label size.
        Validation mIoU did not separate the two (docs/results.md) and ``"feature"`` costs half
        as much per tap.
    output_loss
        ``callable(model_output, target) -> loss``; default cross-entropy with ``ignore_index``
        on :func:`model_logits` resized to the label size.

    Labels are ``(B, *S)`` class maps for dense prediction, or ``(B,)`` when the model outputs
    ``(B, K)`` (adapters then pool to a vector and MI is computed over the batch).
    """

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        *,
        example_inputs: Any,
        taps: str | Sequence[str | Tap] = "auto",
        k: int = 3,
        spacing: int = 2,
        position: str = "input",
        alpha: float | Sequence[float] = 0.4,
        beta: float | Sequence[float] = 0.01,
        mi: str = "joint",
        normalize_mi: bool = False,
        ne_on: str = "features",
        tau: float = 1.0,
        resolution: str = "feature",
        ignore_index: int = 255,
        output_loss: Callable[[Any, torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        if mi not in ESTIMATORS:
            raise ValueError(f"mi must be one of {', '.join(ESTIMATORS)}; got {mi!r}.")
        if ne_on not in ("features", "adapter"):
            raise ValueError(f"ne_on must be 'features' or 'adapter'; got {ne_on!r}.")
        if resolution not in RESOLUTIONS:
            raise ValueError(f"resolution must be 'label' or 'feature'; got {resolution!r}.")
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2; got {num_classes!r}.")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", tapfinder.AutoLeafWarning)
            arch = tapfinder.trace(model, example_inputs)
        if isinstance(taps, str):
            if taps != "auto":
                raise ValueError(f"taps must be 'auto' or a list of taps; got {taps!r}.")
            taps = tapfinder.select_taps(arch, k=k, spacing=spacing, position=position)
        self.model = model
        tapped = instrument(model, taps, example_inputs, arch=arch)
        object.__setattr__(self, "tapped", tapped)  # shares self.model: not registered twice
        self.taps: tuple[str, ...] = tapped.taps
        self.num_inputs = len(arch.inputs)
        self.classification = len(arch[arch.outputs[0]]["shape"] or ()) == 2 and arch[
            arch.outputs[0]
        ]["value"] == "tensor"
        self.adapters = build_adapters(arch, list(self.taps), num_classes, pool=self.classification)
        self.layouts = {name: arch[name]["layout"] for name in self.taps}
        self.alpha = _per_tap(alpha, self.taps, "alpha")
        self.beta = _per_tap(beta, self.taps, "beta")
        self.num_classes = num_classes
        self.mi, self.normalize_mi, self.ne_on, self.tau = mi, normalize_mi, ne_on, tau
        self.resolution, self.ignore_index = resolution, ignore_index
        self.output_loss = output_loss

    def forward(self, *inputs: Any, target: torch.Tensor | None = None) -> Any:
        """``scheme(x, target)`` -> :class:`SchemeOutput`; ``scheme(x)`` -> the model's output.

        The labels are the argument after the model's own inputs, or ``target=`` by keyword.
        """
        if target is None and len(inputs) == self.num_inputs + 1:
            *inputs, target = inputs
        if target is None:
            return self.model(*inputs)
        self._check_devices(inputs, target)
        self._check_target(target)
        output, features = self.tapped(*inputs)
        logits = model_logits(output)
        terms: dict[str, torch.Tensor] = {"ce": self._output_loss(output, logits, target)}
        loss = terms["ce"]
        for index, name in enumerate(self.taps):
            mi_term, ne_term = self._tap_terms(name, features[name], target)
            terms[f"mi/{name}"], terms[f"ne/{name}"] = mi_term, ne_term
            loss = loss + self.alpha[index] * mi_term + self.beta[index] * ne_term
        values = dict(zip(terms, torch.stack([t.detach().float() for t in terms.values()]).tolist()))
        if not all(math.isfinite(v) for v in values.values()):
            raise FloatingPointError(_nonfinite_message(values, inputs, features, logits))
        return SchemeOutput(loss, values, logits)

    def _check_devices(self, inputs: Sequence[Any], target: torch.Tensor) -> None:
        device = next((p.device for p in self.model.parameters()), None)
        given = {t.device for t in (*inputs, target) if isinstance(t, torch.Tensor)}
        if device is not None and given != {device}:
            raise ValueError(
                f"The model is on {device} but the batch is on {', '.join(map(str, given))}; "
                f"move images and labels with .to({str(device)!r}) (and the scheme with "
                "scheme.to(device), which moves the model and the adapters together)."
            )

    def _check_target(self, target: torch.Tensor) -> None:
        if target.is_floating_point() or target.is_complex():
            raise ValueError(
                f"target must hold integer class indices; got dtype {target.dtype}. "
                "Convert with target.long()."
            )
        expected = "(B,)" if self.classification else "(B, H, W)"
        if (target.dim() == 1) != self.classification:
            raise ValueError(
                f"target has shape {tuple(target.shape)} but this model needs labels {expected}."
            )
        valid = target[target != self.ignore_index]
        if valid.numel() and (int(valid.min()) < 0 or int(valid.max()) >= self.num_classes):
            raise ValueError(
                f"target holds values outside [0, {self.num_classes}) other than ignore_index "
                f"{self.ignore_index} (min {int(valid.min())}, max {int(valid.max())}); check "
                "num_classes and the label mapping."
            )

    def _output_loss(self, output: Any, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.output_loss is not None:
            return self.output_loss(output, target)
        if logits.dim() > 2 and logits.shape[2:] != target.shape[1:]:
            logits = F.interpolate(logits, size=target.shape[1:], mode="bilinear", align_corners=False)
        if not bool((target != self.ignore_index).any()):
            return logits.sum() * 0.0
        return F.cross_entropy(logits.float(), target, ignore_index=self.ignore_index)

    def _tap_terms(
        self, name: str, features: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        adapter_logits = self.adapters[name](features)
        labels = target
        if not self.classification and adapter_logits.shape[2:] != target.shape[1:]:
            if self.resolution == "label":
                adapter_logits = F.interpolate(
                    adapter_logits, size=target.shape[1:], mode="bilinear", align_corners=False
                )
            else:
                labels = _resize_labels(target, adapter_logits.shape[2:])
        mi_term = mutual_information_loss(
            adapter_logits, labels, ignore_index=self.ignore_index, estimator=self.mi,
            normalize=self.normalize_mi,
        )
        if self.ne_on == "adapter":
            mask = None if self.classification else labels != self.ignore_index
            ne_term = negative_entropy(adapter_logits, dim=1, tau=self.tau, mask=mask)
        else:
            ne_term = self._feature_entropy(name, features, target)
        return mi_term, ne_term

    def _feature_entropy(self, name: str, features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        layout = self.layouts[name] or "NC"
        channel_dim = 1 if layout.startswith("NC") else -1
        mask = None
        if not self.classification and layout in ("NCHW", "NHWC"):
            size = features.shape[2:] if layout == "NCHW" else features.shape[1:3]
            mask = _resize_labels(target, size) != self.ignore_index
        return negative_entropy(features, dim=channel_dim, tau=self.tau, mask=mask)


def _nonfinite_message(values: dict[str, float], inputs: Sequence[Any],
                       features: dict[str, torch.Tensor], logits: torch.Tensor) -> str:
    """Name the non-finite loss terms and the first place NaN or inf appears."""
    bad_terms = ", ".join(f"{k}={v}" for k, v in values.items() if not math.isfinite(v))
    places = [("the input batch", t) for t in inputs if isinstance(t, torch.Tensor)]
    places += [(f"the features at tap {name!r}", t) for name, t in features.items()]
    places.append(("the model's logits", logits))
    source = next((where for where, t in places
                   if t.is_floating_point() and not bool(torch.isfinite(t.detach()).all())), None)
    origin = f"NaN or inf first appears in {source}" if source else (
        "the inputs, features and logits are finite, so a loss overflowed")
    return (
        f"The iMacHSR loss is not finite ({bad_terms}); {origin}. Check the data for NaN, "
        "lower the learning rate or clip gradients; under float16 autocast prefer bfloat16."
    )


def _resize_labels(target: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Nearest-neighbour resize of a ``(B, *S)`` label map: labels and ``ignore_index`` survive."""
    if tuple(target.shape[1:]) == tuple(size):
        return target
    resized = F.interpolate(target.unsqueeze(1).float(), size=tuple(size), mode="nearest")
    return resized.squeeze(1).to(target.dtype)
