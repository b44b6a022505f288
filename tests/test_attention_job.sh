#!/usr/bin/env bash
# collect's attention_probabilities on the bundled model (models/demo): each prompt's rows of
# /activations/attention_probabilities/<layer> [rows, heads, Lmax] equal nnterp trace --save
# attention_probabilities' [heads, T, T] bit for bit (every query, and chosen heads at chosen
# positions); each row sums to 1, is 0 above the diagonal and NaN past the prompt's end; the store
# is bitwise the same under mpirun -np 2 (two replicas) and -np 2 (two pipeline stages), and after
# an interrupted run resumed; collecting them leaves the pass's other outputs unchanged; a changed
# 'heads' is refused by --resume; malformed 'heads' are refused naming the field.
set -u
NNTERP=$1
. "$(dirname "$0")/lib.sh"
need_python test_attention_job h5py numpy
SRC=$(cd "$(dirname "$0")/.." && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T"
PY=/usr/bin/python3
MODEL=$SRC/models/demo

PROMPTS=("The capital of France is" "Hello" "Everyone knows that the capital of Spain is"
  "The dog says woof and the cat says")
$PY - "${PROMPTS[@]}" <<'PY'
import json, sys
ps = sys.argv[1:]
with open("d.jsonl", "w") as f:
    for i in range(30):
        f.write(json.dumps({"text": ps[i % len(ps)]}) + "\n")
PY
cat >job.json <<JOB
{"model": "$MODEL", "dataset": {"path": "d.jsonl"},
 "operations": [
   {"op": "collect", "hooks": ["attention_probabilities", "layers_output"], "layers": "all"},
   {"op": "collect", "hooks": ["attention_probabilities"], "layers": [1, 3], "heads": [2, 0],
    "positions": [0, -1]}],
 "batch_tokens": 32, "output": "out.h5"}
JOB
"$NNTERP" run job.json >/dev/null 2>err && ok "a job collecting attention_probabilities runs" || bad "the job: $(cat err)"
args=()
for p in "${PROMPTS[@]}"; do args+=(-p "$p"); done
"$NNTERP" trace -m "$MODEL" "${args[@]}" --save attention_probabilities -o trace.h5 >/dev/null 2>err ||
  bad "nnterp trace: $(cat err)"

$PY - <<'PY' && ok "the store's attention probabilities equal nnterp trace's bit for bit (all heads and queries; chosen heads at chosen positions)" || bad "the store differs from nnterp trace"
import sys, h5py, numpy as np
f, t = h5py.File("out.h5", "r"), h5py.File("trace.h5", "r")
a, b = f["activations"], f["activations_2"]
offs = f["prompts/token_offsets"][:]
L = len(t["activations/attention_probabilities"])
H = t["activations/attention_probabilities/0/0"].shape[0]
Lmax = int((offs[1:] - offs[:-1]).max())
bad = []
if list(a["attention_heads"][:]) != list(range(H)) or list(b["attention_heads"][:]) != [2, 0]:
    bad.append("attention_heads")
if a["attention_probabilities/0"].shape != (offs[-1], H, Lmax) or b["attention_probabilities/1"].shape != (60, 2, Lmax):
    bad.append("shapes %s %s" % (a["attention_probabilities/0"].shape, b["attention_probabilities/1"].shape))
for p in range(len(offs) - 1):
    n = offs[p + 1] - offs[p]
    for l in range(L):
        want = t["activations/attention_probabilities/%d/%d" % (l, p % 4)][:]  # [heads, T, T]
        x = a["attention_probabilities/%d" % l][offs[p]:offs[p + 1]]       # [T, heads, Lmax]
        if not np.array_equal(x[:, :, :n].transpose(1, 0, 2), want):
            bad.append("prompt %d layer %d" % (p, l))
        if not np.isnan(x[:, :, n:]).all():
            bad.append("prompt %d layer %d: not NaN past the end" % (p, l))
        if l in (1, 3):
            y = b["attention_probabilities/%d" % l][2 * p:2 * p + 2]        # positions 0, -1
            if not np.array_equal(y[:, :, :n], want[[2, 0]][:, [0, n - 1]].transpose(1, 0, 2)):
                bad.append("chosen heads, prompt %d layer %d" % (p, l))
print(bad[:5], file=sys.stderr) if bad else None
sys.exit(1 if bad else 0)
PY
$PY - <<'PY' && ok "every row sums to 1 over the prompt's keys, 0 above the diagonal" || bad "rows are not distributions"
import sys, h5py, numpy as np
f = h5py.File("out.h5", "r")
offs = f["prompts/token_offsets"][:]
ok = True
for l in f["activations/attention_probabilities"]:
    x = f["activations/attention_probabilities/" + l][:]
    for p in range(len(offs) - 1):
        n = offs[p + 1] - offs[p]
        blk = x[offs[p]:offs[p + 1], :, :n].astype(np.float64)
        ok &= np.allclose(blk.sum(-1), 1.0, atol=1e-5)
        ok &= (blk[np.triu_indices(n, 1)[0], :, np.triu_indices(n, 1)[1]] == 0).all()
sys.exit(0 if ok else 1)
PY

# Collecting attention does not change the pass's other outputs.
sed -e 's/"hooks": \["attention_probabilities", "layers_output"\]/"hooks": ["layers_output"]/' \
  -e 's/"output": "out.h5"/"output": "plain.h5"/' job.json >plain.json
"$NNTERP" run plain.json >/dev/null 2>err || bad "the job without attention: $(cat err)"
$PY - <<'PY' && ok "layers_output collected beside attention_probabilities equals a job without them, bit for bit" || bad "collecting attention changed layers_output"
import sys, h5py, numpy as np
a, b = h5py.File("out.h5", "r")["activations/layers_output"], h5py.File("plain.h5", "r")["activations/layers_output"]
ok = sorted(a) == sorted(b) and len(a) > 0 and all(np.array_equal(a[l][:], b[l][:]) for l in a)
sys.exit(0 if ok else 1)
PY

mv out.h5 single.h5
layouts_and_resume job.json single.h5
NNTERP_FAIL_AT_BATCH=0:2 "$NNTERP" run job.json >/dev/null 2>&1
sed 's/"heads": \[2, 0\]/"heads": [2, 1]/' job.json >heads.json
"$NNTERP" run heads.json --resume >/dev/null 2>err
[ $? -ne 0 ] && grep -q "heads" err && ok "--resume with other heads is refused, naming heads" ||
  bad "--resume with other heads: $(head -3 err)"
rm -f out.h5 out.h5.*

refused() { # what, expected message, op JSON
  rm -f bad.h5 bad.h5.*
  printf '{"model": "%s", "dataset": {"path": "d.jsonl"}, "operations": [%s], "output": "bad.h5"}\n' "$MODEL" "$3" >bad.json
  "$NNTERP" run bad.json >/dev/null 2>err
  [ $? -ne 0 ] && grep -q "$2" err && [ ! -e bad.h5 ] && ok "$1" || bad "$1: $(head -3 err)"
}
refused "heads without attention_probabilities is refused" "does not collect attention_probabilities" \
  '{"op": "collect", "hooks": ["layers_output"], "layers": [0], "heads": [0]}'
refused "a head out of range is refused" "heads\[0\] = 99 is out of range" \
  '{"op": "collect", "hooks": ["attention_probabilities"], "layers": [0], "heads": [99]}'
refused "heads of the wrong type are refused" "field 'heads' must be" \
  '{"op": "collect", "hooks": ["attention_probabilities"], "layers": [0], "heads": "some"}'
finish test_attention_job
