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
