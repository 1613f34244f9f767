"""The ``imachsr train`` pipeline end to end on tiny canvases (a one-minute smoke version)."""

import json
import re
import shutil
import subprocess
import sys

import pytest
import torch

from imachsr.cli import main as imachsr_main
from imachsr.train import main

TINY = ["--model", "smp:DeepLabV3Plus:resnet18", "--size", "48", "--train-length", "64",
        "--eval-length", "16", "--batch-size", "8", "--seed", "1"]


def test_compare_trains_both_and_writes_every_artefact(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TINY, "--compare", "--epochs", "3", "--limit-steps", "6", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "output-only" in printed and "iMacHSR" in printed and "mIoU" in printed
    for method in ("plain", "imachsr"):
        results = json.loads((out / method / "metrics.json").read_text())
        history = results["history"]
        assert len(history) == 3 and history[-1]["loss"] < history[0]["loss"]
        assert 0.0 <= results["test"]["mIoU"] <= 1.0
        for name in ("model.pt", "loss_curve.png", "metric_curve.png"):
            assert (out / method / name).stat().st_size > 0
        assert not (out / method / "state.pt").exists()  # only an unfinished run keeps it
    for name in ("loss_curve.png", "metric_curve.png", "qualitative.png"):
        assert (out / name).read_bytes().startswith(b"\x89PNG")
    taps = [k for k in json.loads((out / "imachsr" / "metrics.json").read_text())["history"][0] if k.startswith("mi/")]
    assert len(taps) == 3
    assert json.loads((out / "plain" / "metrics.json").read_text())["class_names"][:2] == ["background", "0"]


def test_the_qualitative_figure_has_a_legend_of_the_classes_it_shows():
    from imachsr.data import DigitCanvas
    from imachsr.data.splits import run_data
    from imachsr.figures import prediction_figure
    from imachsr.train import build_model_for

    data = run_data("digits", size=48, train_length=2, eval_length=4, seed=1)
    model = build_model_for("smp:DeepLabV3Plus:tu-resnet10t", data.classes).eval()
    figure = prediction_figure([model], ["output-only"], data.test, data.class_names, samples=2)
    shown = [text.get_text() for text in figure.legends[0].get_texts()]
    assert "background" in shown and set(shown) <= set(DigitCanvas.class_names)
    assert len(figure.axes) == 2 * 3  # image, ground truth, one prediction per row


def test_resume_ends_where_the_uninterrupted_run_ends(tmp_path):
    # A run stopped after epoch 1 is simulated by --epochs 1; decaying schedules follow --epochs,
    # so this simulation needs constant ones (a real interruption keeps --epochs and its schedule).
    constant = ["--schedule", "constant", "--lr-schedule", "constant"]
    common = [*TINY, *constant, "--epochs", "2", "--limit-steps", "2"]
    assert main([*common, "--out", str(tmp_path / "straight")]) == 0
    assert main([*TINY, *constant, "--epochs", "1", "--limit-steps", "2", "--keep-state",
                 "--out", str(tmp_path / "split")]) == 0
    assert main([*common, "--resume", "--out", str(tmp_path / "split")]) == 0
    straight = torch.load(tmp_path / "straight" / "model.pt")
    resumed = torch.load(tmp_path / "split" / "model.pt")
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


def test_an_interrupted_run_leaves_its_state_and_resumes(tmp_path, monkeypatch):
    import imachsr.train.loop as training

    out = tmp_path / "run"
    arguments = [*TINY, "--epochs", "2", "--limit-steps", "2", "--out", str(out)]
    real_epoch = training._train_epoch

    def interrupted(*args, **kwargs):
        if args[4] == 1:  # the second epoch
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(training, "_train_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        main(arguments)
    assert (out / "state.pt").is_file() and not (out / "metrics.json").exists()
    monkeypatch.setattr(training, "_train_epoch", real_epoch)
    assert main([*arguments, "--resume"]) == 0
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert [record["epoch"] for record in history] == [0, 1]
    assert not (out / "state.pt").exists()


def test_a_checkpoint_write_killed_halfway_leaves_the_previous_epoch_to_resume_from(
        tmp_path, monkeypatch):
    """The second epoch's state write dies after half its bytes (a crash, a full disk): the
    first epoch's state.pt stays whole, and --resume continues from it to the same end."""
    import imachsr.checkpoints as checkpoints

    out = tmp_path / "run"
    arguments = [*TINY, "--epochs", "2", "--limit-steps", "2", "--schedule", "constant",
                 "--lr-schedule", "constant", "--out", str(out)]
    real_save, writes = torch.save, []

    def dies_halfway(obj, file):
        writes.append(file)
        if len(writes) == 3:  # epoch 2's state.pt (epoch 1 wrote state.pt and model.pt)
            real_save(obj, file)
            file.truncate(file.tell() // 2)
            raise OSError(28, "No space left on device")
        return real_save(obj, file)

    monkeypatch.setattr(checkpoints.torch, "save", dies_halfway)
    with pytest.raises(OSError, match="No space left"):
        main(arguments)
    monkeypatch.setattr(checkpoints.torch, "save", real_save)
    state = torch.load(out / "state.pt", weights_only=False)  # readable: the first epoch's
    assert state["epoch"] == 0 and not list(out.glob(".*.tmp"))
    assert main([*arguments, "--resume"]) == 0
    assert main([*arguments, "--out", str(tmp_path / "straight")]) == 0
    resumed, straight = (torch.load(folder / "model.pt") for folder in (out, tmp_path / "straight"))
    assert all(torch.equal(resumed[k], straight[k]) for k in straight)


def test_save_atomically_replaces_whole_files_only(tmp_path):
    from imachsr.checkpoints import save_atomically, write_text_atomically

    save_atomically({"a": torch.ones(2)}, tmp_path / "x.pt")
    write_text_atomically("done", tmp_path / "x.json")
    assert torch.equal(torch.load(tmp_path / "x.pt")["a"], torch.ones(2))
    assert (tmp_path / "x.json").read_text() == "done"
    with pytest.raises(AttributeError, match="pickle"):
        save_atomically(lambda: None, tmp_path / "x.pt")  # unpicklable: nothing replaced
    assert torch.equal(torch.load(tmp_path / "x.pt")["a"], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json", "x.pt"]


@pytest.mark.parametrize("arguments, message", [
    (["--model", "smp:DeepLabV3Plus:resnt18"], "Did you mean"),
    (["--data", "cityscapes"], "needs --data-root"),
    (["--data", "camvid", "--data-root", "/nonexistent"], "is not a folder"),
    (["--k", "40", "--epochs", "1"], "--k 40"),
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["--resume"], "no training state"),
    (["--head-width", "0"], "head_width must be a positive integer"),
])
def test_bad_arguments_end_with_a_message_and_exit_code_2(arguments, message, tmp_path, capsys):
    assert main([*TINY, "--limit-steps", "1", "--out", str(tmp_path / "x"), *arguments]) == 2
    assert message in capsys.readouterr().err


def test_the_imachsr_command_dispatches_and_explains_itself(capsys):
    assert imachsr_main(["--version"]) == 0
    assert imachsr_main(["fly"]) == 2 and "imachsr train --help" in capsys.readouterr().err
    assert imachsr_main(["trian"]) == 2 and "Did you mean 'train'?" in capsys.readouterr().err


def test_train_help_gives_every_option_its_default(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "which a mirror changes) --train-length" in text  # no "(default: None)" for --flip
    for shown in ("--k K number of auto taps (default: 3)", "(default: uniform)", "(default: eq1)",
                  "(default: head)", "(default: 256)", "(default: constant)", "(default: 0.4)",
                  "(default: 0.0)", "(default: 8)",
                  "(default: 0.002)", "(default: runs/imachsr)"):
        assert shown in text


def test_training_says_what_trains_and_reports_every_epoch(tmp_path, capsys):
    assert main([*TINY, "--epochs", "2", "--limit-steps", "1", "--out", str(tmp_path)]) == 0
    lines = [line for line in capsys.readouterr().err.replace("\r", "\n").splitlines()
             if line.startswith(("[iMacHSR]", "epoch "))]
    assert lines[0].startswith("[iMacHSR] smp:DeepLabV3Plus:resnet18 on digits") and "3 taps (" in lines[0]
    assert re.search(r"; the adapters add \d+\.\d\d GFLOPs per image to the model's \d+\.\d\d "
                     r"\(\d+\.\d\dx its forward pass\)$", lines[0]), lines[0]
    assert [line.split()[1] for line in lines[1:]] == ["1/2", "2/2"]
    assert all("val mIoU" in line and "ETA" in line for line in lines[1:])


@pytest.mark.skipif(shutil.which("torchrun") is None and not (
    (sys.prefix and shutil.which("torchrun", path=f"{sys.prefix}/bin"))), reason="torchrun missing")
def test_the_same_command_runs_under_torchrun(tmp_path):
    torchrun = shutil.which("torchrun", path=f"{sys.prefix}/bin") or shutil.which("torchrun")
    completed = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node=2", "-m", "imachsr.train", *TINY,
         "--epochs", "1", "--limit-steps", "2", "--out", str(tmp_path / "ddp")],
        capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "test mIoU" in completed.stdout
    assert (tmp_path / "ddp" / "metrics.json").is_file()


def test_the_comparison_names_every_class_and_says_what_one_seed_means():
    from imachsr.train import RunResult, comparison_table

    def run(ious: list[float]) -> RunResult:
        test = {"mIoU": (ious[0] + ious[1]) / 2, "mF1": 0.5, "mPre": 0.5, "mRec": 0.5, "IoU": ious}
        return RunResult({"seed": 3}, test=test, class_names=["background", "0", "1"])

    table = comparison_table(run([0.9, 0.5, float("nan")]), run([0.9, 0.4333, float("nan")]))
    assert "background" in table and "  0 " in table and " 50.0 " in table and " 43.3" in table
    assert " -" in table.splitlines()[-3]  # a class absent from the test set
    assert "3.3 mIoU points below output-only on this seed (3)" in table
    assert "docs/results.md" in table


@pytest.mark.parametrize("flip, data, expected", [(None, "digits", False), (True, "digits", True),
                                                  (None, "scenes", False)])
def test_digits_and_scenes_are_not_flipped_unless_asked(flip, data, expected):
    from imachsr.data.splits import run_data

    data_sets = run_data(data, flip=flip, size=32, train_length=2, eval_length=2)
    assert data_sets.train.transform.flip is expected


def test_the_loss_figure_keeps_objectives_apart_and_epochs_whole():
    from imachsr.figures import loss_figure, metric_figure
    from imachsr.train import RunResult

    history = [{"epoch": e, "loss": 1.0 / (e + 1), "ce": 0.5, "val": {"mIoU": 0.1 * e}} for e in range(3)]
    runs = [RunResult({}, history=history), RunResult({}, history=history)]
    loss = loss_figure(runs, ["output-only", "iMacHSR"])
    assert [axis.get_ylabel() for axis in loss.axes] == ["cross-entropy", "objective"]
    for figure in (loss, metric_figure(runs, ["output-only", "iMacHSR"])):
        for axis in figure.axes:
            ticks = [t for t in axis.get_xticks() if 1 <= t <= 3]
            assert ticks and all(float(t).is_integer() for t in ticks)


def test_a_run_names_its_negative_entropy_only_when_it_has_one():
    from imachsr.train import TrainConfig
    from imachsr.train.loop import describe_run

    taps = ["layer1", "layer3"]
    assert "negative entropy" not in describe_run(TrainConfig(), taps)
    assert describe_run(TrainConfig(beta=0.01), taps).endswith(
        "constant weights, Eq. 2 negative entropy at beta 0.01")
