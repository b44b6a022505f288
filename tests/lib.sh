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
