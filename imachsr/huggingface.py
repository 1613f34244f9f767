"""Deep supervision in the Hugging Face ``Trainer``: :class:`DeepSupervisionTrainer`.

A plain ``Trainer`` around an :class:`~imachsr.IMacHSR` reads the scheme's signature
(``forward(*inputs, target=None, **model_kwargs)``) and so drops every column of the batch,
logs one loss only, and saves the scheme's adapters into ``model.safetensors`` under keys the
model's class does not know. This subclass fixes the three::

    scheme = imachsr.IMacHSR(model, num_classes=19, example_inputs=(2, 3, 512, 512))
    trainer = DeepSupervisionTrainer(model=scheme, args=TrainingArguments(...),
                                     train_dataset=data)      # items {"pixel_values", "labels"}
    trainer.train()                       # logs ce and mi/<tap> beside loss
    trainer.save_model("out")             # out/ holds the plain model: Model.from_pretrained("out")

Needs ``transformers`` (``pip install 'tapfinder[hf]'``).
"""

from __future__ import annotations

import inspect
import os
from typing import Any, cast

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedModel, Trainer

from .plain_model import split_scheme_state
from .scheme import IMacHSR, SchemeOutput

__all__ = ["ADAPTERS_FILE", "DeepSupervisionTrainer"]

# Beside the model's own files in every saved folder, for resuming; from_pretrained ignores it.
ADAPTERS_FILE = "imachsr_adapters.safetensors"


class DeepSupervisionTrainer(Trainer):
    """``transformers.Trainer`` for a model wrapped by :class:`~imachsr.IMacHSR`.

    - The batch keeps the columns the *wrapped model's* forward takes, plus ``labels``.
    - The loss is the scheme's: ``labels`` go to the scheme as its target, never to the model
      (whose own loss would replace the taps' terms).
    - Each logged step carries the scheme's terms (``ce``, ``mi/<tap>``, ``ne/<tap>``) averaged
      over the steps since the previous log and over the processes.
    - Every saved folder (checkpoints and ``save_model``) is the plain model as its class saves
      it, so ``from_pretrained`` loads it with no unexpected keys; the adapters are saved beside
      it in :data:`ADAPTERS_FILE`, and ``resume_from_checkpoint`` restores both.
    """

    def __init__(self, model: IMacHSR | None = None, *args: Any, **kwargs: Any) -> None:
        if not isinstance(model, IMacHSR):
            raise TypeError(
                f"DeepSupervisionTrainer trains an imachsr.IMacHSR; got {type(model).__name__}. "
                "Wrap the model first: IMacHSR(model, num_classes=..., example_inputs=...).")
        super().__init__(model, *args, **kwargs)
        if self.args.label_names is None:
            self.label_names = ["labels"]
        self._term_sums: dict[str, torch.Tensor] = {}
        self._term_steps = 0

    @property
    def scheme(self) -> IMacHSR:
        """The scheme being trained (unwrapped from DDP and ``torch.compile``)."""
        scheme = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        assert isinstance(scheme, IMacHSR)
        return scheme

    def _set_signature_columns_if_needed(self) -> None:
        # The Trainer keeps the columns its model's forward names; the scheme's forward takes
        # *inputs, so the names come from the wrapped model (as TRL's trainers do for theirs).
        if self._signature_columns is None:
            names = inspect.signature(self.scheme.model.forward).parameters
            columns = [*names, "target", "labels", "label", "label_ids", *self.label_names]
            self._signature_columns = cast(Any, columns)  # typed as its initial None

    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: torch.Tensor | int | None = None) -> Any:
        """The scheme's loss; its terms are kept (on the device) for the next log."""
        if inputs.get("labels") is None and inputs.get("target") is None:  # before the model runs
            raise ValueError(
                f"The batch has no labels (keys: {', '.join(inputs)}); deep supervision needs "
                "them under 'labels' (or 'target'). Check the data set's items and the "
                "collator.")
        output = model(**inputs)
        if model.training:
            for name, value in output.term_tensors.items():
                if name != "loss":  # the Trainer logs the loss itself
                    self._term_sums[name] = self._term_sums.get(name, 0) + value.float()
            self._term_steps += 1
        return (output.loss, {"logits": output.logits}) if return_outputs else output.loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the mean of each term since the last training log, over all processes."""
        if "loss" in logs and self._term_steps:
            means = torch.stack(list(self._term_sums.values())) / self._term_steps
            means = self.accelerator.reduce(means, reduction="mean")
            logs.update(zip(self._term_sums, (round(v, 4) for v in means.tolist())))
            self._term_sums, self._term_steps = {}, 0
        super().log(logs, start_time)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        folder = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save or folder is None:
            return
        os.makedirs(folder, exist_ok=True)
        scheme = self.scheme
        weights, adapters = split_scheme_state(state_dict if state_dict is not None
                                               else scheme.state_dict())
        if isinstance(scheme.model, PreTrainedModel):
            scheme.model.save_pretrained(folder, state_dict=weights)
        else:
            save_file(_contiguous(weights), os.path.join(folder, "model.safetensors"))
        save_file(_contiguous(adapters), os.path.join(folder, ADAPTERS_FILE))
        if self.processing_class is not None:
            self.processing_class.save_pretrained(folder)
        torch.save(self.args, os.path.join(folder, "training_args.bin"))

    def _load_from_checkpoint(self, resume_from_checkpoint: str,
                              model: nn.Module | None = None) -> None:
        scheme = self.scheme if model is None else self.accelerator.unwrap_model(model)
        adapters = os.path.join(resume_from_checkpoint, ADAPTERS_FILE)
        if not os.path.isfile(adapters):
            raise FileNotFoundError(
                f"{resume_from_checkpoint} has no {ADAPTERS_FILE}: it was not saved by "
                "DeepSupervisionTrainer, so the adapters cannot be restored. Resume from a "
                "checkpoint this trainer wrote, or start the adapters afresh without resuming.")
        if isinstance(scheme.model, PreTrainedModel):
            # The class's own loader knows its tied weights and sharded files.
            saved = type(scheme.model).from_pretrained(resume_from_checkpoint).state_dict()
        else:
            saved = load_file(os.path.join(resume_from_checkpoint, "model.safetensors"))
        scheme.model.load_state_dict(saved)
        scheme.adapters.load_state_dict(load_file(adapters))

    def _load_best_model(self) -> None:
        assert self.state.best_model_checkpoint is not None
        self._load_from_checkpoint(self.state.best_model_checkpoint)


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors stores whole, unshared buffers."""
    return {name: tensor.detach().contiguous().clone() for name, tensor in state.items()}
