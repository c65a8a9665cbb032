#!/usr/bin/env bash
# Set up a fresh machine: a virtual environment with the project (editable, dev extras) and,
# where Debian's apt is available, the offline copy of Fashion-MNIST. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
    || echo "setup: dataset-fashion-mnist not installed; Fashion-MNIST will come from the Hugging Face hub"
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
# torch==2.14.1 / torchvision==0.29.1 are pinned in pyproject.toml (the pair that imports together here).
.venv/bin/pip install --quiet --disable-pip-version-check -e '.[dev]'
echo "setup: done (.venv ready)"
