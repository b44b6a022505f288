#!/usr/bin/env bash
# A Llama-3-8B-shaped BF16 checkpoint (16 GB, 4 shards) through nnterp on one 24 GB machine
# (docs/distributed.md, "A model larger than one process's memory"; figures in
# docs/benchmarks-mpi.md):
#   1. tools/make_random_checkpoint.py --preset llama3-8b writes it (once) to $BIG (default
#      /work/big/llama3-8b: never inside a repository);
#   2. nnterp inspect (headers only: its wall time and peak RSS);
#   3. nnterp plan --ranks 2 --stages 2 --compute bfloat16 for the job's tokens;
#   4. mpirun -np 2 nnterp run: 2 pipeline stages in bfloat16, layers_output of 4 layers stored in
#      bfloat16 and a logit lens, each rank's peak RSS measured by /usr/bin/time;
#   5. the same job on one process, one stage (STAGE1=0 skips it; STAGE1_THREADS its threads, default
#      1): the stores compared bit for bit;
#   6. (ONLY_LONG=1: this step alone) one prompt of about 1024, 2048 and 4096 tokens on one process (LONG=0 skips it, LONG_SIZES
#      picks them): peak RSS, to show memory linear in the prompt's length. LONG_LAYER (default
#      31) is the layer collected: the pass stops after it, so LONG_LAYER=1 measures the
#      activations' share in a minute (only layers 0-1 of the weights are touched).
# Prompts: N_PROMPTS (default 24) passages of the repository's docs of WORDS (default "70 200")
# words, about 130-400 tokens, and N_LONG (default 2) of 2,000+ tokens, through the Llama 3.1
# tokenizer of ../shared.
# Needs >= 20 GB available memory (checked first). PLAN=0 reuses OUT_DIR/plan.txt.
# Usage: bench/big_model.sh [OUT_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
BIG=${BIG:-/work/big/llama3-8b}
OUT=${1:-/work/big/run}
NNTERP=${NNTERP:-build/nnterp}
TOK=${TOK:-${NNTERP_SHARED:-../shared}/tokenizers/modern/llama3_1}
N_PROMPTS=${N_PROMPTS:-24}
N_LONG=${N_LONG:-2}
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
avail=$(free -g | awk '/^Mem:/ {print $7}')
echo "available memory: ${avail} GB"
[ "$avail" -ge 20 ] || { echo "bench/big_model.sh: needs >= 20 GB available, have $avail" >&2; exit 1; }
mkdir -p "$OUT"
if [ ! -f "$BIG/model.safetensors.index.json" ]; then
  /usr/bin/python3 tools/make_random_checkpoint.py --out "$BIG" --preset llama3-8b || exit 1
fi
du -sh "$BIG"

/usr/bin/python3 - "$OUT" "$N_PROMPTS" "$N_LONG" ${WORDS:-70 200} <<'PY'
import glob, json, random, sys
out, n, n_long, w0, w1 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
words = " ".join(open(f).read() for f in sorted(glob.glob("docs/*.md")) + ["README.md"]).split()
rng = random.Random(0)
with open(f"{out}/prompts.jsonl", "w") as f:
    for i in range(n + n_long):
        # about 1.3 tokens a word: the long ones 2,000+ tokens
        k = rng.randint(1600, 1800) if i < n_long else rng.randint(w0, w1)
        s = rng.randrange(0, len(words) - k)
        f.write(json.dumps({"text": " ".join(words[s:s + k])}) + "\n")
PY
/usr/bin/python3 - "$OUT" "$BIG" "$TOK" "${LONG_LAYER:-31}" <<'PY'
import json, sys
out, big, tok, long_layer = sys.argv[1:]
base = {"model": big, "tokenizer": tok,
        "dataset": {"path": f"{out}/prompts.jsonl", "field": "text", "max_tokens": 4096,
                    "too_long": "truncate"},
        "operations": [{"op": "collect", "hooks": ["layers_output"], "layers": "0,10,20,31",
                        "positions": "all"},
                       {"op": "logit_lens", "top_k": 5, "positions": "last"}],
        "dtype": "bfloat16", "compute": "bfloat16", "batch_tokens": 4096}
