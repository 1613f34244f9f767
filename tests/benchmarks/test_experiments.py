"""The experiment runner and its report: paired-t statistics on hand-computed examples, the
records' keys, resumption."""

from __future__ import annotations

import json
import math
import re
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
    regime = "deeplabv3plus-digits64"
    command = [sys.executable, str(EXPERIMENTS / "run_experiments.py"), "--smoke",
               "--regimes", regime, "--arms", "output-only,default-auto,default-random",
               "--later-arms", "output-only-matched", "--seeds", "0", "--workers", "2",
               "--records", str(tmp_path)]
    first = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    records = {r["arm"]: r for r in map(json.loads, (tmp_path / f"{regime}.jsonl").read_text()
                                        .splitlines())}
    assert set(records) == {"output-only", "default-auto", "default-random",
                            "output-only-matched"}, first.stdout
    for arm, run in records.items():
        assert {"regime", "arm", "seed", "default", "baseline", "test", "val", "family",
                "taps_from", "compute_matched"} <= run.keys()
        assert 0.0 <= run["test"]["mIoU"] <= 1.0 and run["family"] == "deeplabv3plus"
        assert run["baseline"] == arm.startswith("output-only")
        assert run["default"] == (arm == "default-auto")  # the library's defaults
        assert run["taps_from"] == {"default-auto": "auto", "default-random": "random"}.get(arm)
    matched = records["output-only-matched"]
    assert matched["compute_matched"] and matched["matched_ratio"] > 0
    assert len(matched["val"]) == matched["config"]["epochs"] >= 2
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert "0 runs to do" in again.stdout


def _traced(model: str, size: int):
    import torch

    import tapfinder
    from imachsr.train import build_model_for

    with torch.device("meta"):
        return tapfinder.trace(build_model_for(model, 11), (2, 3, size, size))


def test_every_recorded_arm_ran_on_the_taps_its_options_pick_today():
    """The records stay evidence for an arm only while its options still choose the taps the
    runs trained on: a change to the ranker (or to what ``spacing`` counts) that moves them
    makes the recorded runs describe another arm."""
    from run_experiments import ARMS, REGIMES, named_taps, random_taps

    import tapfinder

    regimes = load_records(EXPERIMENTS.parents[1] / "docs" / "results")
    checked = 0
    for regime, records in sorted(regimes.items()):
        model, size = REGIMES[regime]["model"], REGIMES[regime]["size"]
        for run in records:
            options = ARMS[run["arm"]][0]
            if options["method"] != "imachsr":
                continue
            taps_from = options.get("taps_from", "auto")
            if taps_from == "auto":
                expected = [tap.node for tap in tapfinder.select_taps(
                    _traced(model, size), k=options["k"], spacing=options["spacing"],
                    position=options["position"])]
            elif taps_from == "random":
                expected = random_taps(model, size, run["seed"], options["k"])
            else:
                expected = list(named_taps(regime, taps_from))
            assert run["taps"] == expected, (regime, run["arm"], run["seed"])
            checked += 1
    assert checked, "no iMacHSR records found"


def test_every_named_tap_set_names_tensors_of_its_model():
    """The hand-named taps (an expert's, the mid-block ones) exist in the model they name."""
    from run_experiments import REGIMES, TAP_SETS

    sizes = {regime["model"]: regime["size"] for regime in REGIMES.values()}
    assert set(TAP_SETS) <= set(sizes)
    for model, sets in TAP_SETS.items():
        arch = _traced(model, sizes[model])
        for name, (nodes, why) in sets.items():
            assert len(nodes) == 3 and why, (model, name)
            assert all(arch[node]["value"] == "tensor" for node in nodes), (model, name)


def test_random_taps_are_candidates_drawn_again_alike_for_a_seed():
    from run_experiments import random_taps

    import tapfinder
    from tapfinder.taps.selection import merge_candidates

    model = "smp:DeepLabV3Plus:tu-resnet10t"
    arch = _traced(model, 64)
    allowed = {e.node for e in merge_candidates(arch, tapfinder.find_candidates(arch))}
    draws = [random_taps(model, 64, seed) for seed in range(4)]
    assert all(len(set(taps)) == 3 and set(taps) <= allowed for taps in draws)
    assert random_taps(model, 64, 0) == draws[0] and len({tuple(t) for t in draws}) > 1


