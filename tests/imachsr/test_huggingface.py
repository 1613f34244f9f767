"""The Hugging Face path: labels by the model's own keyword, and DeepSupervisionTrainer."""

from __future__ import annotations

import logging
import math
import os

import pytest
import torch
from torch.nn import functional as F

import imachsr

transformers = pytest.importorskip("transformers")
from imachsr.huggingface import ADAPTERS_FILE, DeepSupervisionTrainer  # noqa: E402

SIZE, CLASSES = 32, 4


def segformer() -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.SegformerConfig(num_labels=CLASSES, hidden_sizes=[8, 16, 16, 16],
                                          decoder_hidden_size=16, depths=[1, 1, 1, 1])
    return transformers.SegformerForSemanticSegmentation(config)


class Items(torch.utils.data.Dataset):
    def __init__(self, length: int = 8) -> None:
        generator = torch.Generator().manual_seed(1)
        self.images = torch.randn(length, 3, SIZE, SIZE, generator=generator)
        self.labels = torch.randint(0, CLASSES, (length, SIZE, SIZE), generator=generator)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.images[index], "labels": self.labels[index]}


def test_labels_by_the_models_keyword_reach_the_taps_not_the_model():
    scheme = imachsr.IMacHSR(segformer(), CLASSES, example_inputs=(2, 3, SIZE, SIZE)).eval()
    items = Items()
    x, y = items.images[:2], items.labels[:2]
    out = scheme(pixel_values=x, labels=y)
    assert isinstance(out, imachsr.SchemeOutput)
    assert {f"mi/{tap}" for tap in scheme.taps} <= set(out.terms)
    logits = F.interpolate(out.logits.detach(), size=y.shape[1:], mode="bilinear")
    assert out.terms["ce"] == pytest.approx(float(F.cross_entropy(logits, y)), abs=1e-5)
    assert out.terms["loss"] == pytest.approx(scheme(x, y).terms["loss"], abs=1e-5)


def test_the_model_arithmetic_is_the_eager_models_at_every_batch_size():
    """A batch size other than the example's makes the tapped SegFormer trace itself again; the
    trace's shape propagation must not count as the model's arithmetic."""
    from torch.utils.flop_counter import FlopCounterMode

    model = segformer()
    scheme = imachsr.IMacHSR(model, CLASSES, example_inputs=(2, 3, SIZE, SIZE))
    with torch.no_grad(), FlopCounterMode(display=False) as eager:
        model(torch.randn(3, 3, SIZE, SIZE))
    for images in (1, 3):
        counted = imachsr.adapter_arithmetic(scheme, (images, 3, SIZE, SIZE))
        assert counted.model == eager.get_total_flops() // 3


def test_the_scheme_loss_is_a_mean_the_trainer_must_not_rescale():
    assert imachsr.IMacHSR.accepts_loss_kwargs is False


def arguments(tmp_path, **changes):
    return transformers.TrainingArguments(
        output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4, logging_steps=1,
        save_steps=2, report_to="none", use_cpu=True, disable_tqdm=True, **changes)


def test_the_trainer_keeps_the_columns_logs_each_tap_and_saves_the_plain_model(tmp_path):
    scheme = imachsr.IMacHSR(segformer(), CLASSES, example_inputs=(2, 3, SIZE, SIZE))
    trainer = DeepSupervisionTrainer(model=scheme, args=arguments(tmp_path),
                                     train_dataset=Items(), eval_dataset=Items(4))
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 2
    for entry in logs:
        assert {"ce", *(f"mi/{tap}" for tap in scheme.taps)} <= set(entry)
        assert all(math.isfinite(entry[f"mi/{tap}"]) for tap in scheme.taps)
    assert math.isfinite(trainer.evaluate()["eval_loss"])

    trainer.save_model(str(tmp_path / "final"))
    records = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    hf_logger = logging.getLogger("transformers")
    hf_logger.addHandler(handler)
    try:
        restored = transformers.SegformerForSemanticSegmentation.from_pretrained(
            tmp_path / "final")
    finally:
        hf_logger.removeHandler(handler)
    assert not [r for r in records if r.levelno >= logging.WARNING], [r.getMessage() for r in records]
    x = Items().images[:2]
    with torch.no_grad():
        assert torch.equal(restored.eval()(pixel_values=x).logits,
                           scheme.model.eval()(pixel_values=x).logits)
    assert os.path.isfile(tmp_path / "final" / ADAPTERS_FILE)


def test_resuming_restores_the_model_and_the_adapters(tmp_path):
    scheme = imachsr.IMacHSR(segformer(), CLASSES, example_inputs=(2, 3, SIZE, SIZE))
    DeepSupervisionTrainer(model=scheme, args=arguments(tmp_path), train_dataset=Items()).train()
    saved = {k: v.clone() for k, v in scheme.state_dict().items()}
    fresh = imachsr.IMacHSR(segformer(), CLASSES, example_inputs=(2, 3, SIZE, SIZE))
    trainer = DeepSupervisionTrainer(model=fresh, args=arguments(tmp_path), train_dataset=Items())
    trainer._load_from_checkpoint(str(tmp_path / "checkpoint-2"))
    assert all(torch.equal(saved[k], v) for k, v in fresh.state_dict().items())
    # load_best_model_at_end reads the same folders.
    best = imachsr.IMacHSR(segformer(), CLASSES, example_inputs=(2, 3, SIZE, SIZE))
    trainer = DeepSupervisionTrainer(model=best, args=arguments(tmp_path), train_dataset=Items())
    trainer.state.best_model_checkpoint = str(tmp_path / "checkpoint-2")
    trainer._load_best_model()
    assert all(torch.equal(saved[k], v) for k, v in best.state_dict().items())
