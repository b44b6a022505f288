#!/usr/bin/env bash
# The main job on the bundled model: examples/quickstart.json (collect, logit lens, target
# probabilities, patchscope, steering, generation) into quickstart.h5, under mpirun with 2 ranks
# where Open MPI is present; then a summary of the store and the logit lens of one prompt.
# Usage: tools/quickstart.sh [MODEL]   (default: models/demo)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-models/demo}
NNTERP=build/nnterp
[ -x "$NNTERP" ] || { echo "quickstart: build first (tools/setup.sh)" >&2; exit 1; }
[ -e "$MODEL/config.json" ] || [ -f "$MODEL" ] || { echo "quickstart: no model at $MODEL" >&2; exit 1; }
JOB=examples/quickstart.json
if [ "$MODEL" != models/demo ]; then
  JOB=$(mktemp --suffix=.json)
  trap 'rm -f "$JOB"' EXIT
  sed "s|\"models/demo\"|\"$MODEL\"|" examples/quickstart.json >"$JOB"
fi
rm -f quickstart.h5 quickstart.h5.partial quickstart.h5.partial.ledger

echo "== nnterp run $JOB"
if command -v mpirun >/dev/null; then
  [ "$(id -u)" -eq 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  mpirun --oversubscribe -np 2 "$NNTERP" run "$JOB"
else
  "$NNTERP" run "$JOB"
fi

echo
echo "== what quickstart.h5 holds"
if /usr/bin/python3 -c 'import h5py' 2>/dev/null; then
  /usr/bin/python3 - <<'PY'
import json, h5py, numpy as np
f = h5py.File("quickstart.h5", "r")
offs, text, toff = f["prompts/token_offsets"][:], f["prompts/text"][:].tobytes(), f["prompts/text_offsets"][:]
names = json.loads(f.attrs["target_names"])
x = f["activations/layers_output/0"]
print(f"{len(offs) - 1} prompts, {offs[-1]} tokens; activations/layers_output/<layer> is {x.dtype} {x.shape}")
lens, probs = f["logit_lens/target_probs"][:], f["target_probs/probs"][:]
layers = f["logit_lens/layers"][:]
for p in range(min(6, len(offs) - 1)):
    prompt = text[toff[p]:toff[p + 1]].decode()
    first = next((int(layers[l]) for l in range(len(layers)) if lens[p, l].argmax() == 0 and lens[p, l, 0] > 0.3), None)
    print(f"  {prompt!r:36} P({names[0]}) = {probs[p, 0]:.2f}"
          + (f", first dominant at layer {first}" if first is not None else ""))
PY
fi

echo
echo "== nnterp lens -m $MODEL -p \"The capital of France is\" --plot quickstart-lens.png"
"$NNTERP" lens -m "$MODEL" -p "The capital of France is" -k 3 --plot quickstart-lens.png
