#!/usr/bin/env bash
# Progress of `nnterp run` when stderr is not a terminal (a batch system's log): a plain line of
# prompts, tokens/s, ETA and shards every --progress-every seconds and a last one; none for a job
# shorter than the interval (a short job's log stays as it was); none at all with --quiet; the
# store identical whatever is printed.
set -u
NNTERP=$1
. "$(dirname "$0")/lib.sh"
need_shared test_progress models/stories260K
need_python test_progress h5py numpy
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T"
/usr/bin/python3 - <<'PY'
import json, random
random.seed(5)
w = "the dog cat park ball tree happy sad big little red saw went played with a and to".split()
with open("p.jsonl", "w") as f:
    for i in range(200):
        f.write(json.dumps({"text": "Lily " + " ".join(random.choice(w) for _ in range(12))}) + "\n")
PY
job() { # output
  cat >"job_$1.json" <<JOB
{"model": "$S/models/stories260K/hf", "dataset": {"path": "p.jsonl", "max_tokens": 32},
 "operations": [{"op": "collect", "hooks": ["layers_output"], "layers": "all"}],
 "batch_tokens": 32, "shard_batches": 2, "output": "$1.h5"}
JOB
}
for o in quiet plain default; do job $o; done
"$NNTERP" run job_plain.json --progress-every 0.001 >out 2>err_plain || bad "plain run: $(cat err_plain)"
n=$(grep -c "^nnterp: [0-9]*/200 prompts, [0-9]* tokens/s, ETA [0-9]*m[0-9][0-9]s, [0-9]*/[0-9]* shards$" err_plain)
last=$(grep "prompts," err_plain | tail -1)
if [ "$n" -ge 2 ] && ! grep -q $'\r' err_plain && [[ $last == "nnterp: 200/200 prompts,"*", 100/100 shards" ]]; then
  ok "stderr not a terminal, --progress-every 0.001: $n plain lines, the last '$last'"
else bad "plain progress: $n lines, last '$last': $(head -3 err_plain)"; fi
"$NNTERP" run job_default.json >out 2>err_default || bad "default run: $(cat err_default)"
grep -q "prompts," err_default && bad "a job shorter than 30 s printed progress: $(cat err_default)" ||
  ok "a job shorter than the default 30 s interval prints no progress line"
"$NNTERP" run job_quiet.json --quiet --progress-every 0.001 >out 2>err_quiet || bad "quiet run: $(cat err_quiet)"
grep -q "prompts," err_quiet && bad "--quiet printed progress: $(cat err_quiet)" || ok "--quiet: no progress line"
/usr/bin/python3 - <<'PY' && ok "the three stores are identical" || bad "stores differ"
import sys, h5py, numpy as np
fs = [h5py.File(n + ".h5", "r") for n in ("quiet", "plain", "default")]
bad = []
fs[0].visititems(lambda n, o: bad.extend(n for g in fs[1:] if isinstance(o, h5py.Dataset) and not np.array_equal(o[:], g[n][:])))
sys.exit(1 if bad else 0)
PY
"$NNTERP" run job_quiet.json --progress-every 0 >out 2>err; [ $? -eq 2 ] && grep -q "progress-every takes seconds" err &&
  ok "--progress-every 0: a usage error" || bad "--progress-every 0: $(cat err)"
finish test_progress
