"""``tapfinder.trace`` on real architectures nobody here wrote (random weights)."""

import warnings

import pytest
import torch

import tapfinder

tv = pytest.importorskip("torchvision.models")
smp = pytest.importorskip("segmentation_models_pytorch")

ZOO = {
    "resnet18": lambda: tv.resnet18(),
    "resnet50": lambda: tv.resnet50(),
    "vit_b_16": lambda: tv.vit_b_16(),
    "swin_t": lambda: tv.swin_t(),
    "convnext_tiny": lambda: tv.convnext_tiny(),
    "efficientnet_b0": lambda: tv.efficientnet_b0(),
    "mobilenet_v3_large": lambda: tv.mobilenet_v3_large(),
    "densenet121": lambda: tv.densenet121(),
    "regnet_y_400mf": lambda: tv.regnet_y_400mf(),
    "maxvit_t": lambda: tv.maxvit_t(),
    "inception_v3": lambda: tv.inception_v3(init_weights=False),
    "googlenet": lambda: tv.googlenet(init_weights=False),
    "deeplabv3_resnet50": lambda: tv.segmentation.deeplabv3_resnet50(weights_backbone=None),
    "lraspp_mobilenet_v3_large": lambda: tv.segmentation.lraspp_mobilenet_v3_large(
        weights_backbone=None
    ),
    "smp_deeplabv3plus_resnet18": lambda: smp.DeepLabV3Plus("resnet18", encoder_weights=None),
    "smp_unet_resnet18": lambda: smp.Unet("resnet18", encoder_weights=None),
}
INPUT = {"inception_v3": (2, 3, 299, 299)}
OUTPUT = {
    "deeplabv3_resnet50": {"out": (2, 21, 224, 224)},
    "lraspp_mobilenet_v3_large": {"out": (2, 21, 224, 224)},
    "smp_deeplabv3plus_resnet18": (2, 1, 224, 224),
    "smp_unet_resnet18": (2, 1, 224, 224),
}


def build(name: str, device: str = "meta") -> torch.nn.Module:
    """Build with random weights, on the meta device (no allocation) where the constructor can."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with torch.device(device):
                return ZOO[name]().eval()
        except NotImplementedError:  # constructors that compute on tensors (RegNet's widths)
            return ZOO[name]().eval()


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_model_traces_without_leaves_to_its_output_shape(name):
    arch = tapfinder.trace(build(name), INPUT.get(name, (2, 3, 224, 224)))
    assert not arch.leaves
    assert arch["output"]["shape"] == OUTPUT.get(name, (2, 1000))
    assert arch.max_layer_index > 10
    assert all(
        arch[n]["layout"] is not None for n in arch.graph if arch[n]["module_type"] == "Conv2d"
    )


@pytest.mark.parametrize("name", ["resnet18", "swin_t", "smp_unet_resnet18"])
def test_traced_shapes_match_a_real_forward_pass(name):
    torch.manual_seed(0)
    model = build(name, device="cpu")
    arch = tapfinder.trace(model, (2, 3, 224, 224))
    recorded = {}

    def remember(module, args, output):
        recorded[module] = tuple(output.shape)

    named = dict(model.named_modules())
    leaves = [n for n in arch.graph if arch[n]["op"] == "call_module"]
    handles = [named[arch[n]["module"]].register_forward_hook(remember) for n in leaves]
    with torch.no_grad():
        model(torch.randn(2, 3, 224, 224))
    for handle in handles:
        handle.remove()
    for node in leaves:
        assert arch[node]["shape"] == recorded[named[arch[node]["module"]]], node


def test_channels_last_and_token_layouts_are_inferred_from_neighbours():
    swin = tapfinder.trace(build("swin_t"), (1, 3, 224, 224))
    merge = swin["features_2_reduction"]
    assert merge["shape"] == (1, 28, 28, 192) and merge["layout"] == "NHWC"
    assert merge["channels"] == 192 and merge["spatial"] == (28, 28) and merge["reduction"] == 8

    vit = tapfinder.trace(build("vit_b_16"), (1, 3, 224, 224))
    block = vit["add_24"]  # the residual add that ends the last encoder block
    assert block["layout"] == "NLC" and block["spatial"] == (197,) and block["channels"] == 768

    convnext = tapfinder.trace(build("convnext_tiny"), (1, 3, 224, 224))
    layouts = {convnext[n]["layout"] for n in convnext.graph if "features_1_0" in n}
    assert {"NCHW", "NHWC"} <= layouts


def test_resnet50_stages_are_the_last_main_path_node_at_each_stride():
    arch = tapfinder.trace(build("resnet50"), (1, 3, 224, 224))
    assert arch.stages()[1:5] == [
        "layer1_2_relu_2", "layer2_3_relu_2", "layer3_5_relu_2", "layer4_2_relu_2",
    ]


def test_training_mode_graph_includes_the_auxiliary_head():
    model = build("inception_v3").train()
    arch = tapfinder.trace(model, (2, 3, 299, 299))
    assert arch["output"]["value"] == "tuple"
    assert arch["output"]["shape"] == ((2, 1000), (2, 1000))


timm = pytest.importorskip("timm")


@pytest.mark.parametrize("name, training", [
    ("levit_128s", False),  # eval mode fills attention_bias_cache in forward
    ("efficientformer_l1", False),
    ("mobilenetv3_small_100", True),  # BatchNormAct2d counts batches in Python
])
def test_analysis_leaves_caches_counters_and_rng_alone_and_can_be_repeated(name, training):
    from support import assert_same, snapshot

    import imachsr

    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=5).train(training)
    before = snapshot(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arch = tapfinder.trace(model, (2, 3, 224, 224))
        taps = tapfinder.select_taps(arch, k=2)
        assert_same(before, snapshot(model))
        # A second analysis of the same model works, and so does training on it (#11).
        scheme = imachsr.IMacHSR(model, 5, example_inputs=(2, 3, 224, 224), taps=taps,
                                 schedule="constant")
    assert_same(before, snapshot(model))
    model.eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(scheme.tapped(x)[0], model(x))
