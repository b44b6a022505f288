#!/usr/bin/env bash
# A job's patchscope target as nnterp's repeat_prompt(words=..., rel=..., sep=..., placeholder=...)
# ("target": {"repeat": {...}}) gives the store of the same prompt written out; a misspelt field is
# refused naming it. Runs on the bundled models/demo.
set -u
NNTERP=$1
. "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=/usr/bin/python3
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
head -3 "$ROOT/examples/facts.jsonl" >"$T/ds.jsonl"
job() { # name target-json
  cat >"$T/$1.json" <<EOF
{"model": "$ROOT/models/demo", "dataset": {"path": "$T/ds.jsonl"},
 "operations": [{"op": "patchscope_lens", "layers": "all", "top_k": 4, "target": $2}],
 "output": "$T/$1.h5"}
EOF
  "$NNTERP" run "$T/$1.json" >"$T/$1.log" 2>&1
}
ids() { $PY -c 'import h5py,sys; print(h5py.File(sys.argv[1])["patchscope_lens/target_ids"][:].tolist())' "$1" 2>&1; }
if job repeat '{"repeat": {"words": ["cat", "7"], "rel": " = ", "sep": "; ", "placeholder": "x"}, "index": -1}' &&
  job written '{"prompt": "cat = cat; 7 = 7; x", "index": -1}'; then
  ok "jobs with a repeat target and with the written prompt ran"
else bad "jobs: $(tail -3 "$T/repeat.log" "$T/written.log" 2>/dev/null)"; fi
if ! $PY -c 'import h5py' 2>/dev/null; then
  skip "no h5py to read the stores"
else
  $PY - "$T/repeat.h5" "$T/written.h5" <<'PY' >"$T/check" 2>&1 && ok "repeat target: the written prompt's store" || bad "stores differ: $(cat "$T/check")"
import sys, h5py, numpy as np
a, b = (h5py.File(p, "r")["patchscope_lens"] for p in sys.argv[1:3])
for k in ("target_ids", "top_ids", "top_probs"):
    assert np.array_equal(a[k][:], b[k][:]), k
PY
  if job defaults '{"repeat": {}}' && job plain '{"prompt": "king king\n1135 1135\nhello hello\n?"}' &&
    [ "$(ids "$T/defaults.h5")" = "$(ids "$T/plain.h5")" ]; then
    ok "repeat {} is nnterp's default repeat_prompt()"
  else bad "repeat defaults: $(tail -2 "$T/defaults.log")"; fi
fi
if job badfield '{"repeat": {"word": ["a"]}}'; then bad "a misspelt repeat field was accepted"
elif grep -q "unknown field 'word'" "$T/badfield.log"; then ok "a misspelt repeat field is refused, named"
else bad "misspelt field: $(cat "$T/badfield.log")"; fi
finish test_repeat_target
