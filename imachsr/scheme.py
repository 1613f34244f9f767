"""``IMacHSR``: the paper's training objective (Eq. 3) around any model, in three lines::

    scheme = imachsr.IMacHSR(model, num_classes=19, example_inputs=(2, 3, 512, 512))
    optimizer = torch.optim.Adam(scheme.parameters(), lr=1e-3)    # model + adapters (Eq. 4)
    scheme(images, labels).loss.backward(); optimizer.step()

``L = CE(f(x), y) + sum_m alpha_m * L_MI(g_m(z_m), y) + beta_m * NE(z_m)``: the output's
cross-entropy, the paper's Eq. 1 on each tap ``z_m`` through its dimension adapter ``g_m`` (the
cross-entropy of the adapter's prediction, a lower bound on the tap's mutual information with
the labels, :mod:`imachsr.losses`) and, where ``beta_m > 0``, its Eq. 2 regulariser. The user's
model is ``scheme.model``, untouched: evaluate and deploy it as it is.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, cast

import torch
from torch import nn
from torch.nn import functional as F

import tapfinder
from tapfinder import Tap
from tapfinder.capture.example_inputs import normalize_example_inputs
from tapfinder.errors import TraceFailure

from .adapters import (
    CAPACITIES,
    HEAD_WIDTH,
    DimensionAdapter,
    adapter_key,
    adapters_for,
    check_head_width,
)
from .instrument import TappedModel, instrument, resolve_taps
from .losses import (
    LabelStatistics,
    canonical_estimator,
    check_label_range,
    information_loss,
    label_statistics,
    negative_entropy,
)
from .pixel_contrast import CONTRAST_WEIGHT, pixel_contrast_loss
from .probe import probe_hook_taps
from .weighting import SCHEDULES, normalisation, schedule_factor

__all__ = ["IMacHSR", "SchemeOutput", "model_logits", "Resolution", "RESOLUTIONS"]

Resolution = Literal["label", "feature"]
RESOLUTIONS: tuple[Resolution, ...] = ("label", "feature")


class SchemeOutput:
    """What one supervised step returns.

    ``loss`` to back-propagate and the model's ``logits``; ``terms`` for logging: floats keyed
    ``loss``, ``ce``, ``mi/<tap>`` and ``ne/<tap>``.

    The terms stay on the device until ``terms`` is first read, which reads them all in one host
    synchronisation, so a step that does not log costs no synchronisation at all. That read also
    checks them: a non-finite term raises ``FloatingPointError`` naming the first place NaN or inf
    appears (the input batch, a tap's features, the logits), from sums taken in the step.
    """

    def __init__(self, loss: torch.Tensor, terms: dict[str, torch.Tensor], logits: torch.Tensor,
                 places: dict[str, torch.Tensor] | None = None) -> None:
        self.loss, self.logits = loss, logits
        self._terms, self._places = terms, places or {}
        self._values: dict[str, float] | None = None

    @property
    def terms(self) -> dict[str, float]:
        if self._values is None:
            with torch.no_grad():
                # The one host synchronisation (cat promotes mixed float dtypes).
                numbers = torch.stack([*self._terms.values(), *self._places.values()]).tolist()
            values = dict(zip(self._terms, numbers))
            if not all(math.isfinite(v) for v in values.values()):
                places = dict(zip(self._places, numbers[len(values):]))
                raise FloatingPointError(_nonfinite_message(values, places))
            self._values = values
        return self._values

    @property
    def term_tensors(self) -> dict[str, torch.Tensor]:
        """The same terms as detached 0-d tensors left on the device, for loggers that take
        tensors and reduce them themselves (Lightning's ``log_dict``): no host synchronisation,
        and no finiteness check (``terms`` makes it)."""
        return {name: value.detach() for name, value in self._terms.items()}


def check_label_shape(target: torch.Tensor, inputs: Sequence[Any],
                      spatial_dims: int | None) -> None:
    """Raise ``ValueError`` saying what the labels must be when their rank does not fit the
    task (``spatial_dims`` per label: 2 for ``(B, H, W)`` class maps, 0 for ``(B,)`` classes,
    ``None`` where unknown) or their batch does not fit the first tensor input's. Checked
    before the model runs, so a bad call changes nothing (BatchNorm statistics included)."""
    batch = next((x.shape[0] for x in inputs if isinstance(x, torch.Tensor) and x.dim()), None)
    rank_fits = spatial_dims is None or target.dim() == 1 + spatial_dims
    if rank_fits and (batch is None or target.dim() == 0 or target.shape[0] == batch):
        return
    spatial = target.dim() - 1 if spatial_dims is None else spatial_dims
    wanted = "(B,)" if spatial == 0 else "(B, " + ", ".join(
        "HWD"[:spatial] if spatial <= 3 else ["S"] * spatial) + ")"
    each = "image" if spatial == 0 else "pixel"
    raise ValueError(
        f"target has shape {tuple(target.shape)}, but the labels must be {wanted}: one class "
        f"index per {each} for each of the {batch} inputs" + (
            " (any height and width: the logits are resized to them)." if spatial else "."))


def model_logits(output: Any) -> torch.Tensor:
    """The prediction in a model's output: the tensor itself, ``output["out"]`` (torchvision
    segmentation), ``output["logits"]`` (Hugging Face's ``ModelOutput``) or the first value of
    a dict, or the first element of a tuple (Inception and GoogLeNet in training mode return
    ``(logits, aux...)``)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict) and output:
        key = next((k for k in ("out", "logits") if k in output), next(iter(output)))
        return model_logits(output[key])
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

    The defaults are the paper's Eq. 1 in its published form (the cross-entropy of each tap's
    adapter over every pixel) through a small head (3x3 conv-BN-ReLU, then 1x1) on 3 taps
    spread over the network, with constant weights and without Eq. 2's regulariser: the
    configuration that scored highest on validation in the paired-seed experiments
    (``docs/results.md`` gives the measurements behind every default below).

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
    position
        Where auto taps go: ``"uniform"`` (default: spread over the whole depth), ``"input"``,
        ``"central"`` or ``"output"``.
    alpha, beta
        Weights of each tap's Eq. 1 term and Eq. 2 (negative-entropy) term: one number or one
        per tap. ``beta=0`` (default) leaves Eq. 2 out: 0.01 measured no better and costs time
        per step.
    mi
        The estimator of Eq. 1 (:func:`imachsr.losses.mutual_information_loss`): ``"eq1"``
        (default: the paper's, the adapter's cross-entropy over every valid pixel),
        ``"joint-image"`` or ``"variational-image"`` (this project's per-image readings, which
        measured worse), ``"joint-batch"`` (the joint MI over the whole batch), ``"rmi"``
        (region MI beside cross-entropy) or ``"contrast"`` (supervised pixel contrast on each
        head's hidden embedding beside cross-entropy): heterogeneous losses from the
        literature, not yet measured here. The earlier names ``"ce"``, ``"joint"`` and ``"variational"`` still
        work. A confidence penalty on each head's class probabilities (Pereyra et al.) is
        ``beta > 0`` with ``ne_on="adapter"``.
    ne_on
        ``"features"`` (Eq. 2 on the tap's channels) or ``"adapter"`` (on the adapter's logits).
    resolution
        ``"feature"`` (default): labels are resized (nearest, so ``ignore_index`` survives) to
        the tap's size; ``"label"``: adapter logits are resized (bilinear) to the label size.
        Validation mIoU did not separate the two and ``"feature"`` costs half as much per tap.
    adapter
        ``"head"`` (default: 3x3 conv-BN-ReLU then 1x1, mmsegmentation's auxiliary head),
        ``"pointwise"`` or ``"separable"`` (the head with a 1x1, or a depthwise 3x3 and a 1x1,
        in place of its 3x3: about a ninth of the arithmetic, and lower mIoU in the
        measurements) or ``"linear"`` (a 1x1 convolution: the paper's dimension adapter, worse
        than heads), see :mod:`imachsr.adapters`.
    head_width
        Hidden channels of a ``"head"``, ``"pointwise"`` or ``"separable"`` adapter: the tap's
        channels, at most this. A 3x3 convolution from a wide, high-resolution tap costs as much
        as a backbone stage; a narrower head costs less (``benchmarks/bench_train_step.py``), but
        64 lost most of the heads' gain in the measurements.
    schedule
        ``"constant"`` (default), ``"linear"`` or ``"cosine"``: the factor on every ``alpha``
        and ``beta`` as training progresses (:mod:`imachsr.weighting`); the decaying ones reach
        0 at the end (DSN); linear decay scored below constant weights in the measurements.
        With a decaying schedule, your training loop reports progress with :meth:`set_progress`;
        until it does, the factor stays 1 and a warning says so once.
    normalize_weights
        Divide the objective by ``1 + sum(alpha)`` (scheduled), so the output's weight and the
        taps' sum to 1 (nnU-Net).
    output_loss
        ``callable(model_output, target) -> loss``; default cross-entropy with ``ignore_index``
        on :func:`model_logits` resized to the label size.

    Labels are checked (integer dtype and shape on every call, values in range on the first
    call only: reading them back would stop the device every step). Labels are ``(B, *S)`` class maps for dense prediction, or ``(B,)`` when the model outputs
    ``(B, K)`` (adapters then pool to a vector and MI is computed over the batch).
    """

    tapped: TappedModel  # set with object.__setattr__: it shares self.model
    # The loss is a mean over pixels, not a sum to divide by the Hugging Face Trainer's
    # ``num_items_in_batch``: the Trainer then scales it for gradient accumulation itself.
    accepts_loss_kwargs = False

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        *,
        example_inputs: Any,
        taps: str | Sequence[str | Tap] = "auto",
        k: int = 3,
        spacing: int = 1,
        position: str = "uniform",
        alpha: float | Sequence[float] = 0.4,
        beta: float | Sequence[float] = 0.0,
        mi: str = "eq1",
        normalize_mi: bool = False,
        ne_on: str = "features",
        tau: float = 1.0,
        resolution: str = "feature",
        adapter: str = "head",
        head_width: int = HEAD_WIDTH,
        schedule: str = "constant",
        normalize_weights: bool = False,
        ignore_index: int = 255,
        output_loss: Callable[[Any, torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        if adapter not in CAPACITIES:
            raise ValueError(f"adapter must be one of {', '.join(CAPACITIES)}; got {adapter!r}.")
        check_head_width(head_width)
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}; got {schedule!r}.")
        try:
            mi = canonical_estimator(mi)
        except ValueError as error:
            raise ValueError(f"mi: {error}") from None
        if ne_on not in ("features", "adapter"):
            raise ValueError(f"ne_on must be 'features' or 'adapter'; got {ne_on!r}.")
        if resolution not in RESOLUTIONS:
            raise ValueError(f"resolution must be 'label' or 'feature'; got {resolution!r}.")
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2; got {num_classes!r}.")
        if isinstance(taps, str) and taps != "auto":
            raise ValueError(f"taps must be 'auto' or a list of taps; got {taps!r}.")
        arch = _trace_unless_root_untraceable(model, example_inputs, automatic=taps == "auto")
        if arch is not None and taps == "auto":
            taps = tapfinder.select_taps(arch, k=k, spacing=spacing, position=position)
        self.model = model
        tapped = instrument(model, taps, example_inputs, arch=arch)
        object.__setattr__(self, "tapped", tapped)  # shares self.model: not registered twice
        self.taps: tuple[str, ...] = tapped.taps
        # The model's inputs are the ones the example fed; optional forward arguments are not.
        self.num_inputs = len(normalize_example_inputs(example_inputs).args)
        described: Mapping[str, tuple[str | None, tuple[int, ...]]]
        if arch is not None:
            nodes = resolve_taps(arch, taps) if tapped.uses_hooks else self.taps  # eager: paths
            described = {name: (arch[node]["layout"], arch[node]["shape"])
                         for name, node in zip(self.taps, nodes)}
            output = arch[arch.outputs[0]]
            self.classification = output["value"] == "tensor" and len(output["shape"] or ()) == 2
            image_size = next((arch[n]["spatial"] for n in arch.inputs if arch[n]["spatial"]), None)
        else:
            probed = probe_hook_taps(tapped, example_inputs)
            described, image_size = probed.taps, probed.image_size
            self.classification = model_logits(probed.output).dim() == 2
        # Labels are one class per image, or a map over the input image's axes.
        self._label_spatial_dims = 0 if self.classification else (
            len(image_size) if image_size else None)
        with torch.random.fork_rng(devices=[]):  # the caller's random stream is left as it was
            self.adapters = adapters_for(described, num_classes, image_size,
                                         pool=self.classification, capacity=adapter,
                                         head_width=head_width)
        self.layouts = {name: layout for name, (layout, _) in described.items()}
        self.alpha = _per_tap(alpha, self.taps, "alpha")
        self.beta = _per_tap(beta, self.taps, "beta")
        self.num_classes = num_classes
        self.mi, self.normalize_mi, self.ne_on, self.tau = mi, normalize_mi, ne_on, tau
        self.resolution, self.ignore_index = resolution, ignore_index
        self.schedule, self.normalize_weights, self.progress = schedule, normalize_weights, 0.0
        self.output_loss = output_loss
        self._labels_checked = False
        self._progress_reported = False

    def set_progress(self, progress: float) -> None:
        """Tell the weight schedule how far training is: 0 at the first step, 1 at the last."""
        schedule_factor(self.schedule, progress)  # validates
        self.progress = float(progress)
        self._progress_reported = True

    def forward(self, *inputs: Any, target: torch.Tensor | None = None, **model_kwargs: Any) -> Any:
        """``scheme(x, target)`` -> :class:`SchemeOutput`; ``scheme(x)`` -> the model's output.

        The labels are the argument after the model's own positional inputs (as many as the
        example inputs gave), or ``target=`` by keyword, or ``labels=`` (the keyword Hugging
        Face models and their ``Trainer`` use). Labels never reach the model: a model that
        computes its own loss from ``labels`` would otherwise return that loss and no tap term.
        Other keyword arguments go to the model (``scheme(pixel_values=x, labels=y)``).
        """
        if "labels" in model_kwargs:
            if target is not None:
                raise ValueError("Got both target= and labels=: pass the labels once, by either "
                                 "name.")
            target = model_kwargs.pop("labels")
        if target is None and len(inputs) == self.num_inputs + 1:
            inputs, target = inputs[:-1], inputs[-1]
        elif target is None and len(inputs) > self.num_inputs + 1:
            raise ValueError(
                f"Got {len(inputs)} positional arguments for a model built with "
                f"{self.num_inputs} example input(s): which one holds the labels is ambiguous. "
                "Pass the labels by keyword: scheme(*inputs, target=labels)."
            )
        if target is None:
            return self.model(*inputs, **model_kwargs)
        self._check_devices([*inputs, *model_kwargs.values()], target)
        target = self._checked_target(target)
        check_label_shape(target, [*inputs, *model_kwargs.values()], self._label_spatial_dims)
        if self.schedule != "constant" and not self._progress_reported and self.training:
            warnings.warn(
                f"schedule={self.schedule!r} decays the taps' weights as training progresses, but "
                "scheme.set_progress(fraction) has not been called, so they stay at full weight. "
                "Call scheme.set_progress(step / total_steps) each step, or pass "
                "schedule='constant'.", UserWarning, stacklevel=4)
            self._progress_reported = True  # once
        output, features = self.tapped(*inputs, **model_kwargs)
        logits = model_logits(output)
        factor = schedule_factor(self.schedule, self.progress)
        terms = {"ce": self._output_loss(output, logits, target)}
        loss = terms["ce"]
        labels_by_size: dict[tuple[int, ...], LabelStatistics] = {}
        for index, name in enumerate(self.taps):
            terms[f"mi/{name}"], ne_term = self._tap_terms(index, features[name], target,
                                                           labels_by_size)
            loss = loss.add(terms[f"mi/{name}"], alpha=factor * self.alpha[index])  # one kernel
            if ne_term is not None:
                terms[f"ne/{name}"] = ne_term
                loss = loss.add(ne_term, alpha=factor * self.beta[index])
        if self.normalize_weights:
            loss = loss / normalisation(self.alpha, factor)
        places = {"the input batch" + (f" (input {i})" if i else ""): t
                  for i, t in enumerate(inputs) if isinstance(t, torch.Tensor) and t.is_floating_point()}
        places.update({f"the features at tap {name!r}": t for name, t in features.items()})
        places["the model's logits"] = logits
        return SchemeOutput(loss, {"loss": loss, **terms}, logits, _sums(places))

    def _check_devices(self, inputs: Sequence[Any], target: torch.Tensor) -> None:
        device = next((p.device for p in self.model.parameters()), None)
        given = {t.device for t in (*inputs, target) if isinstance(t, torch.Tensor)}
        if device is not None and given != {device}:
            raise ValueError(
                f"The model is on {device} but the batch is on {', '.join(map(str, given))}; "
                f"move images and labels with .to({str(device)!r}) (and the scheme with "
                "scheme.to(device), which moves the model and the adapters together)."
            )

    def _checked_target(self, target: torch.Tensor) -> torch.Tensor:
        """The labels as int64 class indices, once checked: masks read from PNG files are uint8,
        and cross-entropy takes int64 only."""
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
        if not self._labels_checked:
            check_label_range(target, self.num_classes, self.ignore_index)
            self._labels_checked = True
        return target.long()

    def _output_loss(self, output: Any, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.output_loss is not None:
            return self.output_loss(output, target)
        if logits.dim() > 2 and logits.shape[2:] != target.shape[1:]:
            logits = F.interpolate(logits, size=target.shape[1:], mode="bilinear", align_corners=False)
        return masked_cross_entropy(logits, target, self.ignore_index)

    def _tap_terms(
        self, index: int, features: torch.Tensor, target: torch.Tensor,
        labels_by_size: dict[tuple[int, ...], LabelStatistics],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Tap ``index``'s MI loss and its negative-entropy term (``None`` where its ``beta`` is 0)."""
        name = self.taps[index]
        adapter = cast(DimensionAdapter, self.adapters[adapter_key(name)])
        embedding = adapter.embed(features)
        adapter_logits = adapter.classify(embedding)
        size = tuple(target.shape[1:])
        if not self.classification and adapter_logits.shape[2:] != target.shape[1:]:
            if self.resolution == "label":
                adapter_logits = F.interpolate(
                    adapter_logits, size=size, mode="bilinear", align_corners=False)
            else:
                size = tuple(adapter_logits.shape[2:])
        labels = self._labels_at(target, size, labels_by_size)
        contrast = self.mi == "contrast"
        mi_term = information_loss(adapter_logits, labels, estimator="eq1" if contrast else self.mi,
                                   normalize=self.normalize_mi)
        if contrast:  # beside the cross-entropy, on the head's embedding at its own size
            at_embedding = labels if self.classification else self._labels_at(
                target, tuple(embedding.shape[2:]), labels_by_size)
            mi_term = mi_term + CONTRAST_WEIGHT * pixel_contrast_loss(
                embedding, at_embedding.labels, at_embedding.valid)
        if self.beta[index] == 0:
            return mi_term, None
        if self.ne_on == "adapter":
            return mi_term, negative_entropy(
                adapter_logits, dim=1, tau=self.tau, labels=None if self.classification else labels)
        layout = self.layouts[name] or "NC"
        channel_dim = 1 if layout.startswith("NC") else -1
        positions = None
        if not self.classification and layout in ("NCHW", "NHWC"):
            size = features.shape[2:] if layout == "NCHW" else features.shape[1:3]
            positions = self._labels_at(target, size, labels_by_size)
        return mi_term, negative_entropy(features, dim=channel_dim, tau=self.tau, labels=positions)

    def _labels_at(self, target: torch.Tensor, size: Sequence[int],
                   labels_by_size: dict[tuple[int, ...], LabelStatistics]) -> LabelStatistics:
        """The statistics of ``target`` resized to ``size``, computed once per size and step."""
        key = tuple(size)
        if key not in labels_by_size:
            labels_by_size[key] = label_statistics(
                _resize_labels(target, key), self.num_classes, self.ignore_index)
        return labels_by_size[key]


def _trace_unless_root_untraceable(model: nn.Module, example_inputs: Any,
                                   automatic: bool) -> tapfinder.ArchGraph | None:
    """The model's trace, or ``None`` where fx cannot trace its root and the taps are named
    modules (they are then read with forward hooks, with a :class:`HookFallbackWarning`)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", tapfinder.AutoLeafWarning)
            return tapfinder.trace(model, example_inputs)
    except TraceFailure as failure:
        if automatic:
            raise TraceFailure(
                f"{failure}\nAutomatic tap selection needs a trace. Without one, name module "
                "taps (taps=['encoder.layer1', ...]): they are read with forward hooks."
            ) from failure
        return None


def masked_cross_entropy(logits: torch.Tensor, target: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """Cross-entropy averaged over the pixels that are not ``ignore_index``; an exact 0 (with a
    zero gradient) when there are none. Computed as a sum over a count, so no host sync."""
    logits = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    total = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="sum")
    return total / (target != ignore_index).sum().clamp_min(1).to(total.dtype)


def _nonfinite_message(values: dict[str, float], places: dict[str, float]) -> str:
    """Name the non-finite loss terms and the first place whose sum is NaN or inf."""
    bad_terms = ", ".join(f"{k}={v}" for k, v in values.items() if not math.isfinite(v))
    source = next((where for where, total in places.items() if not math.isfinite(total)), None)
    origin = f"NaN or inf first appears in {source}" if source else (
        "the inputs, features and logits are finite, so a loss overflowed")
    return (
        f"The iMacHSR loss is not finite ({bad_terms}); {origin}. Check the data for NaN, "
        "lower the learning rate or clip gradients; under float16 autocast prefer bfloat16."
    )


def _sums(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each tensor's sum, detached: NaN or inf anywhere in it makes the sum non-finite (an
    overflow of the sum itself would need values near float32's limit). Half-precision tensors
    are summed in float32."""
    with torch.no_grad():
        return {name: t.sum(dtype=torch.float32) if t.dtype in (torch.float16, torch.bfloat16)
                else t.sum() for name, t in tensors.items()}


def _resize_labels(target: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Nearest-neighbour resize of a ``(B, *S)`` label map: labels and ``ignore_index`` survive.

    For a whole-number reduction this is a strided view (nearest picks source index ``i * s``),
    which costs no kernel; other sizes go through ``F.interpolate``.
    """
    source, size = tuple(target.shape[1:]), tuple(size)
    if source == size:
        return target
    if all(s >= d and s % d == 0 for s, d in zip(source, size)):
        strides = tuple(slice(None, None, s // d) for s, d in zip(source, size))
        index = (slice(None), *strides)
        return target[index]
    resized = F.interpolate(target.unsqueeze(1).float(), size=size, mode="nearest")
    return resized.squeeze(1).to(target.dtype)
