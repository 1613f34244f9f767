"""imachsr: intermediate multi-access heterogeneous supervision and regularisation (iMacHSR).

Deep supervision on the transition points :mod:`tapfinder` finds::

    scheme = imachsr.IMacHSR(model, num_classes=19, example_inputs=(2, 3, 512, 512))
    optimizer = torch.optim.Adam(scheme.parameters(), lr=1e-3)
    out = scheme(images, labels)          # out.loss (Eq. 3), out.terms, out.logits
    out.loss.backward(); optimizer.step()
    torch.save(scheme.model.state_dict(), "model.pt")   # loads into the original class
    imachsr.plain_state_dict(wrapped_or_checkpoint)      # the same, out of DDP, Lightning, ...

This package builds on ``tapfinder`` and is never imported by it.
"""

from tapfinder._version import __version__

from .adapters import DimensionAdapter, build_adapters
from .arithmetic import AdapterArithmetic, adapter_arithmetic
from .instrument import HookFallbackWarning, TappedModel, instrument
from .losses import mutual_information_loss, negative_entropy
from .plain_model import plain_state_dict
from .scheme import IMacHSR, SchemeOutput, model_logits

__all__ = [
    "__version__",
    "IMacHSR",
    "SchemeOutput",
    "instrument",
    "TappedModel",
    "HookFallbackWarning",
    "DimensionAdapter",
    "build_adapters",
    "adapter_arithmetic",
    "AdapterArithmetic",
    "mutual_information_loss",
    "negative_entropy",
    "model_logits",
    "plain_state_dict",
]
