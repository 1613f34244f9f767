"""ShapeScenes: deterministic, labelled as drawn (occlusion included), every class reachable,
splits apart, bad arguments refused, and selectable in ``imachsr train --data scenes``."""

import math

import numpy as np
import pytest
import torch

from imachsr.data import ShapeScenes
from imachsr.data.scenes import SHAPES


def test_a_scene_is_the_same_for_the_same_seed_split_and_index_and_differs_otherwise():
    image, labels = ShapeScenes("train", length=3, seed=5)[1]
    again = ShapeScenes("train", length=3, seed=5)[1]
    assert torch.equal(image, again[0]) and torch.equal(labels, again[1])
    assert image.shape == (3, 128, 128) and image.dtype == torch.float32
    assert labels.shape == (128, 128) and labels.dtype == torch.int64
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert not torch.equal(image, ShapeScenes("train", length=3, seed=6)[1][0])
    assert not torch.equal(image, ShapeScenes("val", length=3, seed=5)[1][0])


def test_every_one_of_the_21_classes_appears_and_objects_span_a_wide_range_of_sizes():
    scenes = ShapeScenes("train", length=48, size=96)
    labels = torch.stack([scenes[i][1] for i in range(len(scenes))])
    assert set(labels.unique().tolist()) == set(range(21))
    assert len(ShapeScenes.class_names) == ShapeScenes.num_classes == 21
    assert ShapeScenes.class_names[1:11] == tuple(SHAPES)
    # Areas per object class and scene: from a few pixels to a large share of the scene.
    areas = [int((labels[i] == c).sum()) for i in range(len(labels)) for c in range(1, 21)
             if (labels[i] == c).any()]
    assert min(areas) < 30 and max(areas) > 0.1 * 96 * 96


def test_a_later_object_covers_an_earlier_one_in_the_image_and_the_labels():
    scenes = ShapeScenes("test", length=1, size=64)
    image = np.zeros((3, 64, 64), dtype=np.float32)
    labels = np.zeros((64, 64), dtype=np.int64)
    square = np.ones((20, 20), dtype=bool)
    rng = np.random.default_rng(0)
    scenes._paste(image, labels, square, 3, 10, 10, rng)   # rows and columns 10-29
    before = image.copy()
    scenes._paste(image, labels, square, 7, 20, 20, rng)   # rows and columns 20-39, on top
    assert (labels[20:30, 20:30] == 7).all() and (labels[10:20, 10:30] == 3).all()
    assert (labels[30:40, 20:40] == 7).all() and (labels[:10] == 0).all()
    assert not np.array_equal(image[:, 20:30, 20:30], before[:, 20:30, 20:30])
    assert np.array_equal(image[:, 10:20, 10:20], before[:, 10:20, 10:20])
    # Clipped at the border: an object half outside the scene labels what lies inside.
    scenes._paste(image, labels, square, 9, -10, 54, rng)
    assert (labels[:10, 54:] == 9).all()


def test_the_background_is_textured_and_unlabelled():
    image, labels = ShapeScenes("test", length=1, objects=(1, 1), seed=2)[0]
    background = image[:, labels == 0]
    assert float(background.std(dim=1).mean()) > 0.03


def test_shapes_are_distinct_glyphs_of_sensible_size():
    v, u = (np.mgrid[0:64, 0:64] + 0.5) / 64 * 2 - 1
    masks = {name: shape(u, v) for name, shape in SHAPES.items()}
    for name, mask in masks.items():
        assert 0.15 < mask.mean() < 0.85, name
    names = list(masks)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            overlap = (masks[a] & masks[b]).sum() / (masks[a] | masks[b]).sum()
            assert overlap < 0.9, (a, b)


def test_splits_draw_digits_from_disjoint_sources_like_digit_canvas():
    from imachsr.data.digits import _source_digits

    assert ShapeScenes("val", length=1).digits.shape == _source_digits("val")[0].shape


@pytest.mark.parametrize("arguments, message", [
    ({"split": "dev"}, "split must be one of train, val, test"),
    ({"size": 16}, "size must be at least 32"),
    ({"objects": (0, 3)}, "objects must be a range"),
    ({"objects": (5, 2)}, "objects must be a range"),
])
def test_bad_arguments_are_refused(arguments, message):
    with pytest.raises(ValueError, match=message):
        ShapeScenes(**arguments)


def test_imachsr_train_reads_scenes(tmp_path):
    from imachsr.train import TrainConfig, train

    config = TrainConfig(model="smp:FPN:tu-resnet10t", data="scenes", size=64, train_length=8,
                         eval_length=4, epochs=1, batch_size=4, write_artefacts=False,
                         out=str(tmp_path))
    result = train(config)
    assert len(result.test["IoU"]) == 21 and not math.isnan(result.test["mIoU"])
    assert result.class_names[0] == "background" and result.class_names[-1] == "digit 9"
