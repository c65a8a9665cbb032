"""The result record: verdict rule v2, validation, atomic writes, REPRODUCTIONS.md rendering."""

import json

import pytest

from shared.results import (
    RecordError,
    claim_verdict,
    make_comparison,
    paired_verdict,
    read_record,
    t_critical,
    upgrade,
    validate,
    write_record,
)

FLOOR = {"arm": "untrained", "metric": "acc", "direction": "greater", "min_gain": 0.02}


def record(baseline, method, direction="greater", floor_values=None):
    arms = {"base": {"acc": baseline}, "meth": {"acc": method}}
    floor = None
    if floor_values is not None:
        arms = {"untrained": {"acc": floor_values}, **arms}
        floor = FLOOR
    comp = make_comparison(arms, "base", "meth", "acc", direction, "meth vs base", headline=True, floor=floor)
    return {
        "schema": 2,
        "paper": 11,
        "package": "dcl",
        "title": "t",
        "preset": "cpu",
        "claim": "c",
        "setting": {"summary": "s"},
        "environment": {"wall_seconds": 60.0},
        "seeds": list(range(len(baseline))),
        "arms": arms,
        "floor": floor,
        "comparisons": [comp],
        "reported": [],
        "verdict": claim_verdict([comp]),
    }


def test_t_critical_values():
    # the 95 % two-sided Student-t quantiles the rule uses
    assert t_critical(2) == pytest.approx(12.706, abs=1e-3)
    assert t_critical(3) == pytest.approx(4.303, abs=1e-3)
    assert t_critical(5) == pytest.approx(2.776, abs=1e-3)


@pytest.mark.parametrize(
    ("baseline", "method", "direction", "verdict"),
    [
        ([0.70, 0.71, 0.72], [0.75, 0.76, 0.77], "greater", "reproduced"),
        ([0.70, 0.71, 0.72], [0.65, 0.66, 0.67], "greater", "contradicted"),
        ([0.70, 0.71, 0.72], [0.71, 0.70, 0.73], "greater", "inconclusive"),
        ([0.70, 0.71, 0.72], [0.65, 0.66, 0.67], "less", "reproduced"),
        ([0.70], [0.90], "greater", "inconclusive"),  # one seed never decides
    ],
)
def test_verdict_rule(baseline, method, direction, verdict):
    assert paired_verdict(baseline, method, direction)["verdict"] == verdict


def test_verdict_is_paired():
    # large spread across seeds, constant paired gain: an unpaired test would not decide
    base, meth = [0.5, 0.7, 0.9], [0.51, 0.71, 0.91]
    out = paired_verdict(base, meth, "greater")
    assert out["mean_diff"] == pytest.approx(0.01)
    # identical differences → zero standard error → decided
    assert out["verdict"] == "reproduced"


def test_student_t_interval_not_two_standard_errors():
    # diffs 0.005, 0.02, 0.035 → mean 0.02, SE 0.00866: 2·SE (v1) called this reproduced,
    # the 95 % t interval at n = 3 (t* = 4.30) is [−0.0173, +0.0573] → inconclusive
    out = paired_verdict([0.0] * 3, [0.005, 0.02, 0.035], "greater")
    assert out["mean_diff"] == pytest.approx(0.02)
    assert out["mean_diff"] > 2 * out["se"]
    assert out["ci_low"] == pytest.approx(0.02 - 4.3027 * 0.0086603, abs=1e-4)
    assert out["verdict"] == "inconclusive"
    # diffs 0.018, 0.02, 0.022 → interval [0.015, 0.025] → reproduced
    assert paired_verdict([0.0] * 3, [0.018, 0.02, 0.022], "greater")["verdict"] == "reproduced"


def test_v1_record_that_2se_called_reproduced_is_inconclusive_after_upgrade():
    arms = {"base": {"acc": [0.70, 0.70, 0.70]}, "meth": {"acc": [0.705, 0.72, 0.735]}}
    v1_comp = {"label": "m", "baseline": "base", "method": "meth", "metric": "acc", "direction": "greater"}
    v1_comp.update(mean_diff=0.02, se=0.00866, n=3, verdict="reproduced")
    v1 = {**record([0.7] * 3, [0.7] * 3), "schema": 1, "arms": arms, "comparisons": [v1_comp], "verdict": "reproduced"}
    del v1["floor"]
    v2 = validate(upgrade(v1))
    assert v2["schema"] == 2 and v2["verdict"] == "inconclusive" and v2["comparisons"][0]["headline"]


