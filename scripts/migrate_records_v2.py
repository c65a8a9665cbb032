"""One-off: rewrite schema-1 result records as schema 2 (verdict rule v2), keeping every number.

    python scripts/migrate_records_v2.py [results]

The per-seed numbers stay; the verdicts are recomputed (Student-t intervals; the first
comparison is the headline, as it was under v1; no floor until an ``untrained`` arm is added
with ``repro run <pkg> --arms untrained --merge``). A record whose commit does not contain its
package (records made before the provenance check) gets that commit listed under
``environment.legacy_commits``, which REPRODUCTIONS.md marks with ‡ until the preset is rerun.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from shared.results import upgrade, write_record


def contains_package(commit: str, package: str) -> bool:
    sha = commit.removesuffix("-dirty")
    probe = subprocess.run(["git", "cat-file", "-e", f"{sha}:methods/{package}/__init__.py"], capture_output=True)
    return probe.returncode == 0


def main(results: str = "results") -> None:
    for path in sorted(Path(results).glob("*/*.json")):
        record = json.loads(path.read_text())
        if record.get("schema") != 1:
            continue
        old = record["verdict"]
        new = upgrade(record)
        commit = new["environment"].get("git_commit", "unknown")
        if commit != "unknown" and not contains_package(commit, new["package"]):
            new["environment"]["legacy_commits"] = [commit.removesuffix("-dirty")]
        write_record(new, path)
        print(f"{path}: {old} -> {new['verdict']}")


if __name__ == "__main__":
    main(*sys.argv[1:])
