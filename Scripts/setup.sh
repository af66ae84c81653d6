#!/usr/bin/env bash
# Installs the Debian packages surgeon builds against (OpenBLAS, oneDNN, libyaml, zlib, bzip2,
# pkg-config), Fashion-MNIST (real images for the vision flow) and Open MPI (mpirun and libmpi,
# which surgeon loads at run time for data-parallel runs; the build does not need it) when any is
# missing. Idempotent; needs root or sudo only when it installs.
set -euo pipefail
packages="libopenblas-dev libyaml-dev zlib1g-dev libbz2-dev pkg-config dataset-fashion-mnist"
packages="$packages openmpi-bin libopenmpi-dev libdnnl-dev"
if command -v pkg-config >/dev/null 2>&1 && pkg-config --exists openblas yaml-0.1 zlib \
  && [ -f /usr/include/bzlib.h ] && [ -f /usr/include/dnnl.h ] && command -v mpirun >/dev/null 2>&1 \
  && pkg-config --exists ompi \
  && [ -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "setup: error: run as root or install: $packages" >&2
    exit 1
  fi
  SUDO="sudo"
fi
echo "setup: installing $packages"
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq $packages >/dev/null
