import json
import subprocess
import sys

import pytest

from tapfinder import __version__
from tapfinder.cli import main


def test_version(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0 and __version__ in capsys.readouterr().out


def test_summary_prints_the_structure_and_writes_json(capsys, tmp_path):
    path = tmp_path / "arch.json"
    assert main(["summary", "torchvision:resnet18", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "ResNet" in out and "layer4_1_relu_1" in out
    assert json.loads(path.read_text())["model_name"] == "ResNet"


@pytest.mark.parametrize("arguments, code, message", [
    pytest.param(["summary", "torchvision:resnt18"], 2, "Did you mean: resnet18",
                 id="unknown-model-close-matches"),
    pytest.param(["inspect", "torchvison:resnet18"], 2, "Did you mean torchvision:resnet18?",
                 id="misspelt-zoo"),
    pytest.param(["summary", "smp:FPN:tu-regnetx_02"], 2, "Unknown timm model 'regnetx_02'",
                 id="unknown-timm-encoder-of-smp"),
    pytest.param(["summary", "torchvision:resnet18", "--input-shape", "1,3"], 1,
                 "failed at node 'conv1'", id="fails-on-the-input-shape"),
    pytest.param(["summary", "torchvision:resnet18", "--input-shape", "3,64,64"], 1,
                 "--input-shape 1,3,64,64", id="image-shape-without-batch-hint"),
])
def test_bad_models_and_shapes_exit_with_what_to_do(arguments, code, message, capsys):
    assert main(arguments) == code
    assert message in capsys.readouterr().err


def test_smp_takes_any_timm_model_as_encoder(capsys):
    assert main(["summary", "smp:DeepLabV3Plus:tu-regnetx_002", "--input-shape", "1,3,64,64"]) == 0
    assert "DeepLabV3Plus" in capsys.readouterr().out


def test_malformed_input_shape_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["summary", "torchvision:resnet18", "--input-shape", "1,x"])
    assert exited.value.code == 2 and "is not a shape" in capsys.readouterr().err


def test_user_factory_spec(capsys):
    assert main(["summary", "support:SmallNet", "--input-shape", "2,3,16,16"]) == 0
    assert "SmallNet" in capsys.readouterr().out


def test_a_model_with_two_inputs_takes_one_input_shape_each(capsys):
    arguments = ["summary", "support:TwoInputNet", "--input-shape", "2,3,16,16",
                 "--input-shape", "2,5"]
    assert main(arguments) == 0
    out = capsys.readouterr().out
    assert "input  image: (2, 3, 16, 16)" in out and "input  vector: (2, 5)" in out


def test_token_ids_are_given_with_input_dtype(capsys):
    arguments = ["summary", "support:TinyTokenTransformer", "--input-shape", "2,12"]
    assert main([*arguments, "--input-dtype", "int64"]) == 0
    assert "input  ids: (2, 12) int64" in capsys.readouterr().out
    assert main(arguments) == 1  # float ids into an embedding: the model cannot run
    assert "could not analyse" in capsys.readouterr().err


def test_a_root_fx_cannot_trace_is_analysed_from_one_run_with_a_note(capsys):
    assert main(["summary", "support:RootBranchNet", "--input-shape", "1,3,8,8"]) == 0
    captured = capsys.readouterr()
    assert "(shapes: eager)" in captured.out
    assert "tapfinder: note: torch.fx could not trace RootBranchNet.forward" in captured.err


def test_inspect_prints_taps_and_candidates(capsys):
    assert main(["inspect", "torchvision:resnet18", "--k", "2", "--position", "output"]) == 0
    out = capsys.readouterr().out
    assert "2 taps" in out and "Taps:" in out and "Candidates:" in out and "layer4" in out


def test_inspect_json_is_a_stable_document(capsys):
    assert main(["inspect", "torchvision:resnet18", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["version"] == 1 and document["model"] == "ResNet"
    assert len(document["taps"]) == 3
    assert {"node", "module", "kinds", "score", "depth", "shape", "reasons", "beat"} <= document["taps"][0].keys()


def test_inspect_unknown_kind_is_a_usage_error(capsys):
    assert main(["inspect", "torchvision:resnet18", "--kinds", "downsample"]) == 2
    assert "known kinds" in capsys.readouterr().err


def test_render_writes_the_file_creating_its_folder(tmp_path, capsys):
    path = tmp_path / "new" / "folder" / "resnet.dot"
    assert main(["render", "torchvision:resnet18", "-o", str(path), "--collapse", "2"]) == 0
    assert path.read_text().startswith("digraph") and "TAP 1" in path.read_text()


def test_a_drawing_too_tall_to_read_gets_a_collapse_hint(tmp_path, capsys):
    assert main(["render", "torchvision:resnet50", "-o", str(tmp_path / "r.dot")]) == 0
    assert "--collapse 2 draws each block as one box" in capsys.readouterr().err
    assert main(["render", "torchvision:resnet50", "-o", str(tmp_path / "r.dot"), "--collapse", "2"]) == 0
    assert "hint" not in capsys.readouterr().err


def test_an_unwritable_drawing_path_exits_1_with_a_message(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["render", "torchvision:resnet18", "-o", str(blocker / "graph.svg")]) == 1
    assert "could not write the drawing" in capsys.readouterr().err


def test_help_answers_without_importing_torch():
    code = ("import sys\nfrom tapfinder.cli import main\n"
            "try:\n    main(['inspect', '--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch loaded' if 'torch' in sys.modules else 'torch not loaded')")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert completed.stdout.strip().endswith("torch not loaded")
    import tapfinder

    help_text = " ".join(completed.stdout.split())
    assert all(kind in help_text for kind in tapfinder.registered_kinds())  # the list is current


def test_the_lazy_package_keeps_trace_and_render_as_functions_after_their_modules_load():
    code = ("import tapfinder, tapfinder.capture.tracing, tapfinder.show.drawing\n"
            "import tapfinder.taps.selection\n"
            "assert callable(tapfinder.trace) and callable(tapfinder.render), "
            "(tapfinder.trace, tapfinder.render)\n"
            "assert tapfinder.taps.positions.POSITIONS[0] == 'uniform' and 'trace' in dir(tapfinder)\n"
            "print('ok')")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert completed.stdout.strip() == "ok", completed.stderr


def test_token_strides_leave_the_class_token_out(capsys):
    assert main(["summary", "torchvision:vit_b_16"]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if "encoder_ln" in l)
    assert line.split()[0] == "16"
