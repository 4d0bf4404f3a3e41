#!/usr/bin/env bash
# The one install path: `make train` / `make test` (the README's quick start) and the Dockerfile both run it,
# so the image is built the way a user's machine is.
#
#   ./install.sh VENV [EXTRAS]        e.g. ./install.sh .venv test
#
# Environment:
#   PYTHON       interpreter that creates the venv (default python3)
#   TORCH        torch requirement installed first (default torch==2.13.0); empty: keep the torch the
#                interpreter already has (the Docker image's CUDA build), which VENV_OPTS must then expose
#   TORCH_INDEX  pip index for torch, e.g. https://download.pytorch.org/whl/cpu (default: pip's own)
#   VENV_OPTS    extra `python -m venv` options, e.g. --system-site-packages
#   CONSTRAINTS  pip constraints file pinning the other dependencies (the image uses docker/constraints.txt)
set -euo pipefail
venv=${1:?usage: install.sh VENV [EXTRAS]}
extras=${2:-}
torch_req=${TORCH-torch==2.13.0}
# shellcheck disable=SC2086  # VENV_OPTS is a list of options
"${PYTHON:-python3}" -m venv ${VENV_OPTS:-} "$venv"
pip=("$venv/bin/python" -m pip install -q)
if [[ -n $torch_req ]]; then
    "${pip[@]}" ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} "$torch_req"
fi
"${pip[@]}" ${CONSTRAINTS:+--constraint "$CONSTRAINTS"} --editable ".${extras:+[$extras]}"
