#!/usr/bin/env bash
# The bundled model as a semantic check of the toolkit (models/demo, a model trained by
# tools/demo_model): the logit lens finds the answer and its probability rises over the last
# layers; patchscope reads a word back out of nnterp's repeat prompt; steering along the
# French-minus-English direction moves generations toward French.
set -u
NNTERP=$1
. "$(dirname "$0")/lib.sh"
ROOT=$2
MODEL=$ROOT/models/demo
[ -f "$MODEL/model.safetensors" ] || { echo "SKIPPED: no bundled model at $MODEL"; exit 77; }
need_python test_demo_semantics h5py
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

cat >"$T/facts.jsonl" <<'JSONL'
{"text": "The capital of France is", "targets": {"answer": "Paris"}}
{"text": "The capital of Germany is", "targets": {"answer": "Berlin"}}
{"text": "The capital of Italy is", "targets": {"answer": "Rome"}}
{"text": "In France, people speak", "targets": {"answer": "French"}}
{"text": "The dog says", "targets": {"answer": "woof"}}
JSONL
cat >"$T/job.json" <<JOB
{"model": "$MODEL", "dataset": {"path": "$T/facts.jsonl"},
 "operations": [{"op": "logit_lens", "top_k": 1, "targets": true}, {"op": "target_probs"}],
 "output": "$T/lens.h5"}
JOB
"$NNTERP" run "$T/job.json" >/dev/null 2>"$T/err" || bad "lens job: $(cat "$T/err")"
/usr/bin/python3 - "$T/lens.h5" <<'PY' && ok "the lens's answer probability rises over the last layers and wins at the last" || bad "lens answers"
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
p = f["logit_lens/target_probs"][:, :, 0]          # [prompts, layers]
final = f["target_probs/probs"][:, 0]
for i, row in enumerate(p):
    print("  prompt %d: P(answer) by layer %s" % (i, np.round(row, 3)))
    assert row[-1] > row[-3], (i, row)                # rises over the last layers
    assert row[-1] > 0.5, (i, row)                    # and wins at the end
assert np.allclose(p[:, -1], final, atol=1e-6)      # the last layer's lens is the model's answer
PY

# Patchscope: a word's last-token layers_output.l, patched into the last position of nnterp's
# repeat prompt, is decoded as the word itself or its kin (top-1) at some layer.
for case_ in "France| France| Paris| French| français" "Paris| Paris| France" "dog| dog| woof" "red| red"; do
  src=${case_%%|*}
  want="|${case_#*|}|"
  out=$("$NNTERP" patchscope -m "$MODEL" --source "$src" -k 1 2>&1)
  tops=$(sed -n "s/^  layer *[0-9]*  '\(.*\)' *[0-9.]*\$/\1/p" <<<"$out")
  hits=""
  while IFS= read -r t; do
    case "$want" in *"|$t|"*) hits="$hits '$t'" ;; esac
  done <<<"$tops"
  if [ -n "$hits" ]; then
    ok "patchscope of '$src' into the repeat prompt decodes$hits"
  else bad "patchscope of '$src': top-1 per layer $(tr '\n' '/' <<<"$tops")"; fi
done

french() { grep -oiwE "le|la|les|l|est|de|du|des|un|une|chat|chien|vache|capitale|ciel|bleu|noir|fait|et|combien|font|il|elle|grand|petit|rouge|vert|blanc|mot|dit|au|à" <<<"$1" | wc -l; }
CONTRAST=("Le chat est noir. Le chien dit ouaf. La capitale de la France est Paris. Le ciel est bleu."
          "The cat is black. The dog says woof. The capital of France is Paris. The sky is blue.")
for prompt in "The cat is" "The sky is" "The dog says"; do
  out=$("$NNTERP" steer -m "$MODEL" -p "$prompt" --contrast "${CONTRAST[@]}" --layers 1 --factor 2 -n 12 2>&1)
  base=$(sed -n 's/^baseline: //p' <<<"$out"); steered=$(sed -n 's/^steered:  //p' <<<"$out")
  if [ "$(french "$steered")" -gt "$(french "$base")" ]; then
    ok "steering toward French on '$prompt': $steered"
  else bad "steering on '$prompt': baseline $base / steered $steered"; fi
done
finish test_demo_semantics
