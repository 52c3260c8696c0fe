#!/usr/bin/env bash
# Install everything SALUS needs on Debian 12 with Python 3.11, offline but for the package registries:
# missing Debian packages (requirements/apt.txt), a virtual environment in .venv, torch and torchvision,
# this package in editable mode with its development tools at the versions in requirements/constraints.txt, lerobot,
# and the Jupyter kernel `salus` that papermill runs pipeline notebooks with. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

missing=()
for pkg in $(grep -v '^#' requirements/apt.txt); do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  echo "install: Debian packages: ${missing[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# A recent pip first: the pip that Debian's venv bundles (23.0) spends tens of minutes re-reading installed metadata
# while resolving against our full constraints file next to torch's CUDA packages.
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip==26.3
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check -c requirements/constraints.txt)
# torch and torchvision first, alone, pinned (the builds on the machine's local disk): a requirement that admits
# another release would pull a multi-GB build from the registry.
"${pip[@]}" torch==2.14.1 torchvision==0.29.1
"${pip[@]}" -e '.[dev]'
# lerobot (SmolVLA backend, LeRobotDataset export): its requirements, then lerobot itself without its torch pins.
"${pip[@]}" -r requirements/lerobot.txt
"${pip[@]}" --no-deps lerobot==0.4.4
# Everything consistent, except lerobot's own pins and the extras we leave out (requirements/lerobot.txt).
problems=$(.venv/bin/python -m pip check 2>&1 | grep -v '^lerobot 0\.4\.4 \|^No broken requirements' || true)
if [ -n "$problems" ]; then echo "install: pip check found broken requirements:"; echo "$problems"; exit 1; fi
.venv/bin/python -m ipykernel install --sys-prefix --name salus --display-name 'Python (salus)' >/dev/null
echo "install: done ($(.venv/bin/python -c 'import torch, salus; print("salus", salus.__version__, "torch", torch.__version__)'))"
