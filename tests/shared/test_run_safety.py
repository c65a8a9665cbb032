"""Runs that cannot write a wrong record (issue: settings-keyed resume, NaN gradients and
weights, unwritable outputs, damaged files, duplicated arms, precision by hardware, CLI hygiene)."""

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import shared.engine as engine
import shared.experiment as experiment
from shared.cli import main
from shared.data import make_shapes
from shared.data.errors import DataUnavailableError
from shared.data.fashion_mnist import _read_idx
from shared.engine import InMemoryBatches, NonFiniteLossError, TrainConfig, fit
from shared.experiment import ArmResult, Comparison, DirtyTreeError, Experiment, run_experiment, untrained_arm
from shared.registry import PaperCard
from shared.results import RecordError, read_record

ROOT = Path(__file__).resolve().parents[2]


def card() -> PaperCard:
    return PaperCard(99, "fake", "A fake paper", "fake", "test", "C", "0000.00000", "none", "@misc{fake}")


class Probe(nn.Module):
    """A linear map trained to pull its outputs to zero; ``forward`` returns the loss dict."""

    def __init__(self, poison: str = "") -> None:
        super().__init__()
        self.lin = nn.Linear(3 * 32 * 32, 4)
        self.poison = poison

    def forward(self, batch: dict) -> dict:
        x = batch["images"].float().flatten(1) / 255
        loss = self.lin(x).pow(2).mean()
        if self.poison == "grad":  # finite value, NaN gradient: d/dw sqrt(0·w) = 0·inf
            loss = loss + torch.sqrt(self.lin.weight * 0).sum()
        return {"loss": loss}

    def after_step(self, step: int) -> None:
        if self.poison == "weight" and step == 3:  # the step whose end is checkpointed
            with torch.no_grad():
                self.lin.bias[0] = float("nan")


@pytest.fixture(scope="module")
def shapes():
    return make_shapes(4, 32, seed=0)  # 48 images


def fit_experiment(calls: list, shapes, seeds_used=None) -> Experiment:
    """A fake preset whose arms really train with ``fit`` (so epochs, precision, floors are real)."""

    def train(run):
        calls.append((run.arm, run.seed, run.config.get("epochs")))
        torch.manual_seed(run.seed)
        model = Probe()
        tc = TrainConfig.from_arm(run.config, run.seed, run.epochs, progress=False)

        def evaluate(m):
            with torch.no_grad():
                return {"acc": 1.0 - float(m.lin.weight.abs().mean()) + 0.01 * run.config["offset"]}

        result = fit(model, InMemoryBatches(shapes, 8), tc, run.run_dir, resume=run.resume, evaluate=evaluate)
        return ArmResult(result.final_metrics(), result.history, result.evaluations, result.wall_seconds)

    base = {"epochs": 1, "batch_size": 8, "lr": 0.05, "offset": 0, "bf16": True}
    return Experiment(
        preset="cpu",
        description="fake",
        claim="b beats a",
        arms={"untrained": untrained_arm(base), "a": base, "b": {**base, "offset": 1}},
        comparisons=[Comparison("b vs a", "a", "b", "acc", headline=True)],
        train_arm=train,
        setting={"summary": "fake"},
        min_gain=0.0,
    )


def run(exp, tmp_path, **kw):
    kw.setdefault("allow_dirty", True)
    return run_experiment(
        card(), exp, seeds=2, out_dir=tmp_path / "res", run_root=tmp_path / "runs", progress=False, **kw
    )


def test_resume_with_other_epochs_trains_anew(tmp_path, shapes):
    calls: list = []
    first = run(fit_experiment(calls, shapes), tmp_path)
    calls.clear()
    again = run(fit_experiment(calls, shapes), tmp_path, resume=True)
    assert calls == [] and again["arms"] == first["arms"]  # same settings: reused
    longer = run(fit_experiment(calls, shapes), tmp_path, resume=True, epochs=3)
    assert {(a, s) for a, s, _ in calls} == {(a, s) for a in ("untrained", "a", "b") for s in (0, 1)}
    assert longer["arms"]["a"] != first["arms"]["a"]  # 3-epoch numbers, not the 2-epoch ones
    assert longer["setting"]["epochs_override"] == 3
    # the untrained floor stays at initialisation whatever --epochs says
    assert longer["arms"]["untrained"] == first["arms"]["untrained"]


def test_untrained_arm_runs_no_step_and_is_the_floor(tmp_path, shapes):
    rec = run(fit_experiment([], shapes), tmp_path)
    stats = json.loads((tmp_path / "runs" / "fake" / "cpu" / "untrained" / "seed0" / "run_stats.json").read_text())
    assert stats["steps"] == 0
    assert rec["floor"]["arm"] == "untrained"
    assert set(rec["arms"]["untrained"]) == set(rec["arms"]["a"])


