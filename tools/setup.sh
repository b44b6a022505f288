#!/usr/bin/env bash
# Installs every Debian package nnterp needs to build, test and benchmark, then builds it.
# Usage: tools/setup.sh [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential cmake pkg-config
  libopenblas-dev                      # sgemm
  libdnnl-dev                          # oneDNN: bfloat16 GEMMs on AMX (optional at configure)
  libopenmpi-dev openmpi-bin           # coordinator and ranks
  libhdf5-openmpi-dev hdf5-tools       # the parallel HDF5 store (h5dump for debugging)
  libcjson-dev                         # config.json, job files
  libpcre2-dev                         # Unicode regex for tokenizer pre-tokenizers (UTF + UCP)
  libutf8proc-dev                      # Unicode normalization (NFC/NFKC) for tokenizers
  clang                                # AddressSanitizer/UBSan and libFuzzer builds
  libclang-rt-dev                      # their runtimes (not pulled in by clang without recommends)
  python3-numpy python3-h5py           # tests read stores back the way users do
  python3-torch                        # benchmark baseline (PyTorch on the same machine)
  python3-sentencepiece                # tokenizer benchmark baseline (Llama 2)
  libcairo2-dev libpango1.0-dev        # pictures (nnterp plot, --plot): PNG through cairo, text through pango
  fonts-dejavu-core fonts-noto-cjk fonts-noto-color-emoji  # glyphs for any token: Latin, CJK, emoji
  python3-pil                          # tests decode the PNG pictures
  python3-pytest                       # the Python package's tests (python/tests)
  chromium                             # tests render the HTML pictures headless
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ "${1:-}" != "--no-build" ]; then
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
  cmake --build build -j "$(nproc)"
fi
