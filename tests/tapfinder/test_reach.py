"""Models that take more than a batch tensor, or whose root fx cannot trace: torchvision
detection (a list of images; eager record), optical flow (RAFT) and video (Swin3D)."""

import warnings

import pytest
import torch
from support import assert_same, snapshot

import imachsr
import tapfinder
from tapfinder.capture.example_inputs import normalize_example_inputs, random_inputs

tv = pytest.importorskip("torchvision.models")

DETECTORS = {
    "fasterrcnn_mobilenet_v3_large_fpn": lambda: tv.detection.fasterrcnn_mobilenet_v3_large_fpn(
        weights=None, weights_backbone=None, min_size=96, max_size=96),
    "maskrcnn_resnet50_fpn": lambda: tv.detection.maskrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, min_size=96, max_size=96),
    "ssdlite320_mobilenet_v3_large": lambda: tv.detection.ssdlite320_mobilenet_v3_large(
        weights=None, weights_backbone=None),
}
IMAGES = ([(3, 96, 96), (3, 96, 64)],)  # two images of different sizes, as detection takes them


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def run_both(model, tapped, example):
    inputs = random_inputs(normalize_example_inputs(example), torch.device("cpu"))
    with torch.no_grad():
        return tapped(*inputs.args), model(*inputs.args)


@pytest.mark.parametrize("name", list(DETECTORS))
def test_a_detector_is_analysed_from_one_eager_run_and_tapped_with_hooks_bit_identically(name):
    torch.manual_seed(0)
    model = DETECTORS[name]().eval()
    before = snapshot(model)
    with pytest.warns(tapfinder.EagerGraphWarning, match=f"could not trace {type(model).__name__}"):
        arch = tapfinder.trace(model, IMAGES)
    assert_same(before, snapshot(model))
    assert arch.shape_mode == "eager" and arch.inputs == ("images_0", "images_1")
    taps = tapfinder.select_taps(arch, k=3)
    assert len(taps) == 3 and all(t.shape[0] == 2 for t in taps)  # the list is the batch
    strides = {round(arch[t.node]["reduction"]) for t in taps}  # against the images' own size
    assert len(strides) >= 2 and max(strides) >= 8
    assert all(arch[t.node]["hook"].startswith("backbone") for t in taps)
    assert not any("downsample" in arch[t.node]["hook"] for t in taps)  # Mask R-CNN's shortcut BN
    tapped = imachsr.instrument(model, taps, IMAGES, arch=arch)
    assert tapped.uses_hooks
    assert_same(before, snapshot(model))  # running the model below fills its own caches
    (output, features), expected = run_both(model, tapped, IMAGES)
    assert same(output, expected)
    assert [tuple(f.shape) for f in features.values()] == [t.shape for t in taps]


def test_raft_traces_with_torch_tensor_of_a_traced_size_recorded_in_the_graph():
    model = tv.optical_flow.raft_small().eval()
    example = ((1, 3, 128, 128), (1, 3, 128, 128))  # RAFT needs 128 pixels
    arch = tapfinder.trace(model, example)  # torch.tensor(num_channels) in _compute_corr_volume
    assert arch.shape_mode != "eager" and not arch.leaves
    assert any(a["target"].endswith("tensor") for _, a in arch.graph.nodes(data=True))
    tapped = imachsr.instrument(model, tapfinder.select_taps(arch, k=2), example, arch=arch)
    (output, _), expected = run_both(model, tapped, example)
    assert same(output, expected)


def test_swin3d_traces_where_a_wrapped_function_changes_its_list_arguments():
    model = tv.video.swin3d_t().eval()
    example = (1, 3, 16, 64, 64)
    arch = tapfinder.trace(model, example)  # _get_window_and_shift_size assigns into its lists
    assert arch.shape_mode != "eager" and not arch.leaves
    tapped = imachsr.instrument(model, tapfinder.select_taps(arch, k=3), example, arch=arch)
    (output, _), expected = run_both(model, tapped, example)
    assert same(output, expected)


def test_a_detectors_module_taps_can_be_named_directly():
    torch.manual_seed(0)
    model = DETECTORS["fasterrcnn_mobilenet_v3_large_fpn"]().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tapfinder.EagerGraphWarning)
        tapped = imachsr.instrument(model, ["backbone.body.3", "backbone.fpn"], IMAGES)
    (_, features), _ = run_both(model, tapped, IMAGES)
    assert list(features) == ["backbone.body.3", "backbone.fpn"]


def test_a_detector_in_training_mode_is_recorded_and_tapped_with_its_targets():
    torch.manual_seed(0)
    model = tv.detection.fasterrcnn_mobilenet_v3_large_fpn(
        weights=None, weights_backbone=None, min_size=96, max_size=96, num_classes=3).train()
    images = [torch.rand(3, 96, 96), torch.rand(3, 96, 64)]
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 50.0, 60.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.tensor([[5.0, 5.0, 30.0, 40.0]]), "labels": torch.tensor([2])}]
    with pytest.warns(tapfinder.EagerGraphWarning):
        arch = tapfinder.trace(model, (images, targets))  # real boxes: random ones are invalid
    assert arch.inputs[2:] == ("targets_0_boxes", "targets_0_labels", "targets_1_boxes",
                               "targets_1_labels")
    tapped = imachsr.instrument(model, tapfinder.select_taps(arch, k=3), (images, targets),
                                arch=arch)
    torch.manual_seed(1)
    losses, features = tapped(images, targets)
    torch.manual_seed(1)
    assert same(losses, model(images, targets))  # the detector's own losses, bit for bit
    auxiliary = sum(feature.square().mean() for feature in features.values())
    (sum(losses.values()) + auxiliary).backward()  # features carry gradients for your own loss
    assert model.backbone.body["1"].block[0][0].weight.grad is not None


def test_zoo_specs_build_detectors_without_downloading_a_backbone():
    from tapfinder.zoo import build_model

    model = build_model("torchvision:fasterrcnn_mobilenet_v3_large_fpn")  # no network here
    assert type(model).__name__ == "FasterRCNN" and not model.training
