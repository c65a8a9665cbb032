"""``repro``: listing, error paths with clear messages and non-zero exits, the report check."""

import subprocess
import sys
from pathlib import Path

import pytest

from shared.cli import main
from shared.data import fashion_mnist as fm

ROOT = Path(__file__).resolve().parents[2]


def test_list_shows_all_papers(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "dcl" in out and "implemented" in out
    assert out.count("\n") == 53  # header + 52 papers


def test_show(capsys):
    assert main(["show", "dcl"]) == 0
    out = capsys.readouterr().out
    assert "Decoupled Contrastive Learning" in out and "smoke" in out and "68.2" in out


def test_unknown_paper(capsys):
    assert main(["run", "nosuchpaper"]) == 2
    assert "unknown paper 'nosuchpaper'" in capsys.readouterr().err


def test_unknown_preset(capsys):
    assert main(["run", "dcl", "--preset", "huge"]) == 2
    assert "unknown preset 'huge'" in capsys.readouterr().err


def test_run_imports_only_the_named_paper(monkeypatch):
    """A broken package elsewhere in methods/ must not stop `repro run` of another paper."""
    from shared import registry

    real = registry.load_package

    def load_or_fail(package: str):
        if package != "dcl":
            raise TypeError(f"methods.{package} is broken")
        return real(package)

    monkeypatch.setattr(registry, "load_package", load_or_fail)
    entry = registry.find_paper("DCL")
    assert entry.implemented and entry.package == "dcl" and "smoke" in entry.presets
    assert registry.find_paper("11").package == "dcl"
    with pytest.raises(TypeError, match="is broken"):
        registry.catalogue()


def test_unimplemented_paper(capsys):
    assert main(["run", "seem"]) == 2
    assert "not implemented yet" in capsys.readouterr().err


def test_bad_seeds_and_arms(capsys, tmp_path):
    assert main(["run", "dcl", "--preset", "smoke", "--seeds", "0", "--out", str(tmp_path)]) == 2
    assert "--seeds must be at least 1" in capsys.readouterr().err
    assert main(["run", "dcl", "--preset", "smoke", "--arms", "bogus", "--out", str(tmp_path)]) == 2
    assert "unknown arm" in capsys.readouterr().err


def test_missing_data_on_both_roads(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "nowhere")
    monkeypatch.delenv("REPRO_DATA_DIR", raising=False)
    code = main(
        [
            "run",
            "dcl",
            "--preset",
            "cpu",
            "--data-dir",
            str(tmp_path),
            "--out",
            str(tmp_path / "out"),
            "--run-dir",
            str(tmp_path / "runs"),
            "--no-progress",
            "--allow-dirty",  # the test must not depend on whether the working tree is committed
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "offline road" in err and "online road" in err
    assert not (tmp_path / "out").exists()  # no half-written record


def test_help_explains_every_option():
    out = subprocess.run([sys.executable, "-m", "shared.cli", "run", "--help"], capture_output=True, text=True).stdout
    for option in ("--preset", "--seeds", "--data-dir", "--out", "--run-dir", "--resume", "--epochs", "--arms"):
        assert option in out


def test_committed_report_is_fresh():
    assert (
        main(["report", "--check", "--results", str(ROOT / "results"), "--output", str(ROOT / "REPRODUCTIONS.md")]) == 0
    )


def test_report_check_fails_when_stale(tmp_path, capsys):
    stale = tmp_path / "R.md"
    stale.write_text("old\n")
    assert main(["report", "--check", "--results", str(ROOT / "results"), "--output", str(stale)]) == 1
    assert "stale" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["report", "--check", "--results", "/nonexistent"]])
def test_report_on_empty_results_dir(argv, tmp_path):
    assert main([*argv, "--output", str(tmp_path / "R.md")]) == 1