for name, store, extra in (("job2", "pipe.h5", {"parallel": {"pipeline_stages": 2}}),
                           ("job1", "one.h5", {})):
    j = dict(base, output=f"{out}/{store}", **extra)
    json.dump(j, open(f"{out}/{name}.json", "w"), indent=1)
for n in (1024, 2048, 4096):
    words = " ".join(open("README.md").read().split() * 20).split()
    open(f"{out}/long{n}.jsonl", "w").write(json.dumps({"text": " ".join(words[:int(n * 0.8)])}) + "\n")
    j = dict(base, output=f"{out}/long{n}.h5", dataset=dict(base["dataset"], path=f"{out}/long{n}.jsonl"),
             operations=[{"op": "collect", "hooks": ["layers_output"], "layers": long_layer, "positions": "last"}])
    json.dump(j, open(f"{out}/long{n}.json", "w"), indent=1)
PY
rm -f "$OUT"/*.h5 "$OUT"/*.h5.partial "$OUT"/*.ledger
if [ "${ONLY_LONG:-0}" = 1 ]; then STAGE1=0; fi  # ONLY_LONG=1: step 6 alone
if [ "${ONLY_LONG:-0}" != 1 ]; then

echo "== inspect (headers only)"
/usr/bin/time -f "inspect: %e s wall, peak RSS %M kB" "$NNTERP" inspect -m "$BIG" 2>&1 | grep -E "weights|stage|compute|inspect:"

echo "== plan"
[ "${PLAN:-1}" = 1 ] && "$NNTERP" plan -m "$BIG" --ranks 2 --stages 2 --compute bfloat16 --batch-tokens 4096 \
  --prompt-tokens 256 --logits none --lens last --measure-layers 2 2>&1 | tee "$OUT/plan.txt"
[ "${PLAN:-1}" = 1 ] || cat "$OUT/plan.txt"

echo "== mpirun -np 2, 2 pipeline stages"
t0=$(date +%s)
# Each rank under /usr/bin/time, from a script of its own (no quoting of the rank variable here).
cat >"$OUT/rank.sh" <<'SH'
r=${OMPI_COMM_WORLD_RANK:-0}
exec /usr/bin/time -f "rank $r: peak RSS %M kB, %e s" -o "$1/rss2.$r" "$2" run "$1/job2.json"
SH
mpirun -np 2 bash "$OUT/rank.sh" "$OUT" "$NNTERP" 2>&1 | tail -4
echo "wall $(( $(date +%s) - t0 )) s"
cat "$OUT"/rss2.*
/usr/bin/python3 -c "
import h5py, sys
f = h5py.File('$OUT/pipe.h5'); o = f['prompts/token_offsets'][:]
print('prompts', len(o) - 1, 'tokens', o[-1], 'longest', max(o[1:] - o[:-1]), 'compute', f.attrs['compute'], '/', f.attrs['compute_kernel'])"

fi # ONLY_LONG
if [ "${STAGE1:-1}" = 1 ]; then
  echo "== one process, one stage"
  # STAGE1_THREADS (default 1): the one process's threads; the store does not depend on them
  OPENBLAS_NUM_THREADS=${STAGE1_THREADS:-1} /usr/bin/time -f "one stage: peak RSS %M kB, %e s" "$NNTERP" run "$OUT/job1.json" 2>&1 | tail -3
  /usr/bin/python3 - "$OUT/pipe.h5" "$OUT/one.h5" <<'PY'
import sys, h5py
a, b = h5py.File(sys.argv[1]), h5py.File(sys.argv[2])
names = []
a.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
bad = [n for n in names if n.startswith(("activations", "logit_lens", "prompts")) and a[n][()].tobytes() != b[n][()].tobytes()]
print("2-stage vs 1-stage store:", "bitwise identical" if not bad else f"DIFFER {bad}", f"({len(names)} datasets)")
PY
fi
if [ "${LONG:-1}" = 1 ]; then
  for n in ${LONG_SIZES:-1024 2048 4096}; do
    echo "== one prompt of about $n tokens, one process"
    /usr/bin/time -f "long $n: peak RSS %M kB, %e s" "$NNTERP" run "$OUT/long$n.json" 2>&1 | tail -2
    /usr/bin/python3 -c "import h5py; print('tokens', h5py.File('$OUT/long$n.h5')['prompts/token_offsets'][-1])"
  done
fi
