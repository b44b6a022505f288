#!/usr/bin/env bash
# The Python package (python/nnterp_c over libnnterp.so) under Debian's pytest: its numbers against
# the nnterp command's, bit for bit, and nnterp's invariants through it.
# Usage: test_python.sh LIBNNTERP.so NNTERP_CLI SOURCE_DIR [asan]
set -euo pipefail
. "$(dirname "$0")/lib.sh"
py=/usr/bin/python3
need_python test_python pytest numpy
export NNTERP_LIBRARY=$1 NNTERP_CLI=$2 NNTERP_SOURCE_DIR=$3 PYTHONPATH=$3/python
if [ "${4:-}" = asan ]; then
  # The library is instrumented, the interpreter is not: the sanitizer runtime must come first.
  # Leak detection is off here because the interpreter's own arenas and interned objects are
  # reported at exit; the engine's allocations are leak-checked by the C tests
  # (alloc_failures, the reference and toolkit suites) under the same build.
  rt=$(${CC:-clang} -print-file-name=libclang_rt.asan-x86_64.so)
  [ -f "$rt" ] || { echo "SKIP: no ASan runtime at $rt"; exit 77; }
  export LD_PRELOAD=$rt
  export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1
  export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
fi
exec "$py" -m pytest -q -p no:cacheprovider "$3/python/tests"
