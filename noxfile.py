"""Test sessions. All run in the current environment (python=False): no session reinstalls torch.

nox -s tests             every test
nox -s test-dcl          one paper's tests (tests/methods/dcl), one session per paper
nox -s test-shared       the shared layer's tests
nox -s distributed       the multi-process (gloo) tests only
nox -s lint              ruff check + ruff format --check
nox -s report            REPRODUCTIONS.md matches the records (repro report --check)
"""

from __future__ import annotations

import sys
from pathlib import Path

import nox

ROOT = Path(__file__).parent
PY = sys.executable  # the interpreter nox runs in (the project's .venv): no PATH lookups
nox.options.sessions = ["lint", "report", "tests"]
nox.options.default_venv_backend = "none"

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def _pytest(session: nox.Session, *paths: str) -> None:
    # a -k filter through posargs leaves some sessions without tests: pytest then exits 5
    codes = [0, 5] if session.posargs else [0]
    session.run(PY, "-m", "pytest", *paths, *session.posargs, env=OFFLINE, success_codes=codes, external=True)


@nox.session(python=False)
def tests(session: nox.Session) -> None:
    """Every test of the project."""
    _pytest(session, "tests")


@nox.session(python=False, name="test-shared")
def test_shared(session: nox.Session) -> None:
    """The shared layer."""
    _pytest(session, "tests/shared")


def _paper_session(package: str) -> None:
    @nox.session(python=False, name=f"test-{package}")
    def session_fn(session: nox.Session) -> None:
        _pytest(session, f"tests/methods/{package}")

    session_fn.__doc__ = f"Tests of methods/{package}."


for _pkg in sorted(p.name for p in (ROOT / "methods").iterdir() if (p / "__init__.py").exists()):
    _paper_session(_pkg)


@nox.session(python=False)
def distributed(session: nox.Session) -> None:
    """Only the multi-process tests (2 gloo processes, torchrun + Accelerate)."""
    _pytest(session, "tests", "-m", "distributed")


@nox.session(python=False)
def lint(session: nox.Session) -> None:
    session.run(PY, "-m", "ruff", "check", ".", external=True)
    session.run(PY, "-m", "ruff", "format", "--check", ".", external=True)


@nox.session(python=False)
def report(session: nox.Session) -> None:
    """Fail when REPRODUCTIONS.md is not what `repro report` renders from results/."""
    session.run(PY, "-m", "shared.cli", "report", "--check", external=True, env=OFFLINE)
