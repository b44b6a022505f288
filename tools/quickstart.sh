#!/usr/bin/env bash
# Runs nnterp on a real trained model: stories260K (llama2.c, from ../shared/models). Until the
# project's own bundled model lands (issue: "A bundled model of the project's own"), this is the
# default the README's first command uses.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-../shared/models/stories260K/stories260K.bin}
if [ ! -e "$MODEL" ]; then
  echo "quickstart: $MODEL not found; pass a Hugging Face checkpoint directory or llama2.c .bin" >&2
  exit 1
fi
NNTERP=build/nnterp
echo "== nnterp inspect -m $MODEL"
$NNTERP inspect -m "$MODEL"
echo
echo "== greedy generation from BOS (token ids; text arrives with tokenizer support)"
$NNTERP generate -m "$MODEL" --ids 1 -n 48 --no-eos
echo
echo "== trace every layer's residual stream and attention for two prompts -> quickstart.h5"
$NNTERP trace -m "$MODEL" --ids "1 403 407 261 378" --ids "1 432 383" \
  --save layers_output,attention_probabilities,next_token_probs -o quickstart.h5
if /usr/bin/python3 -c 'import h5py' 2>/dev/null; then
  /usr/bin/python3 - <<'PY'
import h5py
with h5py.File("quickstart.h5", "r") as f:
    offs = f["prompts/token_offsets"][:]
    x = f["activations/layers_output/4"][:]          # float32 [N, d]: every token, layer 4
    p = f["activations/next_token_probs"][:]        # [prompts, vocab]
    print(f"quickstart.h5: {len(offs) - 1} prompts, {offs[-1]} tokens; layers_output/4 {x.shape};"
          f" next-token argmax per prompt {p.argmax(axis=1).tolist()}")
PY
fi