def test_a_compute_matched_run_takes_the_median_time_ratio_in_whole_epochs(tmp_path):
    from run_experiments import REGIMES, matched_epochs

    regime = "unet-digits64"
    assert matched_epochs(tmp_path, regime) is None
    lines = [{"arm": "output-only", "seed": s, "seconds": 100.0} for s in range(3)]
    lines += [{"arm": "default-auto", "seed": s, "seconds": t} for s, t in
              enumerate([140.0, 150.0, 170.0])]
    (tmp_path / f"{regime}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    epochs, ratio = matched_epochs(tmp_path, regime)
    assert ratio == 1.5 and epochs == round(REGIMES[regime]["epochs"] * 1.5)


def test_a_compute_matched_run_that_would_repeat_output_only_is_skipped(tmp_path):
    from run_experiments import _matches_nothing

    regime = "unet-digits64"
    lines = [{"arm": "output-only", "seed": s, "seconds": 100.0} for s in range(3)]
    (tmp_path / f"{regime}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    for seconds, skipped in ((95.0, True), (104.0, True), (110.0, False)):
        auto = [{"arm": "default-auto", "seed": s, "seconds": seconds} for s in range(3)]
        (tmp_path / f"{regime}.jsonl").write_text(
            "".join(json.dumps(x) + "\n" for x in lines + auto))
        assert _matches_nothing(tmp_path, regime, "output-only-matched") == skipped, seconds
        assert not _matches_nothing(tmp_path, regime, "default-auto")


def test_the_evidence_quoted_to_users_is_the_records_and_the_readme_follows_it():
    """``imachsr train --compare`` reads imachsr/evidence.json, which the report writes from the
    records; the README quotes the same figures."""
    from report import quoted_evidence

    from imachsr.train import RunResult, comparison_verdict, measured_evidence

    evidence = measured_evidence()
    assert evidence == json.loads(json.dumps(quoted_evidence(
        load_records(EXPERIMENTS.parents[1] / "docs" / "results"))))
    (demo,) = evidence["regimes"].values()
    assert demo["n"] >= 8 and demo["low"] > 0
    seed = RunResult({"seed": 0}, test={"mIoU": 0.5})
    assert f"scored {demo['mean']:.1f} points above output-only {evidence['where']}." in \
        comparison_verdict(seed, seed)
    readme = " ".join((EXPERIMENTS.parents[1] / "README.md").read_text().split())
    assert (f"measure the defaults at +{demo['mean']:.1f} test mIoU [+{demo['low']:.1f}, "
            f"+{demo['high']:.1f}] over output-only {evidence['where']}") in readme


def test_the_time_matched_line_pairs_the_default_with_longer_output_only_training(tmp_path):
    from report import time_matched_sentences

    runs = [{"arm": "default-auto", "seed": s, "test": {"mIoU": 0.55 + s / 100}}
            for s in range(3)]
    runs += [{"arm": "output-only-matched", "seed": s, "matched_ratio": 1.3 + s / 10,
              "test": {"mIoU": 0.58 + s / 100 + (s % 2) / 1000}} for s in range(3)]
    (line,) = time_matched_sentences({"deeplabv3plus-digits64": runs}, minimum=3)
    assert line == ("- DeepLabV3+ (smp, ResNet-10-T): the default's gain is less than its time "
                    "buys: -3.0 test mIoU [-3.2, -2.9] against output-only trained 1.40x as long "
                    "(3 paired seeds).")
    assert time_matched_sentences({"deeplabv3plus-digits64": runs}) == []  # fewer than 8


def test_the_readme_says_whether_the_gain_is_more_than_time():
    from report import time_matched_sentences

    readme = (EXPERIMENTS.parents[1] / "README.md").read_text()
    sentences = time_matched_sentences(load_records(EXPERIMENTS.parents[1] / "docs" / "results"))
    assert [line for line in sentences if line not in readme] == []


def test_the_readme_states_the_heterogeneous_losses_verdict_once_there_is_one():
    from report import estimator_sentences

    lines = estimator_sentences(load_records(EXPERIMENTS.parents[1] / "docs" / "results"))
    readme = (EXPERIMENTS.parents[1] / "README.md").read_text()
    if any(line.startswith("Verdict") for line in lines):
        assert [line for line in lines if line not in readme] == []


def test_the_shapescenes_families_get_their_own_line_once_measured():
    from report import family_sentences

    runs = [{"arm": arm, "seed": seed, "baseline": arm == "output-only",
             "test": {"mIoU": miou + seed / 100}}
            for seed in range(8) for arm, miou in (("output-only", 0.3), ("default-auto", 0.32))]
    (line,) = family_sentences({"convnext-fpn-scenes128": runs})
    assert line == ("- ConvNeXt-atto with an FPN decoder (smp) on ShapeScenes: helps, +2.0 test "
                    "mIoU [+2.0, +2.0] over output-only (8 paired seeds).")
    assert family_sentences({"unet-scenes128": runs[:8]}) == []  # 4 paired seeds


def test_the_readme_says_for_each_family_what_the_default_did():
    """One line per family with 8 paired seeds: helps / within noise / hurts, as the records say."""
    from report import family_sentences

    sentences = family_sentences(load_records(EXPERIMENTS.parents[1] / "docs" / "results"))
    assert len(sentences) >= 4
    readme = (EXPERIMENTS.parents[1] / "README.md").read_text()
    missing = [line for line in sentences if line not in readme]
    assert not missing, missing


def test_the_readme_quotes_what_tap_choice_is_worth_where_it_is_measured():
    """Each family with 8 paired seeds of expert and random taps has its line in the README."""
    from report import tap_choice_sentences

    sentences = tap_choice_sentences(load_records(EXPERIMENTS.parents[1] / "docs" / "results"))
    readme = (EXPERIMENTS.parents[1] / "README.md").read_text()
    missing = [line for line in sentences if line not in readme]
    assert not missing, missing


def test_tap_choice_lines_need_every_comparison_paired(tmp_path):
    from report import tap_choice_sentences

    def record(arm, seed, miou, taps=None):
        return {"regime": "unet-digits64", "arm": arm, "seed": seed, "baseline": arm == "output-only",
                "family": "unet", "test": {"mIoU": miou}, "taps": list(taps or [arm])}

    lines = [json.dumps(record(arm, seed, base + seed / 100))
             for seed in range(3)
             for arm, base in (("output-only", 0.5), ("default-auto", 0.6), ("default-expert", 0.58))]
    (tmp_path / "unet-digits64.jsonl").write_text("\n".join(lines))
    assert tap_choice_sentences(load_records(tmp_path), minimum=2) == []  # no random arm yet
    random_lines = [json.dumps(record("default-random", seed, 0.55)) for seed in range(3)]
    (tmp_path / "unet-digits64.jsonl").write_text("\n".join(lines + random_lines))
    (line,) = tap_choice_sentences(load_records(tmp_path), minimum=2)
    assert line.startswith("- U-Net (smp, ResNet-10-T): automatic taps against an expert's +2.0")
    assert line.endswith("(3 paired seeds).")
    # Where the automatic choice is the expert's, the line says so instead of a zero interval.
    expert_lines = [json.dumps(record("default-expert", seed, 0.6 + seed / 100, ("b",)))
                    for seed in range(3)]
    (tmp_path / "unet-digits64.jsonl").write_text("\n".join(lines + random_lines + expert_lines))
    (line,) = tap_choice_sentences(load_records(tmp_path), minimum=2)
    assert line.startswith("- U-Net (smp, ResNet-10-T): automatic taps against an expert's +0.0")
    same = [json.dumps(record("default-auto", seed, 0.6 + seed / 100, ("b",))) for seed in range(3)]
    (tmp_path / "unet-digits64.jsonl").write_text(
        "\n".join(lines + random_lines + expert_lines + same))
    (line,) = tap_choice_sentences(load_records(tmp_path), minimum=2)
    assert line.startswith("- U-Net (smp, ResNet-10-T): automatic taps are the expert's (the same "
                           "layers), against random candidates +6.0")


def test_the_family_table_says_when_two_arms_trained_on_the_same_taps():
    from report import family_table

    def record(arm, seed, miou, taps):
        return {"arm": arm, "seed": seed, "family": "unet", "baseline": arm == "output-only",
                "test": {"mIoU": miou + seed / 100}, "taps": list(taps)}

    def row(expert_taps):
        runs = [record(arm, seed, miou, taps) for seed in range(3) for arm, miou, taps in
                (("output-only", 0.5, ()), ("default-auto", 0.6, ("a", "b")),
                 ("default-expert", 0.6, expert_taps))]
        header, rule, line = family_table({"unet-digits64": runs})
        return line.split(" | ")[header.split(" | ").index("default-auto vs default-expert")]

    assert row(("a", "b")) == "the same taps"
    assert row(("a", "c")) == "+0.00 [+0.00, +0.00] (n=3) within noise"


def test_the_quoted_head_arithmetic_is_of_the_recorded_taps():
    """The README's per-family price of the heads comes from adapter_arithmetic.py's table,
    counted on the taps the default-auto runs trained on."""
    results = EXPERIMENTS.parents[1] / "docs" / "results"
    rows = json.loads((results / "adapter_arithmetic_digits64.json").read_text())
    records = load_records(results)
    readme = " ".join((EXPERIMENTS.parents[1] / "README.md").read_text().split())
    for row in rows:
        trained = {tuple(r["taps"]) for r in records[row["regime"]] if r["arm"] == "default-auto"}
        assert trained == {tuple(row["adapter_gflops"])}, row["regime"]
    quoted = {"unet-digits64": "U-Net", "convnext-fpn-digits64": "ConvNeXt-FPN",
              "pvt-fpn-digits64": "PVTv2-FPN", "deeplabv3plus-digits64": "DeepLabV3+",
              "hf-segformer-digits64": "SegFormer"}
    for row in rows:
        if row["regime"] in quoted:
            assert f"{quoted[row['regime']]} {row['ratio']:.2f}x" in readme, row["regime"]


def test_a_heterogeneous_loss_replaces_the_default_only_when_better_on_validation_twice():
    from report import estimator_sentences

    def runs(regime, arm, val, seeds=3):
        return [{"regime": regime, "arm": arm, "seed": seed, "test": {"mIoU": val},
                 "val": [0.1, val + seed / 1000]} for seed in range(seeds)]

    def regimes(rmi_gains):  # rmi-auto's validation gain over the default, per regime
        return {regime: runs(regime, "default-auto", 0.5) + runs(regime, "rmi-auto", 0.5 + gain)
                + runs(regime, "joint-batch-auto", 0.49) + runs(regime, "contrast-auto", 0.5)
                for regime, gain in zip(("deeplabv3plus-digits64", "convnext-fpn-digits64"),
                                        rmi_gains)}

    joint, rmi, contrast, verdict = estimator_sentences(regimes((0.02, 0.01)), minimum=3)
    assert rmi.startswith("- region MI beside cross-entropy (`mi='rmi'`) against the default: "
                          "DeepLabV3+ (smp, ResNet-10-T): validation +2.00 [+2.00, +2.00] (n=3)")
    assert rmi.endswith("in 2 of 2 regimes, worse in 0: it replaces the paper's form.")
    assert joint.endswith("worse in 2: the default stands.")
    assert verdict == "Verdict: region MI beside cross-entropy (`mi='rmi'`) beat the paper's " \
                      "cross-entropy form."
    *_, verdict = estimator_sentences(regimes((0.02, 0.0)), minimum=3)
    assert verdict == "Verdict: no heterogeneous loss beat the paper's cross-entropy form here."
    *_, verdict = estimator_sentences(regimes((0.02,)), minimum=3)  # one regime each so far
    assert verdict == "Verdict: not yet, until each loss is measured in two regimes."
    assert all(line.endswith("not yet measured at 8 paired seeds.")
               for line in estimator_sentences(regimes((0.02, 0.01))))


def test_the_decoder_rule_line_pairs_it_with_the_earlier_taps_and_says_if_held_out(tmp_path):
    from report import decoder_rule_sentences

    def record(regime, arm, seed, test, val):
        return {"regime": regime, "arm": arm, "seed": seed, "family": "unet",
                "baseline": False, "test": {"mIoU": test}, "val": [0.1, val]}

    runs = {regime: [record(regime, arm, seed, base + seed / 100, base + 0.01 + seed / 200)
                     for seed in range(3)
                     for arm, base in (("default-auto", 0.6), ("default-depth-spread", 0.55))]
            for regime in ("unet-digits64", "unet-convnext-digits64")}
    chosen, held_out = decoder_rule_sentences(runs, minimum=3)
    assert chosen == ("- U-Net (smp, ResNet-10-T), where the rule was chosen: the decoder's "
                      "scale outputs against the depth-spread taps +5.0 test mIoU [+5.0, +5.0] "
                      "and +5.0 validation [+5.0, +5.0] (3 paired seeds).")
    assert held_out.startswith("- U-Net (smp, ConvNeXt-atto), held out from the rule's choice: ")
    assert decoder_rule_sentences(runs) == []  # fewer than 8 paired seeds


def test_the_readme_says_what_the_decoder_rule_is_worth_where_it_is_measured():
    from report import decoder_rule_sentences

    sentences = decoder_rule_sentences(load_records(EXPERIMENTS.parents[1] / "docs" / "results"))
    assert sentences  # unet-digits64 has 8 paired seeds of both
    readme = (EXPERIMENTS.parents[1] / "README.md").read_text()
    assert [line for line in sentences if line not in readme] == []


def test_renaming_an_arm_changes_its_name_and_nothing_it_measured(tmp_path):
    from rename_arm import rename

    source = EXPERIMENTS.parents[1] / "docs" / "results" / "unet-digits64.jsonl"
    path = tmp_path / "unet-digits64.jsonl"
    path.write_text(source.read_text())
    before = [run for run in map(json.loads, source.read_text().splitlines())
              if run["arm"] != "default-auto"]  # the decoder rule's runs came after the rename
    spread = [run for run in before if run["arm"] == "default-depth-spread"]
    for run in spread:  # as recorded before the decoder rule
        run.update(arm="default-auto", taps_from="auto", default=True)
    path.write_text("".join(json.dumps(run) + "\n" for run in before))
    assert rename(path, "unet-digits64", "default-auto", "default-depth-spread") == len(spread) == 8
    after = [json.loads(line) for line in path.read_text().splitlines()]
    changed = {"arm", "taps_from", "default", "description"}
    for old, new in zip(before, after):
        assert {k: v for k, v in old.items() if k not in changed} == \
            {k: v for k, v in new.items() if k not in changed}
    assert sum(run["arm"] == "default-depth-spread" and not run["default"] for run in after) == 8
    assert rename(path, "unet-digits64", "default-auto", "default-depth-spread") == 0
    with pytest.raises(SystemExit, match="not on default-depth-spread's taps"):
        rename(path, "unet-digits64", "default-expert", "default-depth-spread")
    assert path.read_text().splitlines() == [json.dumps(run) for run in after]


def _position_ablation(gains: dict[str, float]) -> list[dict]:
    """8 seeds per position arm, test mIoU 0.5 plus the arm's gain plus a seed effect and a
    small seed-by-arm wobble, so the paired intervals are narrow but not degenerate."""
    return [record(arm, seed, 0.5 + gain + 0.02 * seed + 0.001 * ((seed * (i + 3)) % 5))
            for i, (arm, gain) in enumerate(gains.items()) for seed in range(8)]


@pytest.mark.parametrize("gains, verdict", [
    ({"position-input": 0.03, "position-central": 0.0, "position-output": 0.01}, "reproduced"),
    ({"position-input": 0.0, "position-central": 0.0, "position-output": 0.03}, "refuted"),
    ({"position-input": 0.03, "position-central": 0.03, "position-output": 0.0},
     "partly reproduced"),
])
def test_an_ablation_reads_the_papers_claim_from_the_paired_test_differences(gains, verdict):
    from report import ablation_sections

    lines = ablation_sections({"r": _position_ablation(gains)})
    assert lines[0] == "### Position, `r`"
    assert lines[2].endswith(f"Here: **{verdict}**.")
    assert any(line.startswith("| default-auto | uniform (the default) | 0 |") for line in lines)


def test_an_ablation_is_within_noise_when_no_difference_clears_it():
    from report import ablation_sections

    runs = [record(arm, seed, 0.5 + 0.02 * seed + (0.01 * (-1) ** seed if arm != "position-input"
                                                    else 0.0))
            for arm in ("position-input", "position-central", "position-output")
            for seed in range(8)]
    assert ablation_sections({"r": runs})[2].endswith("Here: **within noise**.")


def test_an_ablation_line_says_the_claim_the_verdict_and_each_difference():
    from report import ablation_sentences

    gains = {"position-input": 0.03, "position-central": 0.0, "position-output": 0.01}
    (line,) = ablation_sentences({"deeplabv3plus-digits64": _position_ablation(gains)})
    assert line.startswith("- Position (DeepLabV3+ (smp, ResNet-10-T)): the paper finds that taps "
                           "close to the input beat central and close-to-output ones; here "
                           "reproduced. Test mIoU against input: central -3.0 [")
    assert ", output -2.2 [" in line and line.endswith("(8 seeds).")
    assert "uniform" not in line  # no runs of the default in these records
    short = [r for r in _position_ablation(gains) if r["seed"] < 7]
    assert ablation_sentences({"deeplabv3plus-digits64": short}) == []  # not yet measured


def test_the_readme_quotes_each_measured_ablation():
    from report import ablation_sentences

    lines = ablation_sentences(load_records(EXPERIMENTS.parents[1] / "docs" / "results"))
    readme = (EXPERIMENTS.parents[1] / "README.md").read_text()
    assert [line for line in lines if line not in readme] == []


def test_an_ablation_waits_for_eight_seeds_and_skips_regimes_without_its_arms():
    from report import ablation_sections

    runs = [r for r in _position_ablation({"position-input": 0.03, "position-central": 0.0,
                                           "position-output": 0.0}) if r["seed"] < 7]
    lines = ablation_sections({"r": runs, "other": [record("default-auto", 0, 0.5)]})
    assert "Here: **not yet measured**." in lines[2]
    assert not any("other" in line for line in lines)


def test_the_gpu_sessions_plan_names_regimes_and_arms_the_runner_knows():
    """A GPU session is rare and short: a misspelt arm in its default plan would waste it."""
    from run_experiments import ARMS, REGIMES

    script = (EXPERIMENTS / "gpu_session.sh").read_text()
    variables = dict(re.findall(r'^([A-Z]+)="([^"]*)"$', script, flags=re.M))
    plan = re.search(r'^PLAN=\$\{PLAN:-"(.*)"\}$', script, flags=re.M).group(1)
    plan = re.sub(r"\$([A-Z]+)", lambda m: variables[m.group(1)], plan)
    steps = [step.split(":") for step in plan.split(";")]
    assert steps and all(len(step) == 2 for step in steps)
    for regimes, arms in steps:
        assert set(regimes.split(",")) <= set(REGIMES), regimes
        assert set(arms.split(",")) <= set(ARMS), arms


def test_the_compute_matched_arm_is_compared_with_output_only_never_used_as_it():
    records = [record("output-only", s, 0.30 + 0.01 * s, baseline=True) for s in range(3)]
    records += [{**record("output-only-matched", s, 0.40 + 0.01 * s, baseline=True),
                 "compute_matched": True} for s in range(3)]
    records += [record("b", s, 0.32 + 0.01 * s) for s in range(3)]
    rows = regime_table(records)
    assert "| +2.00 [+2.00, +2.00] (n=3) |" in next(r for r in rows if r.startswith("| b"))
    assert "| +10.00 [+10.00, +10.00] (n=3) |" in next(
        r for r in rows if r.startswith("| output-only-matched"))