def test_under_trained_when_an_arm_sits_on_the_floor():
    # both arms beat the floor clearly → the interval decides
    assert record([0.80, 0.81, 0.82], [0.85, 0.86, 0.87], floor_values=[0.70, 0.71, 0.72])["verdict"] == "reproduced"
    # the baseline is within min_gain of the floor (gain 0.01) → under-trained, whatever the interval says
    rec = record([0.71, 0.72, 0.73], [0.85, 0.86, 0.87], floor_values=[0.70, 0.71, 0.72])
    comp = rec["comparisons"][0]
    assert comp["interval_verdict"] == "reproduced" and comp["verdict"] == "under-trained"
    assert comp["on_floor"] == ["base"] and rec["verdict"] == "under-trained"
    # a large mean gain with an interval that reaches 0 is not trained either
    noisy = record([0.70, 0.80, 0.72], [0.85, 0.86, 0.87], floor_values=[0.70, 0.71, 0.72])
    assert noisy["comparisons"][0]["on_floor"] == ["base"]
    # for a lower-is-better metric the gain is measured downwards
    arms = {"untrained": {"mae": [20.0, 21.0, 22.0]}, "a": {"mae": [10.0, 10.5, 11.0]}, "b": {"mae": [8.0, 8.4, 9.0]}}
    floor = {"arm": "untrained", "metric": "mae", "direction": "less", "min_gain": 1.0}
    assert make_comparison(arms, "a", "b", "mae", "less", headline=True, floor=floor)["verdict"] == "reproduced"


@pytest.mark.parametrize(
    ("parts", "claim"),
    [
        (["reproduced", "reproduced"], "reproduced"),
        (["reproduced", "contradicted"], "mixed"),
        (["contradicted", "inconclusive"], "contradicted"),
        (["contradicted", "under-trained"], "contradicted"),
        (["reproduced", "under-trained"], "under-trained"),
        (["reproduced", "inconclusive"], "inconclusive"),
        (["inconclusive", "inconclusive"], "inconclusive"),
    ],
)
def test_claim_is_the_conjunction_of_headline_parts(parts, claim):
    comps = [{"verdict": v, "headline": True} for v in parts]
    # a secondary comparison never sets the claim
    comps.append({"verdict": "contradicted" if claim == "reproduced" else "reproduced", "headline": False})
    assert claim_verdict(comps) == claim


def test_sepclr_like_record_with_a_contradicted_headline_part_is_mixed():
    arms = {
        "base": {"acc": [0.70, 0.71, 0.72], "leak": [0.30, 0.31, 0.32]},
        "meth": {"acc": [0.75, 0.76, 0.77], "leak": [0.40, 0.41, 0.42]},
    }
    comps = [
        make_comparison(arms, "base", "meth", "acc", "greater", "salient", headline=True),
        make_comparison(arms, "base", "meth", "leak", "less", "less leakage", headline=True),
    ]
    rec = {**record([0.7] * 3, [0.7] * 3), "arms": arms, "comparisons": comps, "verdict": claim_verdict(comps)}
    assert validate(rec)["verdict"] == "mixed"
    rec["verdict"] = "reproduced"  # what the v1 rule (first comparison) would have said
    with pytest.raises(RecordError, match="headline comparisons say mixed"):
        validate(rec)


def test_hand_edited_verdict_fails_validation(tmp_path):
    rec = record([0.70, 0.71, 0.72], [0.71, 0.70, 0.73])
    rec["comparisons"][0]["verdict"] = rec["verdict"] = "reproduced"
    with pytest.raises(RecordError, match="numbers say inconclusive"):
        validate(rec)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda r: r.pop("claim"), "lacks fields"),
        (lambda r: r["arms"]["base"]["acc"].pop(), "values for 3 seeds"),
        (lambda r: r["arms"]["base"]["acc"].__setitem__(0, float("nan")), "non-finite"),
        (lambda r: r.update(comparisons=[]), "no comparison"),
        (lambda r: r.update(schema=99), "schema"),
        (lambda r: r["comparisons"][0].update(headline=False), "no headline"),
        (lambda r: r.update(reported=[{"metric": "m"}]), "lacks 'value'"),
    ],
)
def test_validation_errors(mutate, match):
    rec = record([0.70, 0.71, 0.72], [0.75, 0.76, 0.77])
    mutate(rec)
    with pytest.raises(RecordError, match=match):
        validate(rec)


