#!/usr/bin/env bash
# The reference clients the round-trip checks run (PyTorch, transformers, PEFT, ONNX, ONNX
# Runtime), in a venv cached at .venv-reference (git-ignored). Prints the venv's python path as
# its last line of standard output; everything else goes to standard error. Fails, never skips,
# when the venv cannot be built: the checks that need it must run on every CI machine.
#
#   python="$(bash Scripts/python-env.sh)"
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$PWD/.venv-reference"
python="$venv/bin/python"
# torch's CPU wheel is on local disk (pip's find-links); the rest come from PyPI.
packages=(torch==2.13.0 transformers peft onnx onnxruntime numpy safetensors)
probe="import torch, transformers, peft, onnx, onnxruntime, numpy, safetensors; assert torch.__version__.startswith('2.13.0')"
if ! "$python" -c "$probe" >/dev/null 2>&1; then
  echo "python-env.sh: building $venv (${packages[*]})" >&2
  if ! command -v python3 >/dev/null 2>&1; then
    echo "python-env.sh: error: python3 is not installed; install it (apt-get install python3 python3-venv) and rerun" >&2
    exit 1
  fi
  if ! python3 -m venv "$venv" >&2; then
    echo "python-env.sh: error: cannot create the venv $venv (python3 -m venv failed); install python3-venv and rerun" >&2
    exit 1
  fi
  if ! "$venv/bin/pip" install --quiet "${packages[@]}" >&2; then
    echo "python-env.sh: error: pip could not install ${packages[*]} into $venv (no network or no package index?); the Hugging Face, PEFT and ONNX round trips cannot run without them" >&2
    exit 1
  fi
  if ! "$python" -c "$probe" >&2; then
    echo "python-env.sh: error: $venv was built but the packages do not import (see above); delete $venv and rerun" >&2
    exit 1
  fi
fi
echo "$python"
