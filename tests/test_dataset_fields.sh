#!/usr/bin/env bash
# Per-prompt dataset fields in job operations, on the bundled model (models/demo):
# patchscope_lens' target_field (each line's own target) gives, prompt by prompt, the row of the
# fixed-target op with the same target text, bit for bit; steer's contrast_fields gives the store
# of the op listing the same texts in 'contrast'. Both are bitwise the same under mpirun -np 2
# (two replicas, two pipeline stages) and after an interrupted run resumed; a changed target_field
# is refused by --resume; a line without the field, both target and target_field, and a target
# index outside a line's target are refused naming the field or the line.
set -u
NNTERP=$1
. "$(dirname "$0")/lib.sh"
need_python test_dataset_fields h5py numpy
SRC=$(cd "$(dirname "$0")/.." && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T"
PY=/usr/bin/python3
MODEL=$SRC/models/demo

$PY - <<'PY'
import json
texts = ["The capital of France is", "Hello", "The dog says", "Everyone knows that the capital of Spain is", "Paris"]
targets = ["Rome is a city. So", "king king\n1135 1135\nhello hello\n?", "The word x means"]
pairs = [("I love Paris", "I hate Paris"), ("Bonjour mon ami", "Hello my friend"), ("wonderful", "terrible")]
with open("d.jsonl", "w") as f:
    for i in range(24):
        # runs of equal targets (shared passes) and changes between neighbours
        f.write(json.dumps({"text": texts[i % 5], "tgt": targets[(i // 2) % 3],
                            "pos": pairs[i % 3][0], "neg": pairs[i % 3][1]}) + "\n")
json.dump(targets, open("targets.json", "w"))
json.dump([[p for p, n in pairs] * 8, [n for p, n in pairs] * 8], open("contrast.json", "w"))
PY
CONTRAST=$(cat contrast.json)
$PY - "$MODEL" "$CONTRAST" <<'PY'
import json, sys
model, contrast = sys.argv[1], json.loads(sys.argv[2])
targets = json.load(open("targets.json"))
ops = [{"op": "patchscope_lens", "target_field": "tgt", "target": {"index": -1}, "layers": "all", "top_k": 5}]
ops += [{"op": "patchscope_lens", "target": {"prompt": t}, "layers": "all", "top_k": 5} for t in targets]
ops += [{"op": "steer", "contrast_fields": ["pos", "neg"], "layers": [1, 2], "factor": 4, "generate": 3},
        {"op": "steer", "contrast": contrast, "layers": [1, 2], "factor": 4, "generate": 3}]
json.dump({"model": model, "dataset": {"path": "d.jsonl"}, "operations": ops, "batch_tokens": 48,
           "output": "out.h5"}, open("job.json", "w"))
PY
"$NNTERP" run job.json >/dev/null 2>err && ok "a job of patchscope_lens with target_field and steer with contrast_fields runs" ||
  bad "the job: $(cat err)"
$PY - <<'PY' && ok "target_field: each prompt's row equals the fixed-target op's row for its line's target, bit for bit; target_ids/target_offsets hold each line's target" || bad "target_field rows differ from the fixed-target ops"
import json, sys, h5py, numpy as np
f = h5py.File("out.h5", "r")
g = f["patchscope_lens"]
fixed = [f["patchscope_lens_%d" % k] for k in (2, 3, 4)]
bad = []
offs = g["target_offsets"][:]
if g.attrs["target_field"] != "tgt" or offs.shape != (25,):
    bad.append("attributes")
for p in range(24):
    src = fixed[(p // 2) % 3]
    for k in ("top_ids", "top_probs"):
        if not np.array_equal(g[k][p], src[k][p]):
            bad.append("prompt %d %s" % (p, k))
    if not np.array_equal(g["target_ids"][offs[p]:offs[p + 1]], src["target_ids"][:]):
        bad.append("prompt %d target ids" % p)
print(bad[:5], file=sys.stderr) if bad else None
sys.exit(1 if bad else 0)
PY
$PY - <<'PY' && ok "contrast_fields: the store of 'contrast' listing the same texts" || bad "contrast_fields differs from contrast"
import sys, h5py, numpy as np
f = h5py.File("out.h5", "r")
a, b = f["steer"], f["steer_2"]
ok = all(np.array_equal(a[k][:], b[k][:]) for k in b)
ok &= "field 'pos' minus field 'neg'" in a.attrs["vector"]
sys.exit(0 if ok else 1)
PY

mv out.h5 single.h5
layouts_and_resume job.json single.h5
NNTERP_FAIL_AT_BATCH=0:2 "$NNTERP" run job.json >/dev/null 2>&1
sed 's/"target_field": "tgt"/"target_field": "pos"/' job.json >changed.json
"$NNTERP" run changed.json --resume >/dev/null 2>err
[ $? -ne 0 ] && grep -q "target_field" err && ok "--resume with another target_field is refused, naming it" ||
  bad "--resume with another target_field: $(head -3 err)"
rm -f out.h5 out.h5.*

refused() { # what, expected message, dataset, op JSON
  rm -f bad.h5 bad.h5.*
  printf '{"model": "%s", "dataset": {"path": "%s"}, "operations": [%s], "output": "bad.h5"}\n' "$MODEL" "$3" "$4" >bad.json
  "$NNTERP" run bad.json >/dev/null 2>err
  [ $? -ne 0 ] && grep -q "$2" err && [ ! -e bad.h5 ] && ok "$1" || bad "$1: $(head -3 err)"
}
printf '{"text": "a b"}\n{"text": "c", "tgt": "x"}\n' >missing.jsonl
refused "a line without the target field is refused, naming the line" "missing.jsonl:1: no string field 'tgt'" missing.jsonl \
  '{"op": "patchscope_lens", "target_field": "tgt"}'
refused "target and target_field together are refused" "give 'target' or 'target_field', not both" d.jsonl \
  '{"op": "patchscope_lens", "target_field": "tgt", "target": {"prompt": "x"}}'
refused "a target index outside a line's target is refused, naming the line" "d.jsonl:1: the target (field 'tgt'" d.jsonl \
  '{"op": "patchscope_lens", "target_field": "tgt", "target": {"index": 40}}'
refused "contrast_fields of the wrong shape are refused" "'contrast_fields' must be two dataset field names" d.jsonl \
  '{"op": "steer", "contrast_fields": ["pos"], "layers": [1], "factor": 1}'
refused "contrast_fields with contrast is refused" "give exactly one of" d.jsonl \
  '{"op": "steer", "contrast_fields": ["pos", "neg"], "contrast": [["a"], ["b"]], "layers": [1], "factor": 1}'
refused "a missing contrast field is refused, naming it" "no string field 'nope' (the steer contrast)" d.jsonl \
  '{"op": "steer", "contrast_fields": ["pos", "nope"], "layers": [1], "factor": 1}'
# nnterp plot names each prompt's own target.
"$NNTERP" plot single.h5 --op patchscope_lens -m "$MODEL" -o ps.html >/dev/null 2>err || bad "nnterp plot: $(cat err)"
$PY - <<'PY' && ok "nnterp plot of a target_field store names each prompt's own target" || bad "nnterp plot's targets"
import html, json, re, sys
page = html.unescape(open("ps.html", encoding="utf-8").read())
targets = json.load(open("targets.json"))
subs = dict(re.findall(r'prompt (\d+), patchscope at index -1 of "([^"]*)"', page))
want = {str(p): targets[(p // 2) % 3].replace("\n", "\\n") for p in range(24)}
ok = len(subs) == 24 and all(subs[p] in (want[p], want[p].replace("\\n", "\n")) for p in want)
print(sorted(subs.items())[:3], file=sys.stderr) if not ok else None
sys.exit(0 if ok else 1)
PY
# The worked example runs (paths made absolute, the store written here).
sed -e "s|\"models/demo\"|\"$MODEL\"|" -e "s|\"examples/|\"$SRC/examples/|" "$SRC/examples/fields.json" >example.json
"$NNTERP" run example.json >/dev/null 2>err && [ -e fields.h5 ] && ok "examples/fields.json runs" ||
  bad "examples/fields.json: $(head -3 err)"
finish test_dataset_fields
