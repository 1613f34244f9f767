"""The interactive HTML page: its data round-trips the graph, it needs nothing from a network,
and ``tapfinder inspect --html`` and ``render(..., ".html")`` write it."""

from __future__ import annotations

import json
import re

import pytest
from support import SmallNet

import tapfinder
from tapfinder.cli import main
from tapfinder.show.page import html_page, page_data


def analysed(model, shape=(1, 3, 32, 32), k=3):
    arch = tapfinder.trace(model, shape)
    candidates = tapfinder.find_candidates(arch)
    return arch, candidates, tapfinder.select_taps(arch, candidates, k=k)


def embedded_data(page: str) -> dict:
    payload = re.search(r'<script type="application/json" id="tapfinder-data">(.*?)</script>',
                        page, re.S)
    assert payload
    return json.loads(payload.group(1))


def test_the_page_data_round_trips_every_node_edge_tap_and_piece_of_evidence():
    arch, candidates, taps = analysed(SmallNet())
    data = embedded_data(html_page(arch, candidates, taps, command="test"))
    assert list(data["nodes"]) == list(arch.graph.nodes)
    assert [tuple(edge) for edge in data["edges"]] == list(arch.graph.edges)
    for name, record in data["nodes"].items():
        attrs = arch[name]
        assert (record["op"], record["layer_index"], record["on_main_path"], record["params"]) == (
            attrs["op"], attrs["layer_index"], attrs["on_main_path"], attrs["params"])
    assert [t["node"] for t in data["taps"]] == [t.node for t in taps]
    assert data["taps"][0]["explain"] == taps[0].explain()
    assert sum(len(r["evidence"]) for r in data["nodes"].values()) == len(candidates)
    assert {data["nodes"][t.node]["tap"] for t in taps} == {1, 2, 3}
    assert data["command"] == "test" and data["version"] == tapfinder.__version__
    assert data["summary"] == arch.summary()


def test_every_fold_level_draws_each_box_once_and_holds_every_drawn_node():
    arch, candidates, taps = analysed(SmallNet())
    levels = page_data(arch, candidates, taps)["levels"]
    assert levels[0]["collapse"] == 0 and len(levels) >= 2
    drawn = set(levels[0]["boxes"])
    for level in levels:
        members = [m for ms in level["boxes"].values() for m in ms]
        assert sorted(members) == sorted(drawn)  # folding regroups the same nodes
        titles = re.findall(r'<g id="node\d+" class="node">\s*<title>(.*?)</title>', level["svg"])
        boxes = {t for t in titles if not t.startswith("legend_")}
        assert boxes == set(level["boxes"])
    assert len({len(level["boxes"]) for level in levels}) == len(levels)  # no duplicate level


def test_the_page_is_self_contained():
    arch, candidates, taps = analysed(SmallNet())
    page = html_page(arch, candidates, taps)
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", page)
    assert not re.search(r"url\(|@import|fetch\(|XMLHttpRequest", page)
    # </script> and <!-- (graphviz's SVG comments) inside the data cannot end it early.
    assert page.count("</script>") == 2
    data_element = page[page.index('id="tapfinder-data"'):]
    assert "<!--" not in data_element[:data_element.index("</script>")]


def test_inspect_writes_the_page_with_its_command(tmp_path, capsys):
    out = tmp_path / "page.html"
    argv = ["inspect", "torchvision:resnet18", "--input-shape", "1,3,64,64", "--html", str(out)]
    assert main(argv) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    data = embedded_data(out.read_text())
    assert data["command"] == "tapfinder " + " ".join(argv)
    assert [level["collapse"] for level in data["levels"]][:2] == [0, 1]


def test_render_to_html_writes_the_page(tmp_path):
    arch, candidates, taps = analysed(SmallNet())
    tapfinder.render(arch, tmp_path / "net.html", candidates=candidates, taps=taps)
    assert embedded_data((tmp_path / "net.html").read_text())["taps"]
    with pytest.raises(ValueError, match=r"use one of .svg, .png, .pdf, .dot or .html"):
        tapfinder.render(arch, tmp_path / "net.txt")
