"""Deep supervision with the Hugging Face ``Trainer``, on a transformers segmenter.

What this shows, in order:

1. a ``SegformerForSemanticSegmentation`` built from its configuration (random weights);
2. ``imachsr.IMacHSR`` wrapping it with automatic taps, and
   ``imachsr.huggingface.DeepSupervisionTrainer`` (a ``transformers.Trainer``) training it from
   a data set of ``{"pixel_values", "labels"}`` items: the labels go to the taps' terms and the
   output's cross-entropy, and each term appears in the Trainer's logs;
3. ``trainer.save_model(folder)`` writes the plain model: ``from_pretrained`` loads it as the
   class's own model, no head weights, no unexpected keys;
4. ``trainer.train(resume_from_checkpoint=True)`` resumes the model and the heads.

Run:  python examples/hf_trainer.py            (about 3 minutes on a laptop CPU)
      python examples/hf_trainer.py --smoke    (a few steps, to check it runs)
"""

from __future__ import annotations

import argparse

import torch
from transformers import SegformerConfig, SegformerForSemanticSegmentation, TrainingArguments
from transformers.utils import logging as hf_logging

import imachsr
from imachsr.data import DigitCanvas, PairedTransform
from imachsr.huggingface import DeepSupervisionTrainer


class PixelValuesAndLabels(torch.utils.data.Dataset):
    """DigitCanvas items as the dictionaries Hugging Face models and the Trainer expect."""

    def __init__(self, split: str, length: int, size: int) -> None:
        self.base = DigitCanvas(split, length=length, size=size, cache=True)
        self.transform = PairedTransform(train=split == "train", crop=(size, size), flip=False)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image, label = self.transform(*self.base[index])
        return {"pixel_values": image, "labels": label}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few steps on tiny canvases")
    parser.add_argument("--out", default="hf_trainer_run", help="output folder")
    options = parser.parse_args()
    size, length, steps = (32, 16, 4) if options.smoke else (64, 512, 192)
    out = options.out
    hf_logging.set_verbosity_error()  # the Trainer's own notices; the logs below still print
    hf_logging.disable_progress_bar()
    torch.manual_seed(0)

    num_classes = DigitCanvas.num_classes
    config = SegformerConfig(num_labels=num_classes, hidden_sizes=[16, 32, 64, 128],
                             decoder_hidden_size=64, depths=[1, 1, 1, 1])
    model = SegformerForSemanticSegmentation(config)
    scheme = imachsr.IMacHSR(model, num_classes, example_inputs=(2, 3, size, size))
    print("taps:", ", ".join(scheme.taps))

    arguments = TrainingArguments(
        output_dir=out, max_steps=steps, per_device_train_batch_size=8, learning_rate=1e-3,
        logging_steps=max(1, steps // 4), save_steps=steps // 2, report_to="none",
        use_cpu=not torch.cuda.is_available(), disable_tqdm=True)
    trainer = DeepSupervisionTrainer(
        model=scheme, args=arguments, train_dataset=PixelValuesAndLabels("train", length, size),
        eval_dataset=PixelValuesAndLabels("val", 32, size))
    trainer.train()
    logged = next(entry for entry in trainer.state.log_history if "loss" in entry)
    print("a training log:", {k: v for k, v in logged.items() if k in ("loss", "ce") or "/" in k})
    print("evaluation:", trainer.evaluate())

    # The saved folder is the plain model: its class loads it, heads left out.
    trainer.save_model(out)
    restored = SegformerForSemanticSegmentation.from_pretrained(out).eval()
    images = PixelValuesAndLabels("val", 8, size)[0]["pixel_values"].unsqueeze(0)
    with torch.no_grad():
        same = torch.equal(restored(pixel_values=images).logits,
                           scheme.model.eval()(pixel_values=images).logits)
    print(f"saved {out}; SegformerForSemanticSegmentation.from_pretrained loads it and predicts "
          f"the same: {same}")

    # Resuming restores the model and the heads from the last checkpoint.
    arguments.max_steps = steps + max(1, steps // 4)
    scheme.train()
    DeepSupervisionTrainer(model=scheme, args=arguments,
                           train_dataset=PixelValuesAndLabels("train", length, size)
                           ).train(resume_from_checkpoint=True)
    print(f"resumed from the checkpoint at step {steps} and trained to step {arguments.max_steps}")


if __name__ == "__main__":
    main()