def test_truncated_files_on_resume_name_the_file(tmp_path, shapes):
    run(fit_experiment([], shapes), tmp_path)
    final = tmp_path / "runs" / "fake" / "cpu" / "a" / "seed0" / "final.json"
    final.write_text(final.read_text()[:20])
    with pytest.raises(RecordError, match=str(final)):
        run(fit_experiment([], shapes), tmp_path, resume=True)
    ckpt = tmp_path / "ck" / "checkpoint.pt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"PK\x03\x04 truncated")
    cfg = TrainConfig(epochs=1, batch_size=8, lr=0.1, progress=False)
    with pytest.raises(ValueError, match=r"checkpoint .*checkpoint.pt is unreadable"):
        fit(Probe(), InMemoryBatches(shapes, 8), cfg, ckpt.parent, resume=True)


def test_checkpoint_with_other_settings_is_refused(tmp_path, shapes):
    cfg = TrainConfig(epochs=1, batch_size=8, lr=0.1, progress=False)
    fit(Probe(), InMemoryBatches(shapes, 8), cfg, tmp_path)
    other = TrainConfig(epochs=1, batch_size=8, lr=0.2, progress=False)
    with pytest.raises(ValueError, match=r"other settings \(lr: 0.1 -> 0.2\)"):
        fit(Probe(), InMemoryBatches(shapes, 8), other, tmp_path, resume=True)


def test_nan_gradient_is_caught_before_the_update(tmp_path, shapes):
    model = Probe(poison="grad")
    before = model.lin.weight.detach().clone()
    cfg = TrainConfig(epochs=1, batch_size=8, lr=0.1, progress=False)
    with pytest.raises(NonFiniteLossError, match=r"gradient is NaN/Inf.*step 0"):
        fit(model, InMemoryBatches(shapes, 8), cfg, tmp_path)
    assert torch.equal(model.lin.weight, before)  # nothing was applied
    assert not (tmp_path / "checkpoint.pt").exists()


def test_nan_weight_is_never_saved_as_last_good(tmp_path, shapes):
    model = Probe(poison="weight")
    cfg = TrainConfig(epochs=2, batch_size=8, lr=0.1, progress=False, checkpoint_every=2)
    with pytest.raises(NonFiniteLossError, match=r"lin.bias holds NaN/Inf at step 4.*checkpoint.pt"):
        fit(model, InMemoryBatches(shapes, 8), cfg, tmp_path)
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert saved["step"] == 2 and torch.isfinite(saved["model"]["lin.bias"]).all()


def test_metrics_log_has_no_repeated_steps_after_resume(tmp_path, shapes):
    cfg = TrainConfig(epochs=2, batch_size=8, lr=0.1, progress=False, log_every=1, checkpoint_every=4)
    interrupted = TrainConfig(**{**cfg.__dict__, "max_steps": 7})
    fit(Probe(), InMemoryBatches(shapes, 8), interrupted, tmp_path)
    # a kill after step 7 but before the next checkpoint leaves steps 5-7 logged past checkpoint 4
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    state["step"] = 4
    torch.save(state, tmp_path / "checkpoint.pt")
    fit(Probe(), InMemoryBatches(shapes, 8), cfg, tmp_path, resume=True)
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 13))


def test_output_that_is_a_file_fails_before_training(tmp_path, shapes):
    calls: list = []
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="--out"):
        run_experiment(
            card(), fit_experiment(calls, shapes), out_dir=tmp_path / "file", run_root=tmp_path / "r", allow_dirty=True
        )
    with pytest.raises(NotADirectoryError, match="--run-dir"):
        run_experiment(
            card(), fit_experiment(calls, shapes), out_dir=tmp_path / "o", run_root=tmp_path / "file", allow_dirty=True
        )
    assert calls == []
    code = main(["run", "dcl", "--preset", "smoke", "--out", str(tmp_path / "file" / "x"), "--allow-dirty"])
    assert code == 1


def test_duplicated_arm_is_rejected_up_front(tmp_path, shapes):
    calls: list = []
    with pytest.raises(ValueError, match=r"\['a'\] named twice"):
        run(fit_experiment(calls, shapes), tmp_path, arms=["a", "b", "a"])
    assert calls == []


def test_dirty_tree_is_refused_with_a_way_out(tmp_path, shapes, monkeypatch):
    monkeypatch.setattr(experiment, "git_commit", lambda package=None: ("abc123", ["methods/fake/loss.py"]))
    calls: list = []
    with pytest.raises(DirtyTreeError, match="commit your changes and rerun, or pass --allow-dirty"):
        run(fit_experiment(calls, shapes), tmp_path, allow_dirty=False)
    assert calls == []
    rec = run(fit_experiment(calls, shapes), tmp_path, allow_dirty=True)
    assert rec["environment"]["git_commit"] == "abc123-dirty"
    from shared.report import provenance_marks

    assert provenance_marks(rec) == "dirty"


def test_merge_adds_an_arm_and_keeps_the_others(tmp_path, shapes):
    calls: list = []
    exp = fit_experiment(calls, shapes)
    first = run(exp, tmp_path, arms=["a", "b"])
    calls.clear()
    merged = run(exp, tmp_path, arms=["untrained"], merge=True)
    assert {a for a, _, _ in calls} == {"untrained"}
    assert merged["arms"]["a"] == first["arms"]["a"] and set(merged["environment"]["arm_commits"]) == {
        "untrained",
        "a",
        "b",
    }
    changed = fit_experiment(calls, shapes)
    changed.arms["a"] = {**changed.arms["a"], "lr": 0.1}
    with pytest.raises(ValueError, match=r"arm 'a' .* other settings"):
        run(changed, tmp_path, arms=["untrained"], merge=True)


