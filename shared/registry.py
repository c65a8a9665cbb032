"""Paper cards, presets, and discovery of the paper packages under ``methods/``.

Each ``methods/<package>/__init__.py`` exposes ``PAPER`` (a :class:`PaperCard`) and
``PRESETS`` (``{"smoke": Experiment, "cpu": Experiment, "paper": Experiment}``). The
52-paper catalogue in ``methods/catalogue.toml`` lists the papers not implemented yet.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import tomllib

if TYPE_CHECKING:
    from shared.experiment import Experiment

import methods

CATALOGUE = Path(methods.__file__).with_name("catalogue.toml")


class UnknownPaperError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class Reported:
    """A number the paper (or its official code) reports, with where and how."""

    metric: str
    value: float | str
    setting: str
    source: str

    def as_dict(self) -> dict:
        return {"metric": self.metric, "value": self.value, "setting": self.setting, "source": self.source}


@dataclass(frozen=True)
class PaperCard:
    number: int
    short_name: str
    title: str
    package: str
    family: str
    tier: str
    arxiv: str
    official_code: str
    bibtex: str
    reported: tuple[Reported, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class PaperEntry:
    """A catalogue line, with the package's card and presets once it is implemented."""

    number: int
    short_name: str
    package: str
    family: str
    tier: str
    card: PaperCard | None = None
    presets: dict[str, Experiment] | None = None
    has_package: bool = False

    @property
    def implemented(self) -> bool:
        return self.card is not None or self.has_package


def implemented_packages() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(methods.__path__) if m.ispkg and not m.name.startswith("_"))


def load_package(package: str) -> tuple[PaperCard, dict[str, Experiment]]:
    module = importlib.import_module(f"methods.{package}")
    card, presets = getattr(module, "PAPER", None), getattr(module, "PRESETS", None)
    if not isinstance(card, PaperCard) or not isinstance(presets, dict):
        raise TypeError(f"methods.{package} must define PAPER (PaperCard) and PRESETS (dict)")
    return card, presets


def _rows() -> list[dict]:
    with open(CATALOGUE, "rb") as f:
        return tomllib.load(f)["paper"]


def _entry(row: dict, implemented: set[str], load: bool = True) -> PaperEntry:
    card = presets = None
    has_package = row["package"] in implemented
    if has_package and load:
        card, presets = load_package(row["package"])
    return PaperEntry(
        row["number"], row["short_name"], row["package"], row["family"], row["tier"], card, presets, has_package
    )


def catalogue(load: bool = True) -> list[PaperEntry]:
    """All 52 papers ordered by number; with ``load`` the implemented ones carry their card and
    presets (importing every package), without it only whether a package exists (imports none)."""
    implemented = set(implemented_packages())
    return [_entry(row, implemented, load) for row in _rows()]


def find_paper(name: str) -> PaperEntry:
    """By package name, number or short name (case-insensitive); imports only that paper's package."""
    key = name.strip().lower()
    implemented = set(implemented_packages())
    for row in _rows():
        if key in (row["package"], str(row["number"]), f"{row['number']:02d}", row["short_name"].lower()):
            return _entry(row, implemented)
    known = ", ".join(sorted(implemented))
    raise UnknownPaperError(f"unknown paper {name!r}; implemented papers: {known} (see `repro list`)")
