# What the shell tests share: sourced as `. "$(dirname "$0")/lib.sh"`. Counts checks, prints one
# line per check, and ends with a summary whose status is the test's.
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }
# A race the test lost (say, the job ended before the signal) proves nothing: say so, count nothing.
skip() { echo "SKIP $1"; }
finish() { # test name
  echo "$1: $pass passed, $fail failed"
  if [ $((pass + fail)) -eq 0 ]; then
    echo "$1: no check ran" >&2 # a suite that checked nothing has not passed
    return 1
  fi
  [ "$fail" -eq 0 ]
}
# The shared test data (../shared, NNTERP_SHARED) holding every given path, else a loud skip
# (exit 77). Sets S to its directory.
need_shared() { # test name, then paths below the shared directory
  local name=$1 p
  shift
  S=${NNTERP_SHARED:-}
  for p in "" "$@"; do
    if [ -z "$S" ] || [ ! -d "$S/$p" ]; then
      echo "SKIPPED: $name needs the shared test data (NNTERP_SHARED='$S')"
      exit 77
    fi
  done
}
# A command on PATH, else a loud skip.
need_command() { # test name, command, the Debian package that has it
  command -v "$2" >/dev/null ||
    { echo "SKIPPED: $1 needs $2 (apt-get install $3; tools/setup.sh installs it)"; exit 77; }
}
# Debian's python3 with the given modules (tools/setup.sh installs them), else a loud skip.
need_python() { # test name, then module names
  local name=$1
  shift
  local mods
  mods=$(IFS=,; echo "$*")
  /usr/bin/python3 -c "import $mods" 2>/dev/null ||
    { echo "SKIPPED: $name needs python3 with $mods (tools/setup.sh installs them)"; exit 77; }
}

same_store() { # store a, store b: every dataset of a bitwise equal in b (NaN equals NaN), b complete
  /usr/bin/python3 - "$1" "$2" <<'PY'
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
bad = []
a.visititems(lambda n, o: bad.append(n) if isinstance(o, h5py.Dataset) and not np.array_equal(
    o[:], b[n][:], equal_nan=o.dtype.kind == "f") else None)
print(bad[:5], file=sys.stderr) if bad else None
sys.exit(1 if bad or b.attrs["status"] != "complete" else 0)
PY
}

# The store of JOB (a job file in the current directory whose "output" is "out.h5") equals the
# complete store REF bit for bit: after a plain run interrupted at batch 2 and resumed; under
# mpirun -np 1, -np 2 (two replicas) and -np 2 with two pipeline stages; and after a 2-stage run
# interrupted on rank 1 and resumed under 2 stages, and as one plain process. Needs $NNTERP.
layouts_and_resume() { # job.json ref.h5
  local job=$1 ref=$2
  rm -f out.h5 out.h5.*
  NNTERP_FAIL_AT_BATCH=0:2 "$NNTERP" run "$job" >/dev/null 2>&1
  if [ -e out.h5.partial ] && "$NNTERP" run "$job" --resume >/dev/null 2>err && same_store "$ref" out.h5; then
    ok "an interrupted run resumed gives the uninterrupted store"
  else bad "interrupted + --resume: $(head -3 err)"; fi
  if ! command -v mpirun >/dev/null; then
    skip "mpirun is not installed: the layouts are not compared"
    return
  fi
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
  # Under AddressSanitizer, Open MPI's dlopen'ed components leak at exit from modules no
  # suppression can name (tests/test_compute.sh): leaks are checked by the plain runs only.
  [ -n "${ASAN_OPTIONS:-}" ] && export ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0"
  sed 's/"output": "out.h5"/"parallel": {"pipeline_stages": 2}, "output": "out.h5"/' "$job" >"$job.2stages"
  local layout
  for layout in "1 $job" "2 $job" "2 $job.2stages"; do
    set -- $layout
    rm -f out.h5 out.h5.*
    if timeout 300 mpirun --oversubscribe -np "$1" "$NNTERP" run "$2" >/dev/null 2>err && same_store "$ref" out.h5; then
      ok "mpirun -np $1 $2: bitwise the plain run's store"
    else bad "mpirun -np $1 $2: $(head -3 err)"; fi
  done
  rm -f out.h5 out.h5.*
  NNTERP_FAIL_AT_BATCH=1:2 timeout 300 mpirun --oversubscribe -np 2 -x NNTERP_FAIL_AT_BATCH "$NNTERP" run "$job.2stages" >/dev/null 2>&1
  if [ -e out.h5.partial ] && timeout 300 mpirun --oversubscribe -np 2 "$NNTERP" run "$job.2stages" --resume >/dev/null 2>err &&
    same_store "$ref" out.h5; then
    ok "2 stages interrupted and resumed under 2 stages: the uninterrupted store"
  else bad "2 stages interrupted + --resume: $(head -3 err)"; fi
  rm -f out.h5 out.h5.*
  NNTERP_FAIL_AT_BATCH=1:2 timeout 300 mpirun --oversubscribe -np 2 -x NNTERP_FAIL_AT_BATCH "$NNTERP" run "$job.2stages" >/dev/null 2>&1
  if [ -e out.h5.partial ] && "$NNTERP" run "$job.2stages" --resume --stages 1 >/dev/null 2>err && same_store "$ref" out.h5; then
    ok "2 stages interrupted and resumed as one plain process: the uninterrupted store"
  else bad "2 stages interrupted + --resume --stages 1: $(head -3 err)"; fi
  rm -f out.h5 out.h5.*
}
