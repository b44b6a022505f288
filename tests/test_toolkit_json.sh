#!/usr/bin/env bash
# nnterp lens --json and nnterp patchscope --json on the bundled model (models/demo): one JSON
# object on stdout that parses, whose numbers (top ids, probabilities, targets' probabilities,
# generated tokens) equal the -o OUT.h5 of the same command bit for bit (float32 printed %.9g);
# the token strings are the ids' texts; the table is not printed.
set -u
NNTERP=$1
. "$(dirname "$0")/lib.sh"
need_python test_toolkit_json h5py numpy
SRC=$(cd "$(dirname "$0")/.." && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T"
PY=/usr/bin/python3
MODEL=$SRC/models/demo

"$NNTERP" lens -m "$MODEL" -p "The capital of France is" -k 5 --positions 1,-2,-1 \
  --targets Paris,Berlin --json -o lens.h5 >lens.json 2>err && ok "lens --json -o runs" ||
  bad "lens --json: $(cat err)"
"$NNTERP" lens -m "$MODEL" -p "The capital of France is" --inverse -k 3 --layers 0,2 --json \
  -o inv.h5 >inv.json 2>err && ok "lens --inverse --json (no targets) runs" || bad "lens --inverse --json: $(cat err)"
$PY - <<'PY' && ok "lens --json equals its -o store bit for bit (ids, probabilities, targets; nested [layer][position][rank])" || bad "lens --json differs from -o"
import json, sys, h5py, numpy as np
bad = []
for name, targets in (("lens", True), ("inv", False)):
    text = open(name + ".json").read()
    assert text.count("\n") == 1, "not one line"
    j = json.loads(text)
    f = h5py.File(name + ".h5", "r")["lens"]
    f32 = lambda v: np.asarray(v, dtype=np.float32)
    checks = [("top_ids", np.array_equal(np.asarray(j["top_ids"]), f["top_ids"][:])),
              ("top_probs", np.array_equal(f32(j["top_probs"]).view(np.uint32), f["top_probs"][:].view(np.uint32))),
              ("layers", list(j["layers"]) == list(f["layers"][:])),
              ("positions", list(j["positions"]) == list(f["positions"][:])),
              ("shape", np.asarray(j["top_tokens"]).shape == f["top_ids"].shape)]
    if targets:
        checks.append(("targets", j["targets"] == ["Paris", "Berlin"] and json.loads(f.attrs["targets"]) == j["targets"]))
        checks.append(("target_probs", np.array_equal(f32(j["target_probs"]).view(np.uint32), f["target_probs"][:].view(np.uint32))))
        # the answer rises: Paris is top-1 at the last layer and last position, its token text and
        # probability agree with the target's
        checks.append(("Paris", j["top_tokens"][-1][-1][0] == " Paris" and j["target_probs"][-1][-1][0] >= j["top_probs"][-1][-1][0]))
    else:
        checks.append(("no targets", "targets" not in j and "target_probs" not in f))
    bad += [name + " " + c for c, good in checks if not good]
print(bad, file=sys.stderr) if bad else None
sys.exit(1 if bad else 0)
PY
grep -q "logit lens at position" lens.json && bad "lens --json also printed the table" || ok "lens --json prints only the JSON"

# lens -o and the job's logit_lens operation are one computation (nn_lens_probs, nn_top_k): the
# same prompt as a one-line dataset gives the file's numbers bit for bit, the store's
# [rows, layers, k] being the file's [layers, positions, k] transposed.
printf '%s\n' '{"text": "The capital of France is"}' >one.jsonl
cat >lensjob.json <<JOB
{"model": "$MODEL", "dataset": {"path": "one.jsonl"},
 "operations": [{"op": "logit_lens", "top_k": 5, "positions": [1, -2, -1]},
                {"op": "logit_lens", "top_k": 3, "layers": [0, 2], "inverse": true, "positions": "last"}],
 "output": "lensjob.h5"}
JOB
"$NNTERP" lens -m "$MODEL" -p "The capital of France is" --inverse -k 3 --layers 0,2 -o inv_last.h5 >/dev/null 2>err ||
  bad "lens --inverse at the last position: $(cat err)"
if "$NNTERP" run lensjob.json >/dev/null 2>err; then
  $PY - <<'PY' && ok "lens -o equals the job's logit_lens op bit for bit (and --inverse at chosen layers)" || bad "lens -o differs from the job's logit_lens"
import sys, h5py, numpy as np
s = h5py.File("lensjob.h5", "r")
bad = []
for name, g in (("lens.h5", "logit_lens"), ("inv_last.h5", "logit_lens_2")):
    f = h5py.File(name, "r")["lens"]
    for ds in ("top_ids", "top_probs"):
        a, b = f[ds][:], s[g + "/" + ds][:].transpose(1, 0, 2)
        if a.shape != b.shape or a.tobytes() != b.tobytes():
            bad.append(f"{name} {ds}: {a.shape} vs {b.shape}")
print(bad, file=sys.stderr) if bad else None
sys.exit(1 if bad else 0)
PY
else bad "the logit_lens job: $(cat err)"; fi

"$NNTERP" patchscope -m "$MODEL" --source "The capital of France is" --layers 0:3 -k 4 --targets Paris,Rome \
  --generate 3 --json -o ps.h5 >ps.json 2>err && ok "patchscope --json -o runs" || bad "patchscope --json: $(cat err)"
"$NNTERP" patchscope -m "$MODEL" --source "Paris" --target "Rome is a city; x" --index -1 -k 2 --json \
  -o ps2.h5 >ps2.json 2>err && ok "patchscope --target --json (no targets, no generation) runs" || bad "patchscope --target --json: $(cat err)"
$PY - <<'PY' && ok "patchscope --json equals its -o store bit for bit (ids, probabilities, targets, generated tokens)" || bad "patchscope --json differs from -o"
import json, sys, h5py, numpy as np
bad = []
u32 = lambda v: np.asarray(v, dtype=np.float32).view(np.uint32)
for name, full in (("ps", True), ("ps2", False)):
    text = open(name + ".json").read()
    assert text.count("\n") == 1, "not one line"
    j = json.loads(text)
    h = h5py.File(name + ".h5", "r")
    f = h["patchscope"]
    checks = [("top_ids", np.array_equal(np.asarray(j["top_ids"]), f["top_ids"][:])),
              ("top_probs", np.array_equal(u32(j["top_probs"]), f["top_probs"][:].view(np.uint32))),
              ("layers", list(j["layers"]) == list(f["layers"][:])),
              ("target", j["target"] == h.attrs["target"] and j["index"] == -1),
              ("tokens", np.asarray(j["top_tokens"]).shape == f["top_ids"].shape)]
    if full:
        checks += [("layers 0:3", j["layers"] == [0, 1, 2]),
                   ("targets", j["targets"] == ["Paris", "Rome"]),
                   ("target_probs", np.array_equal(u32(j["target_probs"]), f["target_probs"][:].view(np.uint32))),
                   ("generated", np.array_equal(np.asarray(j["generated"]), f["tokens"][:]) and f["tokens"].shape == (3, 3))]
    else:
        checks += [("none", "targets" not in j and "generated" not in j and "target_probs" not in f and "tokens" not in f)]
    bad += [name + " " + c for c, good in checks if not good]
print(bad, file=sys.stderr) if bad else None
sys.exit(1 if bad else 0)
PY
# The probabilities round-trip: %.9g of a float32 reads back to the same float.
$PY - <<'PY' && ok "every printed probability has at most 9 significant digits and reads back exactly" || bad "the JSON's floats"
import json, re, sys, numpy as np
text = open("ps.json").read()
nums = re.findall(r'"top_probs":(\[.*?\]\])', text)[0]
vals = re.findall(r'[-+]?\d[\d.e+-]*', nums)
ok = all(len(re.sub(r'e.*|[-.]', '', v).lstrip('0')) <= 9 for v in vals)
ok &= all(float(np.float32(v)) == float(np.float32(float(v))) for v in vals)
sys.exit(0 if ok and vals else 1)
PY
"$NNTERP" patchscope -m "$MODEL" --source "Paris" --targets "" --json >out 2>err
[ $? -ne 0 ] && [ ! -s out ] && ok "patchscope --targets '' is refused, nothing on stdout" || bad "--targets '': $(cat out err)"
finish test_toolkit_json