def test_atomic_write_roundtrip_and_no_partial_file(tmp_path):
    rec = record([0.70, 0.71, 0.72], [0.75, 0.76, 0.77])
    path = write_record(rec, tmp_path / "dcl" / "cpu.json")
    assert read_record(path)["verdict"] == "reproduced"
    bad = record([0.70, 0.71, 0.72], [0.75, 0.76, 0.77])
    bad["verdict"] = "contradicted"
    with pytest.raises(RecordError):
        write_record(bad, tmp_path / "dcl" / "bad.json")
    assert sorted(p.name for p in (tmp_path / "dcl").iterdir()) == ["cpu.json"]
    # a value that JSON cannot hold fails before anything is renamed into place
    weird = record([0.70, 0.71, 0.72], [0.75, 0.76, 0.77])
    weird["setting"]["obj"] = object()
    with pytest.raises(TypeError):
        write_record(weird, tmp_path / "dcl" / "weird.json")
    assert sorted(p.name for p in (tmp_path / "dcl").iterdir()) == ["cpu.json"]


def test_invalid_json_is_a_record_error(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("{not json")
    with pytest.raises(RecordError, match="not valid JSON"):
        read_record(path)


def test_report_renders_and_detects_staleness(tmp_path):
    from shared.report import is_stale, render, write_report

    results = tmp_path / "results"
    write_record(record([0.70, 0.71, 0.72], [0.75, 0.76, 0.77]), results / "dcl" / "cpu.json")
    text = render(results)
    assert "0.7100 ± 0.0100" in text and "0.7600 ± 0.0100" in text and "**reproduced**" in text
    assert "+0.0500 [+0.0500, +0.0500]" in text  # the interval, not ±SE
    assert "Floor: none recorded" in text
    assert "not run" in text  # no paper-scale record
    out = tmp_path / "REPRODUCTIONS.md"
    assert is_stale(out, results)
    write_report(out, results)
    assert not is_stale(out, results)
    data = json.loads((results / "dcl" / "cpu.json").read_text())
    data["arms"]["meth"]["acc"][0] = 0.80
    data["comparisons"] = [make_comparison(data["arms"], "base", "meth", "acc", "greater", "meth vs base", True)]
    data["verdict"] = data["comparisons"][0]["verdict"]
    (results / "dcl" / "cpu.json").write_text(json.dumps(data))
    assert is_stale(out, results)


def test_run_time_counts_runs_reused_by_resume():
    from shared.report import run_seconds

    fresh = {"wall_seconds": 600.0, "train_seconds_per_run": {"a": [250.0, 250.0]}}
    resumed = {"wall_seconds": 3.0, "train_seconds_per_run": {"a": [250.0, 250.0], "b": [40.0]}}
    assert run_seconds(fresh) == 600.0  # evaluation and set-up count too
    assert run_seconds(resumed) == 540.0
    assert run_seconds({"wall_seconds": 12.0}) == 12.0


# --- non-inferiority (margin > 0): the interval is judged against −margin instead of 0 ---------------------------

BASE = [0.80, 0.81, 0.82]


@pytest.mark.parametrize(
    ("diffs", "margin", "verdict"),
    [
        # interval [−0.0075, −0.0025]: worse than the baseline (superiority contradicted), but not by 0.01
        ([-0.004, -0.005, -0.006], 0.0, "contradicted"),
        ([-0.004, -0.005, -0.006], 0.01, "reproduced"),
        # interval [−0.0225, −0.0175]: worse by more than the margin
        ([-0.019, -0.020, -0.021], 0.01, "contradicted"),
        # interval [−0.0224, +0.0024] contains −0.01
        ([-0.005, -0.010, -0.015], 0.01, "inconclusive"),
        # a method that is better is non-inferior too
        ([0.004, 0.005, 0.006], 0.01, "reproduced"),
    ],
)
def test_non_inferiority_verdict(diffs, margin, verdict):
    method = [b + d for b, d in zip(BASE, diffs, strict=True)]
    out = paired_verdict(BASE, method, "greater", margin)
    assert out["verdict"] == verdict
    # re-stated by hand: the interval in the claimed direction against −margin
    low, high = out["ci_low"], out["ci_high"]
    assert verdict == ("reproduced" if low > -margin else "contradicted" if high < -margin else "inconclusive")


def test_non_inferiority_for_a_lower_is_better_metric():
    # MAE 10 → 10.3 (worse by 0.3): non-inferior within 0.5, not within 0.2
    base, meth = [10.0, 11.0, 12.0], [10.29, 11.30, 12.31]
    assert paired_verdict(base, meth, "less", 0.5)["verdict"] == "reproduced"
    assert paired_verdict(base, meth, "less", 0.2)["verdict"] == "contradicted"
    assert paired_verdict(base, meth, "less")["verdict"] == "contradicted"
    # one seed never decides, whatever the margin
    assert paired_verdict([10.0], [10.0], "less", 0.5)["verdict"] == "inconclusive"


@pytest.mark.parametrize("margin", [-0.01, float("nan"), float("inf"), "0.01", True])
def test_margin_must_be_a_finite_non_negative_number(margin):
    with pytest.raises(RecordError, match="margin must be"):
        paired_verdict(BASE, BASE, "greater", margin)


def test_non_inferiority_keeps_the_floor_rule():
    arms = {
        "untrained": {"acc": [0.70, 0.71, 0.72]},
        "base": {"acc": [0.71, 0.72, 0.73]},  # gain 0.01 < min_gain: on the floor
        "meth": {"acc": [0.705, 0.715, 0.725]},
    }
    comp = make_comparison(arms, "base", "meth", "acc", "greater", headline=True, floor=FLOOR, margin=0.01)
    assert comp["interval_verdict"] == "reproduced" and comp["verdict"] == "under-trained"
    assert comp["on_floor"] == ["base", "meth"] and comp["margin"] == 0.01


def margin_record(margin):
    rec = record(BASE, [b - 0.005 for b in BASE])  # diffs all −0.005: interval [−0.005, −0.005]
    arms = rec["arms"]
    comp = make_comparison(arms, "base", "meth", "acc", "greater", "not hurt", headline=True, margin=margin)
    return {**rec, "comparisons": [comp], "verdict": claim_verdict([comp])}


def test_margin_is_stored_and_recomputed_on_validation(tmp_path):
    rec = margin_record(0.01)
    assert rec["comparisons"][0]["margin"] == 0.01 and rec["verdict"] == "reproduced"
    path = write_record(rec, tmp_path / "dcl" / "cpu.json")
    assert read_record(path)["comparisons"][0]["margin"] == 0.01
    # the margin edited by hand (the verdicts kept) no longer matches the numbers
    edited = margin_record(0.01)
    edited["comparisons"][0]["margin"] = 0.002
    with pytest.raises(RecordError, match="numbers say contradicted"):
        validate(edited)
    edited["comparisons"][0]["margin"] = -1.0
    with pytest.raises(RecordError, match="margin must be"):
        validate(edited)


def test_a_record_without_margin_is_judged_as_superiority():
    rec = margin_record(0.0)
    del rec["comparisons"][0]["margin"]  # a record written before margins existed
    assert validate(rec)["verdict"] == "contradicted"
    rec["comparisons"][0]["verdict"] = rec["verdict"] = "reproduced"
    with pytest.raises(RecordError, match="numbers say contradicted"):
        validate(rec)


def test_non_inferiority_is_shown_in_the_tables(tmp_path):
    from shared.experiment import summary_table
    from shared.report import render

    rec = margin_record(0.01)
    assert "(non-inferior within 0.01) -> reproduced" in summary_table(rec)
    assert "non-inferior" not in summary_table(margin_record(0.0))
    write_record(rec, tmp_path / "results" / "dcl" / "cpu.json")
    text = render(tmp_path / "results")
    assert "not hurt (non-inferior within 0.01)" in text  # the comparison table
    assert "(n=3) (non-inferior within 0.01): reproduced" in text  # the results table
