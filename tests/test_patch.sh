#!/usr/bin/env bash
# The job operation activation_patch on the bundled model (models/demo): its numbers equal the C
# API's nn_activation_patch (through nnterp patch --json) bit for bit, cell by cell of a sweep and
# for all patches at once; patching every position of every layer from a prompt into itself gives
# the unpatched result; layers_output of the last layer at every position gives the source's
# probabilities; the store is bitwise the same under mpirun -np 1, -np 2 (two replicas) and -np 2
# (two pipeline stages), and after an interrupted run resumed; nnterp plot draws the sweep's grid.
set -u
NNTERP=$1
. "$(dirname "$0")/lib.sh"
need_python test_patch h5py numpy
SRC=$(cd "$(dirname "$0")/.." && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T"
PY=/usr/bin/python3
MODEL=$SRC/models/demo

# Pairs of different lengths (the columns align at the end), a repeated pair, a long tail.
$PY - <<'PY'
import json
pairs = [("The capital of Germany is", "The capital of France is", "Paris", "Berlin"),
         ("The capital of France is", "Everyone knows that the capital of Italy is", "Rome", "Paris"),
         ("The dog says", "The cat says", "meow", "woof"),
         ("Everyone knows that the capital of Spain is", "The capital of Japan is", "Tokyo", "Madrid")]
with open("pairs.jsonl", "w") as f:
    for i in range(40):
        t, s, a, b = pairs[i % len(pairs)]
        f.write(json.dumps({"text": t, "src": s, "targets": {"a": a, "b": b}}) + "\n")
with open("self.jsonl", "w") as f:
    for t, s, a, b in pairs:
        f.write(json.dumps({"text": t, "source": t, "targets": {"a": a, "b": b}}) + "\n")
PY
cat >job.json <<JOB
{"model": "$MODEL", "dataset": {"path": "pairs.jsonl", "max_tokens": 32},
 "operations": [
   {"op": "activation_patch", "source_field": "src", "sweep": true,
    "hooks": ["layers_output", "attentions_output", "mlps_output"]},
   {"op": "activation_patch", "source_field": "src", "layers": [1, 2], "positions": [-2, -1],
    "hooks": ["layers_output", "mlps_output"], "top_k": 4},
   {"op": "activation_patch", "source": "The capital of Italy is", "layers": "1", "positions": [-3],
    "sweep": true}],
 "batch_tokens": 32, "output": "out.h5"}
JOB
"$NNTERP" run job.json >/dev/null 2>err && ok "a job of three activation_patch ops runs" ||
  bad "the job: $(cat err)"

# The C API through nnterp patch --json, for the first four pairs (the rest repeat them).
i=0
while IFS=$'\t' read -r tgt src; do
  "$NNTERP" patch -m "$MODEL" --source "$src" --target "$tgt" --sweep --targets "$(sed -n "$((i + 1))p" names)" \
    --hook layers_output,attentions_output,mlps_output --json >"sweep$i.json" 2>err || bad "patch --sweep $i: $(cat err)"
  "$NNTERP" patch -m "$MODEL" --source "$src" --target "$tgt" --layers 1,2 --positions -2,-1 -k 4 \
    --hook layers_output,mlps_output --targets "$(sed -n "$((i + 1))p" names)" --json >"all$i.json" 2>err ||
    bad "patch $i: $(cat err)"
  "$NNTERP" patch -m "$MODEL" --source "The capital of Italy is" --target "$tgt" --layers 1 --positions -3 \
    --sweep --targets "$(sed -n "$((i + 1))p" names)" --json >"fixed$i.json" 2>err || bad "patch fixed $i: $(cat err)"
  i=$((i + 1))
done < <($PY -c '
import json
lines = [json.loads(l) for l in open("pairs.jsonl")][:4]
open("names", "w").write("".join(l["targets"]["a"] + "," + l["targets"]["b"] + "\n" for l in lines))
for l in lines: print(l["text"] + "\t" + l["src"])')

$PY - <<'PY' && ok "the store equals nn_activation_patch bit for bit (sweeps, all at once, a fixed source)" || bad "the store differs from nn_activation_patch"
import json, sys, h5py, numpy as np
f = h5py.File("out.h5", "r")
g, g2, g3 = f["activation_patch"], f["activation_patch_2"], f["activation_patch_3"]
f32 = lambda v: np.asarray(v, dtype=np.float32)
bad = []
def same(name, a, b):
    if not np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True):
        bad.append(name)
W = g["positions"].shape[0]
assert list(g["positions"][:]) == list(range(-W, 0)), g["positions"][:]
assert g["patched_probs"].shape == (40, 3, 4, W, 2) and g["logit_diff"].shape == (40, 3, 4, W)
for p in range(40):
    q = p % 4
    s, a, x = (json.load(open(n % q)) for n in ("sweep%d.json", "all%d.json", "fixed%d.json"))
    w = len(s["positions"])
    grid = f32(s["patched_probs"]).reshape(3, 4, w, 2)
    same("baseline %d" % p, g["baseline_probs"][p], f32(s["baseline_probs"]))
    same("source %d" % p, g["source_probs"][p], f32(s["source_probs"]))
    same("grid %d" % p, g["patched_probs"][p][:, :, W - w:], grid)
    same("diff %d" % p, g["logit_diff"][p][:, :, W - w:], f32(s["logit_diff"]).reshape(3, 4, w))
    if w < W and not np.isnan(g["patched_probs"][p][:, :, :W - w]).all():
        bad.append("cells outside pair %d are not NaN" % p)
    same("all-at-once %d" % p, g2["patched_probs"][p], f32(a["patched_probs"]))
    same("top ids %d" % p, g2["top_ids"][p], [t["id"] for t in a["top"]])
    same("top probs %d" % p, g2["top_probs"][p], f32([t["prob"] for t in a["top"]]))
    same("fixed source %d" % p, g3["patched_probs"][p].ravel(), f32(x["patched_probs"]))
    same("fixed source probs %d" % p, g3["source_probs"][p], f32(x["source_probs"]))
# the causal-tracing picture on the first pair: France's subject token at layer 0, the last
# position at the last layer carry Paris
s = g["patched_probs"][0, 0, :, :, 0]
if not (s[0, -2] > 0.5 and s[-1, -1] > 0.5 and s[0, -1] < 0.1 and g["baseline_probs"][0, 0] < 0.01):
    bad.append("the grid of France into Germany: %s" % s)
if bad:
    print(bad[:5], file=sys.stderr)
sys.exit(1 if bad else 0)
PY

# Patching a prompt into itself, and the last layer's output at every position.
L=$($PY -c "import json; print(json.load(open('$MODEL/config.json'))['num_hidden_layers'] - 1)")
cat >self.json <<JOB
{"model": "$MODEL", "dataset": {"path": "self.jsonl", "max_tokens": 64},
 "operations": [
   {"op": "activation_patch", "hooks": ["layers_input", "attentions_output", "mlps_output", "layers_output"]},
   {"op": "activation_patch", "source_field": "source", "sweep": true},
   {"op": "activation_patch", "source": "The capital of France is", "layers": [$L], "hooks": ["layers_output"]}],
 "batch_tokens": 64, "output": "self.h5"}
JOB
"$NNTERP" run self.json >/dev/null 2>err || bad "the self job: $(cat err)"
$PY - <<'PY' && ok "a prompt patched into itself (every hook, layer, position; and each alone) is unpatched" || bad "self-patching changed the result"
import sys, h5py, numpy as np
f = h5py.File("self.h5", "r")
g, g2 = f["activation_patch"], f["activation_patch_2"]
b = g["baseline_probs"][:]
ok = np.array_equal(g["patched_probs"][:], b) and np.array_equal(g["source_probs"][:], b)
grid = g2["patched_probs"][:]
for p in range(grid.shape[0]):
    cells = grid[p][~np.isnan(grid[p][..., 0])]
    ok &= cells.size > 0 and np.array_equal(cells, np.broadcast_to(b[p], cells.shape))
sys.exit(0 if ok else 1)
PY
$PY - <<'PY' && ok "layers_output of the last layer at every position gives the source's probabilities" || bad "the last layer's patch is not the source"
import sys, h5py, numpy as np
g = h5py.File("self.h5", "r")["activation_patch_3"]
sys.exit(0 if np.array_equal(g["patched_probs"][:], g["source_probs"][:]) else 1)
PY

mv out.h5 single.h5
layouts_and_resume job.json single.h5

# The CLI's store and its plot.
"$NNTERP" patch -m "$MODEL" --source "The capital of France is" --target "The capital of Germany is" \
  --sweep --targets Paris,Berlin -o cli.h5 >table 2>err && grep -q "layers_output: p('Paris')" table &&
  ok "nnterp patch --sweep prints the grid and writes -o" || bad "nnterp patch -o: $(cat err table | head -5)"
# nnterp plot: the job's sweep (every pair, every hook) and the CLI's, as a page and a picture.
"$NNTERP" plot single.h5 --prompt 0,1 -o grid.html 2>err && "$NNTERP" plot single.h5 --prompt 0,1 -o grid.png 2>>err &&
  "$NNTERP" plot cli.h5 -o cli.png 2>>err || bad "nnterp plot of a sweep: $(cat err)"
$PY - <<'PY' && ok "nnterp plot draws the sweep: a cell per (pair, hook, layer, position) with the store's probability, the PNG at twice the page's size" || bad "the sweep's plot"
import re, sys, h5py, numpy as np
g = h5py.File("single.h5", "r")["activation_patch"]
grid = g["patched_probs"][:2, :, :, :, 0]
page = open("grid.html", encoding="utf-8").read()
cells = re.findall(r'class="cell" data-row="(\d+)" data-rank="(\d+)" data-id="(-?\d+)" data-prob="([^"]+)"', page)
want = np.nan_to_num(grid, nan=0.0).astype(np.float32).ravel()
got = np.array([np.float32(c[3]) for c in cells], dtype=np.float32)
ok = len(cells) == grid.size and np.array_equal(np.sort(got), np.sort(want))
w, h = (float(x) for x in re.search(r'<svg[^>]* width="([\d.]+)" height="([\d.]+)"', page).groups())
try:
    from PIL import Image
    ok &= Image.open("grid.png").size == (round(2 * w), round(2 * h))
    ok &= Image.open("cli.png").size[0] > 0
except ImportError:
    print("no PIL: the PNG's size is not checked", file=sys.stderr)
sys.exit(0 if ok else 1)
PY
"$NNTERP" plot single.h5 --op activation_patch_2 -o x.png >out 2>err
[ $? -eq 1 ] && grep -q "no activation_patch sweep named activation_patch_2" err &&
  ok "nnterp plot --op names a group that is not a sweep: a clear error" || bad "plot --op activation_patch_2: $(cat err)"
finish test_patch
