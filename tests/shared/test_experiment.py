"""run_experiment: paired seeds, per-run resume with extras, the analysis hook."""

import json

import pytest

from shared.experiment import ArmResult, Comparison, Experiment, run_experiment, untrained_arm, with_floor
from shared.registry import PaperCard


def _card() -> PaperCard:
    return PaperCard(
        number=99,
        short_name="fake",
        title="A fake paper",
        package="fake",
        family="test",
        tier="C",
        arxiv="0000.00000",
        official_code="none",
        bibtex="@misc{fake}",
    )


def _experiment(calls: list, analysis=None) -> Experiment:
    def train(run):
        calls.append((run.arm, run.seed))
        value = run.config["offset"] + 0.01 * run.seed
        return ArmResult({"acc": value}, [{"step": 1, "loss": 1.0}], [], 0.1, extras={"per_class": [value, 2 * value]})

    return Experiment(
        preset="cpu",
        description="fake",
        claim="b beats a",
        arms={"a": {"offset": 0.5}, "b": {"offset": 0.6}},
        comparisons=[Comparison("b vs a", "a", "b", "acc")],
        train_arm=train,
        setting={"summary": "fake"},
        analysis=analysis,
    )


def test_analysis_gets_extras_and_is_recorded(tmp_path):
    seen = {}

    def analysis(record, results, prefix):
        seen["prefix"] = prefix
        (prefix.parent / f"{prefix.name}_extra.png").write_bytes(b"png")
        return {
            "mean_first_class": {a: sum(r.extras["per_class"][0] for r in rs) / len(rs) for a, rs in results.items()}
        }

    calls: list = []
    rec = run_experiment(
        _card(),
        _experiment(calls, analysis),
        seeds=2,
        out_dir=tmp_path / "res",
        run_root=tmp_path / "runs",
        allow_dirty=True,
    )
    assert rec["analysis"]["mean_first_class"]["b"] == pytest.approx(0.605)
    assert (tmp_path / "res" / "fake" / "cpu_extra.png").exists()
    saved = json.loads((tmp_path / "res" / "fake" / "cpu.json").read_text())
    assert saved["analysis"] == rec["analysis"]
    # --resume reuses final.json, extras included: no training call, same analysis.
    calls.clear()
    again = run_experiment(
        _card(),
        _experiment(calls, analysis),
        seeds=2,
        out_dir=tmp_path / "res",
        run_root=tmp_path / "runs",
        resume=True,
        allow_dirty=True,
    )
    assert calls == [] and again["analysis"] == rec["analysis"]


def test_comparison_margin_reaches_the_record(tmp_path):
    calls: list = []
    exp = _experiment(calls)
    # b − a = +0.1 each seed: the reverse comparison (a vs b) is worse by 0.1, non-inferior within 0.2
    exp.comparisons = [Comparison("a not worse than b", "b", "a", "acc", headline=True, margin=0.2)]
    rec = run_experiment(_card(), exp, seeds=2, out_dir=tmp_path / "res", run_root=tmp_path / "runs", allow_dirty=True)
    comp = rec["comparisons"][0]
    assert comp["margin"] == 0.2 and comp["verdict"] == "reproduced" and rec["verdict"] == "reproduced"
    with pytest.raises(ValueError, match="margin must be"):
        Comparison("x", "a", "b", "acc", margin=-0.1)


def test_with_floor_puts_the_untrained_baseline_first():
    arms = {"a": {"lr": 0.1}, "b": {"lr": 0.2}}
    floored = with_floor(arms, "b")
    assert list(floored) == ["untrained", "a", "b"]
    assert floored["untrained"] == untrained_arm(arms["b"]) == {"lr": 0.2, "untrained": True}
    assert arms == {"a": {"lr": 0.1}, "b": {"lr": 0.2}}