def test_precision_follows_the_hardware(tmp_path, shapes, monkeypatch):
    cpu = torch.device("cpu")
    assert engine.resolve_precision("auto", False, cpu) == "fp32"
    assert engine.resolve_precision("fp32", True, cpu) == "fp32"
    assert engine.resolve_precision("bf16", False, cpu) == "bf16"
    monkeypatch.setattr(engine, "native_bf16", lambda device: False)  # an AVX2-only CPU
    assert engine.resolve_precision("auto", True, cpu) == "fp32"
    rec = run(fit_experiment([], shapes), tmp_path)
    assert rec["environment"]["precision"] == {"a": "fp32", "b": "fp32"}
    assert all(v > 0 for v in rec["environment"]["samples_per_second"]["a"])
    monkeypatch.setattr(engine, "native_bf16", lambda device: True)
    assert engine.resolve_precision("auto", True, cpu) == "bf16"
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(epochs=1, batch_size=8, lr=0.1, precision="fp16")


def test_damaged_idx_files_name_the_file(tmp_path):
    bad_gz = tmp_path / "train-images-idx3-ubyte.gz"
    bad_gz.write_bytes(b"not gzip at all")
    with pytest.raises(DataUnavailableError, match=str(bad_gz)):
        _read_idx(bad_gz)
    header = (0x0803).to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in (2, 2, 2))
    short = tmp_path / "t10k-images-idx3-ubyte.gz"
    short.write_bytes(gzip.compress(header + bytes(5)))
    with pytest.raises(DataUnavailableError, match=f"{short} is truncated"):
        _read_idx(short)
    good = tmp_path / "ok.gz"
    good.write_bytes(gzip.compress(header + bytes(8)))
    assert _read_idx(good).shape == (2, 2, 2)


def test_missing_data_dir_is_an_error(capsys, tmp_path):
    code = main(["run", "dcl", "--preset", "smoke", "--data-dir", str(tmp_path / "nope"), "--out", str(tmp_path)])
    assert code == 2 and "is not a folder" in capsys.readouterr().err
    from shared.data.fashion_mnist import load_fashion_mnist

    with pytest.raises(DataUnavailableError, match="does not exist"):
        load_fashion_mnist("test", tmp_path / "nope")


def test_malformed_record_names_the_file(tmp_path):
    path = tmp_path / "cpu.json"
    path.write_text("[1, 2]")
    with pytest.raises(RecordError, match=str(path)):
        read_record(path)
    path.write_text(json.dumps({"schema": 2, "paper": 1}))
    with pytest.raises(RecordError, match=f"{path}: record lacks fields"):
        read_record(path)


def test_ctrl_c_says_how_to_resume(capsys, monkeypatch):
    import shared.cli as cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_cmd_run", interrupted)
    assert main(["run", "dcl", "--preset", "smoke"]) == 130
    assert "--resume" in capsys.readouterr().err


def test_list_imports_no_paper_package():
    code = (
        "import sys; from shared.cli import main; main(['list']); "
        "print(sorted(m for m in sys.modules if m.startswith('methods.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
    assert "dcl" in out and "implemented" in out


def test_show_into_a_closed_pipe_is_quiet():
    proc = subprocess.run(
        f"{sys.executable} -m shared.cli show dcl | head -n 1",
        shell=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout.startswith("11.") and proc.stderr == ""  # no traceback, no "Broken pipe" error line


def test_run_help_and_show_list_a_presets_arms(capsys):
    with pytest.raises(SystemExit):
        main(["run", "dcl", "--help"])
    out = capsys.readouterr().out
    assert "presets of dcl" in out and "infonce_b32" in out and "headline: DCL vs InfoNCE, batch 32" in out
    assert main(["show", "dcl"]) == 0
    assert "arms: " in capsys.readouterr().out


def test_report_check_finds_commits_without_the_code(tmp_path):
    from shared.report import provenance_problems

    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    shallow = subprocess.run(
        ["git", "rev-parse", "--is-shallow-repository"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    if not head or shallow == "true":
        pytest.skip("needs the repository's history")
    good = {"package": "dcl", "preset": "cpu", "environment": {"git_commit": head}}
    missing = {"package": "dcl", "preset": "cpu", "environment": {"git_commit": "0" * 40}}
    no_pkg = {"package": "nosuchpaper", "preset": "cpu", "environment": {"git_commit": head}}
    legacy = {**no_pkg, "environment": {"git_commit": head, "legacy_commits": [head]}}
    assert provenance_problems([good, legacy], ROOT) == []
    problems = provenance_problems([missing, no_pkg], ROOT)
    assert "does not have" in problems[0] and "does not contain methods/nosuchpaper/" in problems[1]
