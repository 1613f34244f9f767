"""The experiment runner and its report: paired-t statistics on hand-computed examples, the
records' keys, resumption."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[2] / "benchmarks" / "experiments"
sys.path.insert(0, str(EXPERIMENTS))

from report import load_records, paired_difference, regime_table, t_critical_95  # noqa: E402


def test_t_critical_values_match_the_table_and_approach_the_normal():
    assert t_critical_95(1) == 12.706
    assert t_critical_95(7) == 2.365
    assert t_critical_95(30) == 2.042
    assert 2.000 < t_critical_95(50) < 2.021
    assert t_critical_95(10_000) == pytest.approx(1.960, abs=1e-3)
    with pytest.raises(ValueError, match="at least 1 degree"):
        t_critical_95(0)


def test_paired_difference_by_hand():
    # differences 2, 3, 1: mean 2, sd 1, half-width t(2) * 1 / sqrt(3) = 4.303 / 1.732 = 2.484
    difference = paired_difference([3.0, 5.0, 4.0], [1.0, 2.0, 3.0])
    assert (difference.mean, difference.sd, difference.n) == (2.0, 1.0, 3)
    assert difference.low == pytest.approx(2 - 4.303 / math.sqrt(3))
    assert difference.high == pytest.approx(2 + 4.303 / math.sqrt(3))
    assert difference.verdict == "within noise"


def test_pairing_removes_the_seed_to_seed_spread():
    baseline = [30.0, 40.0, 50.0, 60.0]
    arm = [31.0, 41.5, 50.5, 61.0]  # +1, +1.5, +0.5, +1: better on every seed
    difference = paired_difference(arm, baseline)
    assert difference.verdict == "better"
    assert paired_difference(baseline, arm).verdict == "worse"


def test_paired_samples_must_match_and_hold_two_seeds():
    with pytest.raises(ValueError, match="differ in length"):
        paired_difference([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="at least 2 seeds"):
        paired_difference([1.0], [1.0])


def record(arm: str, seed: int, miou: float, baseline: bool = False) -> dict:
    return {"regime": "r", "arm": arm, "seed": seed, "default": arm == "b", "baseline": baseline,
            "test": {"mIoU": miou}, "val": [miou / 2, miou]}


def test_the_table_pairs_by_seed_and_marks_the_default(tmp_path):
    records = [record("a", s, 0.30 + 0.01 * s, baseline=True) for s in range(3)]
    records += [record("b", s, 0.32 + 0.01 * s + 0.001 * s) for s in range(3)]
    records += [record("c", s, 0.31 + 0.01 * s + 0.001 * s) for s in range(3)]
    rows = regime_table(records, default_arm="b")
    row = next(r for r in rows if r.startswith("| b"))
    # differences in points: 2.0, 2.1, 2.2 -> mean 2.1, sd 0.1, t(2) = 4.303
    half = 4.303 * 0.1 / math.sqrt(3)
    assert f"+2.10 [{2.1 - half:+.2f}, {2.1 + half:+.2f}] (n=3)" in row
    assert "**(default)**" in row and "| better |" in row and row.endswith("| — |")
    # c against the default b on validation: -1.0 on every seed (sd 0)
    assert next(r for r in rows if r.startswith("| c")).endswith("| -1.00 [-1.00, -1.00] (n=3) |")
    assert "**(default)**" not in next(r for r in rows if r.startswith("| c"))


def test_a_later_record_of_the_same_run_replaces_the_earlier(tmp_path):
    lines = [record("a", 0, 0.1, True), record("a", 0, 0.2, True), record("a", 1, 0.3, True)]
    (tmp_path / "r.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    loaded = load_records(tmp_path)["r"]
    assert sorted((r["seed"], r["test"]["mIoU"]) for r in loaded) == [(0, 0.2), (1, 0.3)]


def test_the_runner_appends_one_record_per_run_and_resumes(tmp_path):
    command = [sys.executable, str(EXPERIMENTS / "run_experiments.py"), "--smoke",
               "--regimes", "digits96", "--arms", "output-only,ce-spread-head-constant-no-ne",
               "--seeds", "0", "--workers", "2", "--records", str(tmp_path)]
    first = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    records = [json.loads(line) for line in (tmp_path / "digits96.jsonl").read_text().splitlines()]
    assert {r["arm"] for r in records} == {"output-only", "ce-spread-head-constant-no-ne"}
    for run in records:
        assert {"regime", "arm", "seed", "default", "baseline", "test", "val"} <= run.keys()
        assert 0.0 <= run["test"]["mIoU"] <= 1.0 and len(run["val"]) == 2
        assert run["baseline"] == (run["arm"] == "output-only")
        assert run["default"] == (run["arm"] == "ce-spread-head-constant-no-ne")  # the defaults
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert "0 runs to do" in again.stdout


def test_every_recorded_arm_ran_on_the_taps_its_options_pick_today():
    """The records stay evidence for an arm only while its options still choose the taps the
    runs trained on: a change to the ranker (or to what ``spacing`` counts) that moves them
    makes the recorded runs describe another arm."""
    import torch

    import tapfinder
    from run_experiments import ARMS, MODEL, REGIMES
    from tapfinder.zoo import build_model

    regimes = load_records(EXPERIMENTS.parents[1] / "docs" / "results")
    recorded: dict[tuple[str, int], set[tuple[str, ...]]] = {}
    for run in (run for records in regimes.values() for run in records):
        if ARMS[run["arm"]][0]["method"] == "imachsr":
            recorded.setdefault((run["arm"], REGIMES[run["regime"]]["size"]), set()).add(
                tuple(run["taps"]))
    assert recorded, "no iMacHSR records found"
    traces = {}
    for (arm, size), taps in sorted(recorded.items()):
        if size not in traces:
            with torch.device("meta"):
                model = build_model(MODEL, classes=11)
            traces[size] = tapfinder.trace(model, (2, 3, size, size))
        options = ARMS[arm][0]
        chosen = tapfinder.select_taps(traces[size], k=options["k"], spacing=options["spacing"],
                                       position=options["position"])
        assert taps == {tuple(tap.node for tap in chosen)}, arm


def test_the_gain_quoted_to_users_is_the_recorded_gain_of_the_defaults():
    """``imachsr train --compare`` and the README quote the default arm's mean test gain over
    output-only in each regime; they must follow the records when the default changes."""
    from report import current_default_arm

    from imachsr.train import RunResult, comparison_verdict

    default = current_default_arm()
    gains = []
    for records in load_records(EXPERIMENTS.parents[1] / "docs" / "results").values():
        baseline = {r["seed"]: r["test"]["mIoU"] for r in records if r["baseline"]}
        arm = sorted((r["seed"], r["test"]["mIoU"]) for r in records if r["arm"] == default)
        gains.append(paired_difference([m * 100 for _, m in arm],
                                       [baseline[s] * 100 for s, _ in arm]).mean)
    low, high = f"{min(gains):.1f}", f"{max(gains):.1f}"
    seed = RunResult({"seed": 0}, test={"mIoU": 0.5})
    assert f"scored {low} to {high} points above output-only" in comparison_verdict(seed, seed)
    readme = " ".join((EXPERIMENTS.parents[1] / "README.md").read_text().split())
    assert f"measure the defaults at +{low} and +{high} test mIoU" in readme
