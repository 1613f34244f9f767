"""``ArchGraph``: the summary, and serialisation that keeps every attribute (JSON, GraphML,
node-link)."""

import json

import networkx as nx
import pytest
import torch

import tapfinder

tv = pytest.importorskip("torchvision.models")


def test_summary_fits_one_screen_and_names_the_strides(small_net):
    text = tapfinder.trace(small_net, (2, 3, 16, 16)).summary()
    lines = text.splitlines()
    assert len(lines) <= 30 and max(len(line) for line in lines) <= 120
    assert "SmallNet" in lines[0] and "stage3_act" in text


def test_json_round_trip_keeps_every_attribute(small_net, tmp_path):
    arch = tapfinder.trace(small_net, (2, 3, 16, 16))
    path = tmp_path / "arch.json"
    arch.to_json(path)
    restored = tapfinder.ArchGraph.from_json(path)
    assert restored.traced is None and restored.graph_module is None
    assert list(restored.graph.nodes(data=True)) == list(arch.graph.nodes(data=True))
    assert list(restored.graph.edges) == list(arch.graph.edges)
    assert (restored.inputs, restored.outputs) == (arch.inputs, arch.outputs)
    assert restored.summary() == arch.summary()


def test_from_json_refuses_other_documents(tmp_path):
    with pytest.raises(ValueError, match="Not a tapfinder ArchGraph"):
        tapfinder.ArchGraph.from_json('{"nodes": []}')


def test_graphml_and_node_link_exports(tmp_path):
    with torch.device("meta"):
        arch = tapfinder.trace(tv.resnet18().eval(), (1, 3, 224, 224))
    arch.to_graphml(tmp_path / "arch.graphml")
    loaded = nx.read_graphml(tmp_path / "arch.graphml")
    assert set(loaded.nodes) == set(arch.graph.nodes)
    assert json.loads(loaded.nodes["layer4_1_relu_1"]["shape"]) == [1, 512, 7, 7]
    data = json.loads(json.dumps(arch.to_node_link()))
    assert len(data["nodes"]) == len(arch) and len(data["edges"]) == arch.graph.number_of_edges()
