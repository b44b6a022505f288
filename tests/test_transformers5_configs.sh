#!/usr/bin/env bash
# The 23 tiny checkpoints of ../shared/reference with config.json as transformers 5.24 writes it
# (tests/reference/transformers5_configs/<arch>.json: rope_parameters instead of rope_theta /
# rope_scaling / partial_rotary_factor, layer_types, sliding_window 0, qkv_bias; see
# docs/reference-drift.md) must give the 4.47.1 references, every hook point, as the original
# configs do: the weights are the same, only the way the config is written changed.
set -u
TEST_REFERENCE=$1
. "$(dirname "$0")/lib.sh"
need_shared test_transformers5_configs reference/tiny
CONFIGS=$(dirname "$0")/reference/transformers5_configs
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
for cfg in "$CONFIGS"/*.json; do
  arch=$(basename "$cfg" .json)
  src=$S/reference/tiny/$arch/model-f32
  mkdir "$T/$arch"
  cp "$cfg" "$T/$arch/config.json"
  cp "$src/generation_config.json" "$T/$arch/"
  ln -s "$(cd "$src" && pwd)/model.safetensors" "$T/$arch/model.safetensors"
  if "$TEST_REFERENCE" "$S/reference/tiny/$arch/ref-f32" --model "$T/$arch" >"$T/out" 2>&1; then
    ok "$arch with its transformers 5 config: $(tail -1 "$T/out")"
  else
    bad "$arch with its transformers 5 config: $(grep -m1 FAIL "$T/out")"
  fi
done
finish test_transformers5_configs
