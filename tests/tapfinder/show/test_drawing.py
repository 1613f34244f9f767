import shutil

import pytest
import torch

import tapfinder
from tapfinder.show.drawing import drawn_boxes, render
from tapfinder.taps.candidates import find_candidates
from tapfinder.taps.selection import select_taps

tv = pytest.importorskip("torchvision.models")
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot is missing")


@pytest.fixture(scope="module")
def analysed():
    with torch.device("meta"):
        model = tv.resnet18().eval()
    arch = tapfinder.trace(model, (1, 3, 224, 224))
    candidates = find_candidates(arch)
    return arch, candidates, select_taps(arch, candidates, k=3)


def test_drawing_numbers_the_taps_and_has_a_legend(analysed):
    arch, candidates, taps = analysed
    source = render(arch, candidates=candidates, taps=taps).source
    for number in (1, 2, 3):
        assert f"TAP {number}" in source
    assert "cluster_legend" in source and "stage_boundary" in source
    assert "cluster_layer1" in source and "1x64x56x56" in source


def test_collapse_draws_each_block_as_one_box(analysed):
    arch, candidates, taps = analysed
    full = render(arch, candidates=candidates, taps=taps).source
    collapsed = render(arch, candidates=candidates, taps=taps, collapse=2).source
    assert collapsed.count("->") < full.count("->") / 3
    assert "BasicBlock (" in collapsed



def test_labels_say_each_thing_once(analysed):
    arch, candidates, taps = analysed
    full = render(arch, candidates=candidates, taps=taps).source
    assert 'label="x\ninput' in full and 'label="x\nx' not in full  # the input, named once
    wrapped = torch.nn.Sequential(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)), torch.nn.ReLU())
    folded = render(tapfinder.trace(wrapped, (1, 3, 8, 8)), collapse=1).source
    assert "Sequential (Conv2d)" in folded and "(1 ops)" not in folded


def test_a_folded_box_names_the_node_each_of_its_taps_reads(analysed):
    arch, candidates, taps = analysed
    collapsed = render(arch, candidates=candidates, taps=taps, collapse=1).source
    folded = [(number, tap) for number, tap in enumerate(taps, start=1) if arch[tap.node]["scope"]]
    assert folded  # ResNet-18's taps lie in its layers, which depth 1 folds
    for number, tap in folded:
        assert f"TAP {number} at {tap.node}" in collapsed


def test_drawn_boxes_fold_modules_at_the_collapse_depth(analysed):
    arch, _, _ = analysed
    full, by_stage = drawn_boxes(arch), drawn_boxes(arch, collapse=1)
    assert {"layer1", "layer2", "layer3", "layer4"} <= by_stage.keys()
    assert len(by_stage) < len(full) / 4
    assert sorted(m for members in by_stage.values() for m in members) == sorted(
        m for members in full.values() for m in members)


@needs_dot
@pytest.mark.parametrize("suffix, magic", [(".svg", b"<?xml"), (".png", b"\x89PNG"), (".pdf", b"%PDF")])
def test_renders_to_image_formats(analysed, tmp_path, suffix, magic):
    arch, candidates, taps = analysed
    path = tmp_path / f"graph{suffix}"
    render(arch, path, candidates=candidates, taps=taps, collapse=2)
    assert path.read_bytes().startswith(magic)


def test_dot_source_and_bad_extension(analysed, tmp_path):
    arch, _, _ = analysed
    render(arch, tmp_path / "graph.dot")
    assert (tmp_path / "graph.dot").read_text().startswith("digraph")
    with pytest.raises(ValueError, match="use one of .svg"):
        render(arch, tmp_path / "graph.jpeg")