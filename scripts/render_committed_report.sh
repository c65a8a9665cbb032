#!/usr/bin/env bash
# Render REPRODUCTIONS.md from the committed tree only (uncommitted paper packages left out).
set -euo pipefail
root=$(git rev-parse --show-toplevel)
tmp=$(mktemp -d)
git -C "$root" worktree add -q --detach "$tmp" HEAD
(cd "$tmp" && "$root/.venv/bin/python" -c "import sys; sys.path.insert(0, '.'); from shared.cli import main; sys.exit(main(['report']))")
cp "$tmp/REPRODUCTIONS.md" "$root/REPRODUCTIONS.md"
git -C "$root" worktree remove --force "$tmp"
