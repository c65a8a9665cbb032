"""The result record: verdict rule, validation, atomic writes, REPRODUCTIONS.md rendering."""

import json

import pytest

from shared.results import RecordError, make_comparison, paired_verdict, read_record, validate, write_record


def record(baseline, method, direction="greater"):
    arms = {"base": {"acc": baseline}, "meth": {"acc": method}}
    comp = make_comparison(arms, "base", "meth", "acc", direction, "meth vs base")
    return {
        "schema": 1,
        "paper": 11,
        "package": "dcl",
        "title": "t",
        "preset": "cpu",
        "claim": "c",
        "setting": {"summary": "s"},
        "environment": {"wall_seconds": 60.0},
        "seeds": list(range(len(baseline))),
        "arms": arms,
        "comparisons": [comp],
        "reported": [],
        "verdict": comp["verdict"],
    }


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


def test_two_standard_errors_threshold():
    # diffs 0.00, 0.04 → mean 0.02, SE 0.02: within 2 SE → inconclusive
    out = paired_verdict([0.0, 0.0], [0.0, 0.04], "greater")
    assert out["se"] == pytest.approx(0.02)
    assert out["verdict"] == "inconclusive"
    # diffs 0.01, 0.02, 0.03 → mean 0.02, SE 0.00577: beyond 2 SE → reproduced
    assert paired_verdict([0.0] * 3, [0.01, 0.02, 0.03], "greater")["verdict"] == "reproduced"


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
    assert "not run" in text  # no paper-scale record
    out = tmp_path / "REPRODUCTIONS.md"
    assert is_stale(out, results)
    write_report(out, results)
    assert not is_stale(out, results)
    data = json.loads((results / "dcl" / "cpu.json").read_text())
    data["arms"]["meth"]["acc"][0] = 0.80
    data["comparisons"] = [make_comparison(data["arms"], "base", "meth", "acc", "greater", "meth vs base")]
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
