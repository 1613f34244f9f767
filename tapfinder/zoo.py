"""Build a model, with random weights, from a command-line spec such as ``torchvision:resnet50``.

Specs:

- ``torchvision:NAME`` — any name in ``torchvision.models.list_models()``;
- ``timm:NAME`` — any name in ``timm.list_models()``;
- ``smp:ARCH:ENCODER`` — a segmentation-models-pytorch architecture and encoder (``tu-NAME``
  for any timm model as the encoder, as smp spells it);
- ``hf:CLASS`` or ``hf:CLASS:small`` — a Hugging Face transformers model class built from its
  configuration class's defaults; ``small`` keeps the widths and cuts every stage to one block
  and every layer stack to four layers (or two), for quick looks and tests;
- ``package.module:factory`` — a callable in an importable module (the user's own model).

Weights are never downloaded: the zoos are asked for random initialisation.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import warnings
from typing import TYPE_CHECKING, Any

from .errors import InvalidInputError

if TYPE_CHECKING:
    from torch import nn

__all__ = ["build_model", "SPEC_HELP"]

SPEC_HELP = (
    "torchvision:NAME (e.g. torchvision:resnet50), timm:NAME (timm:convnext_tiny), "
    "smp:ARCH:ENCODER (smp:DeepLabV3Plus:resnet18), hf:CLASS[:small] "
    "(hf:SegformerForSemanticSegmentation) or package.module:factory"
)


def build_model(spec: str, **kwargs: Any) -> nn.Module:
    """Return the model ``spec`` names, with random weights, in eval mode.

    Raises
    ------
    InvalidInputError
        For a malformed spec, a missing zoo package, or an unknown name (with close matches).

    Examples
    --------
    >>> build_model("torchvision:resnet18").__class__.__name__  # doctest: +SKIP
    'ResNet'
    """
    zoo, _, name = spec.partition(":")
    if not name:
        raise InvalidInputError(f"Model spec {spec!r} has no ':'. Use {SPEC_HELP}.")
    builders = {"torchvision": _torchvision, "timm": _timm, "smp": _smp, "hf": _transformers}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if zoo in builders:
            model = builders[zoo](name, kwargs)
        else:
            model = _user_factory(zoo, name, kwargs, zoos=list(builders))
    from torch import nn  # here, not at import: `tapfinder --help` needs no torch

    if not isinstance(model, nn.Module):
        raise InvalidInputError(f"{spec!r} built a {type(model).__name__}, not an nn.Module.")
    return model.eval()


def _import(package: str, extra: str = "zoo") -> Any:
    try:
        return importlib.import_module(package)
    except ImportError as error:
        raise InvalidInputError(
            f"{package} is not installed ({error}). Install it with: "
            f"pip install 'tapfinder[{extra}]'"
        ) from error


def _unknown(kind: str, name: str, known: list[str]) -> InvalidInputError:
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.6)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return InvalidInputError(f"Unknown {kind} model {name!r}.{hint}")


def _torchvision(name: str, kwargs: dict) -> nn.Module:
    models = _import("torchvision.models")
    known = models.list_models()
    if name not in known:
        raise _unknown("torchvision", name, known)
    defaults: dict[str, Any] = {"weights": None}
    # Segmentation and detection builders also load a pretrained backbone unless told not to.
    if "weights_backbone" in inspect.signature(models.get_model_builder(name)).parameters:
        defaults["weights_backbone"] = None
    if name in ("inception_v3", "googlenet"):
        defaults["init_weights"] = True
    return models.get_model(name, **{**defaults, **kwargs})


def _timm(name: str, kwargs: dict) -> nn.Module:
    timm = _import("timm")
    known = timm.list_models()
    if name not in known:
        raise _unknown("timm", name, known)
    return timm.create_model(name, pretrained=False, **kwargs)


def _smp(name: str, kwargs: dict) -> nn.Module:
    smp = _import("segmentation_models_pytorch")
    arch, _, encoder = name.partition(":")
    architectures = {a.__name__: a for a in smp.__dict__.values() if _is_smp_model(a)}
    if arch not in architectures:
        raise _unknown("segmentation-models-pytorch", arch, sorted(architectures))
    encoder = encoder or "resnet34"
    if encoder.startswith("tu-"):  # smp's "timm universal" encoders: any timm model
        timm_names = _import("timm").list_models()
        if encoder[3:] not in timm_names:
            raise _unknown("timm", encoder[3:], timm_names)
    else:
        known_encoders = smp.encoders.get_encoder_names()
        if encoder not in known_encoders:
            raise _unknown("segmentation-models-pytorch encoder", encoder,
                           [*known_encoders, "tu-<any timm model>"])
    return architectures[arch](encoder_name=encoder, encoder_weights=None, **kwargs)


def _transformers(name: str, kwargs: dict) -> nn.Module:
    transformers = _import("transformers")
    class_name, _, size = name.partition(":")
    if size not in ("", "small"):
        raise InvalidInputError(
            f"hf:{name}: the part after the class name must be 'small' (or nothing); got {size!r}.")
    model_class: Any = getattr(transformers, class_name, None)
    config_class: Any = getattr(model_class, "config_class", None)
    if config_class is None:
        known = [n for n in dir(transformers) if n.endswith(("Model", "Segmentation", "Estimation"))
                 or "For" in n]
        raise _unknown("transformers", class_name, known)
    config = config_class()
    if size == "small":
        config = _small_config(config)
    for key, value in kwargs.items():
        setattr(config, key, value)
    try:
        return model_class(config)
    except (ValueError, TypeError, AttributeError) as error:
        raise InvalidInputError(
            f"transformers could not build {class_name} from {config_class.__name__}'s defaults: "
            f"{error} Try hf:{class_name}:small, or build the model in your own factory "
            "(package.module:factory) with the configuration it needs."
        ) from error


# Layer counts a small configuration cuts, to this many layers.
_SMALL_LAYER_COUNTS = {"num_hidden_layers": 4, "encoder_layers": 2, "decoder_layers": 2}


def _small_config(config: Any) -> Any:
    """``config`` with every stage one block deep and every layer stack short; nested backbone
    configurations too, and the layer indices that backbones hand on (``out_indices``) moved to
    the layers that remain. Widths are kept: they must agree with head counts."""
    changes: dict[str, Any] = {}
    depths = getattr(config, "depths", None)
    if isinstance(depths, (list, tuple)):
        changes["depths"] = [1] * len(depths)
    for key, count in _SMALL_LAYER_COUNTS.items():
        value = getattr(config, key, None)
        if isinstance(value, int) and value > count:
            changes[key] = count
    layers = changes.get("num_hidden_layers")
    if layers is not None:  # layer indices a backbone hands on: every remaining layer
        if isinstance(getattr(config, "backbone_out_indices", None), (list, tuple)):
            changes["backbone_out_indices"] = list(range(layers))
        if isinstance(getattr(config, "out_indices", None), (list, tuple)):
            changes["out_indices"] = list(range(1, layers + 1))  # stage 0 is the stem
    backbone = getattr(config, "backbone_config", None)
    if backbone is not None and hasattr(backbone, "to_dict"):
        changes["backbone_config"] = _small_config(backbone)
    if "out_indices" in changes or "depths" in changes:  # stage names follow the depth
        changes.pop("stage_names", None)
        settings = {**config.to_dict(), **changes}
        settings.pop("stage_names", None)
        settings.pop("out_features", None)
        if isinstance(settings.get("backbone_config"), dict):
            settings["backbone_config"] = changes.get("backbone_config", backbone)
        return type(config)(**settings)
    for key, value in changes.items():
        setattr(config, key, value)
    return config


def _is_smp_model(value: Any) -> bool:
    from torch import nn

    return (
        isinstance(value, type)
        and issubclass(value, nn.Module)
        and value.__module__.startswith("segmentation_models_pytorch.decoders")
    )


def _user_factory(module_name: str, attribute: str, kwargs: dict, zoos: list[str]) -> nn.Module:
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        close = difflib.get_close_matches(module_name, zoos, n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]}:{attribute}?" if close else ""
        raise InvalidInputError(
            f"Cannot import {module_name!r} ({error}).{hint} Use {SPEC_HELP}; for your own "
            "model the package must be importable (installed, or on PYTHONPATH)."
        ) from error
    factory = getattr(module, attribute, None)
    if not callable(factory):
        public = [n for n in dir(module) if not n.startswith("_")]
        raise _unknown(module_name, attribute, public)
    return factory(**kwargs)
