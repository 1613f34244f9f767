import random

import numpy as np
import pytest
import torch
from PIL import Image

from imachsr.data import CamVid, Cityscapes, DigitCanvas, PairedTransform, SynthiaSF
from imachsr.data.digits import _source_digits


def test_digit_canvases_are_deterministic_and_labelled():
    data = DigitCanvas("train", length=4, size=64, seed=3)
    image, labels = data[2]
    again = DigitCanvas("train", length=4, size=64, seed=3)[2]
    assert torch.equal(image, again[0]) and torch.equal(labels, again[1])
    assert image.shape == (3, 64, 64) and labels.shape == (64, 64)
    assert 0 <= int(labels.min()) and int(labels.max()) <= 10 and len(labels.unique()) >= 2
    assert not torch.equal(image, DigitCanvas("train", length=4, size=64, seed=4)[2][0])


def test_digit_splits_draw_from_disjoint_source_digits():
    shares = {split: {img.tobytes() for img in _source_digits(split)[0]} for split in ("train", "val", "test")}
    assert not shares["train"] & shares["test"] and not shares["train"] & shares["val"]
    assert not shares["val"] & shares["test"]
    assert sum(len(s) for s in shares.values()) > 1700


def test_clutter_is_not_labelled():
    data = DigitCanvas("test", length=1, size=64, digits=(0, 0), clutter=True)
    image, labels = data[0]
    assert image.max() > 0.3 and int(labels.max()) == 0


def write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)


def test_cityscapes_reads_its_layout_and_maps_label_ids(tmp_path):
    raw = np.array([[7, 8, 26], [0, 33, 255]])
    write_png(tmp_path / "leftImg8bit/val/berlin/a_leftImg8bit.png", np.zeros((2, 3, 3)))
    write_png(tmp_path / "gtFine/val/berlin/a_gtFine_labelIds.png", raw)
    image, labels = Cityscapes(tmp_path, "val")[0]
    assert image.shape == (3, 2, 3)
    assert labels.tolist() == [[0, 1, 13], [255, 18, 255]]


def test_camvid_ignores_void(tmp_path):
    write_png(tmp_path / "train/x.png", np.zeros((2, 2, 3)))
    write_png(tmp_path / "trainannot/x.png", np.array([[0, 10], [11, 3]]))
    _, labels = CamVid(tmp_path, "train")[0]
    assert labels.tolist() == [[0, 10], [255, 3]]


def test_synthia_reads_the_class_from_the_first_channel_and_splits_by_sequence(tmp_path):
    for sequence in ("SEQ1", "SEQ2"):
        write_png(tmp_path / sequence / "RGBLeft/0000.png", np.zeros((2, 2, 3)))
        gt = np.zeros((2, 2, 3))
        gt[..., 0] = [[1, 22], [23, 5]]
        write_png(tmp_path / sequence / "GTLeft/0000.png", gt)
    assert len(SynthiaSF(tmp_path, "train")) == 1 and len(SynthiaSF(tmp_path, "all")) == 2
    assert SynthiaSF(tmp_path, "test")[0][1].tolist() == [[1, 22], [255, 5]]


def test_missing_or_wrong_folders_say_what_was_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        Cityscapes(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="leftImg8bit/SPLIT/CITY"):
        Cityscapes(tmp_path, "train")
    write_png(tmp_path / "train/x.png", np.zeros((2, 2, 3)))
    with pytest.raises(FileNotFoundError, match="has no label file"):
        CamVid(tmp_path, "train")
    write_png(tmp_path / "trainannot/x.png", np.zeros((3, 3)))
    with pytest.raises(ValueError, match="3x3 but its image"):
        CamVid(tmp_path, "train")[0]


def test_paired_transform_moves_image_and_labels_together():
    image = torch.arange(2 * 4 * 6, dtype=torch.float32).reshape(2, 4, 6)[:1].expand(3, 4, 6)
    labels = torch.arange(24).reshape(4, 6) % 11
    transform = PairedTransform(train=True, crop=(6, 8), scale=(1.0, 1.0), mean=(0, 0, 0), std=(1, 1, 1))
    out_image, out_labels = transform(image, labels, random.Random(1))
    assert out_image.shape == (3, 6, 8) and out_labels.shape == (6, 8)
    padded = out_labels == 255
    assert padded.sum() == 6 * 8 - 4 * 6  # padding is ignored, not background
    inside = ~padded
    flipped_pairs = {(int(v), int(l)) for v, l in zip(out_image[0][inside], out_labels[inside])}
    assert flipped_pairs == {(int(v), int(v) % 11) for v in range(24)}
