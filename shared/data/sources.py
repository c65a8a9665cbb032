"""Which copy of each data set a run read: the record's setting names it (``data_sources``).

Loaders call :func:`note_source` with the data set and where it came from (a local path, or
``hub:<name>``); ``repro run`` clears the notes before the first arm and stores them after the last.
"""

from __future__ import annotations

_SOURCES: dict[str, str] = {}


def note_source(dataset: str, where: str) -> None:
    _SOURCES[dataset] = where


def sources_used() -> dict[str, str]:
    return dict(sorted(_SOURCES.items()))


def clear_sources() -> None:
    _SOURCES.clear()
