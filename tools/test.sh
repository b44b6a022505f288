#!/usr/bin/env bash
# Builds nnterp (Release) and runs every test. Test data is read from ../shared when present;
# tests that need it report themselves skipped otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$(nproc)"
cd build && ctest --output-on-failure -j 2
