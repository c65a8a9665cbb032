"""The shared SimCSE baseline cache keys on config, data folder *and* code."""

from pathlib import Path

import shared.text.experiment as text_experiment
from shared.experiment import ArmRun


def _run(tmp_path: Path) -> ArmRun:
    return ArmRun("simcse", {"encoder": "tiny", "lr": 1e-3}, 0, tmp_path / "a" / "b" / "c" / "seed0", False, None, None)


def test_cache_file_changes_with_the_code(tmp_path, monkeypatch):
    first = text_experiment._shared_file(_run(tmp_path))
    assert first == text_experiment._shared_file(_run(tmp_path))  # deterministic
    monkeypatch.setattr(text_experiment, "code_fingerprint", lambda: "other-code")
    assert text_experiment._shared_file(_run(tmp_path)) != first


def test_fingerprint_covers_the_shared_sources():
    assert len(text_experiment.code_fingerprint()) == 12


def test_pretrained_start_is_scored_once_for_all_seeds(tmp_path, monkeypatch):
    """An untrained arm from a pretrained encoder is seed-independent: seed 1 reuses seed 0's score."""
    from shared.experiment import untrained_arm
    from shared.text.experiment import SMOKE_TEXT, build_simcse, train_text_arm

    cfg = untrained_arm({**SMOKE_TEXT, "train_sentences": 64, "sts_pairs": 30})
    monkeypatch.setitem(cfg, "encoder", "pretend-pretrained")  # the tiny BERT built under another name
    real_build = build_simcse

    def build(c):
        return real_build({**c, "encoder": "tiny"})

    runs = tmp_path / "runs" / "paper" / "cpu" / "untrained"
    first = train_text_arm(ArmRun("untrained", cfg, 0, runs / "seed0", False, None, None, False), build)
    assert list((tmp_path / "runs" / "_text_shared").glob("*-start.json"))

    def no_build(c):
        raise AssertionError("seed 1 must reuse the start score")

    second = train_text_arm(ArmRun("untrained", cfg, 1, runs / "seed1", False, None, None, False), no_build)
    assert second.metrics == first.metrics
