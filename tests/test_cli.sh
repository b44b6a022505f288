#!/usr/bin/env bash
# The command line end to end: inspect, generate, trace (read back with h5py, as a user would, and
# compared with the Hugging Face reference dump), the exit codes of bad input, and the option
# table (every command takes the options its row of cli_commands names, and no other).
set -u
NNTERP=$1
. "$(dirname "$0")/lib.sh"
need_shared test_cli reference
need_python test_cli h5py numpy
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
expect() { # name, expected exit code, stderr needle, command...
  local name=$1 code=$2 needle=$3
  shift 3
  "$@" >"$T/out" 2>"$T/err"
  local rc=$?
  if [ "$rc" -eq "$code" ] && grep -qF -- "$needle" "$T/err" "$T/out"; then ok "$name"; else
    bad "$name (exit $rc, wanted $code; output: $(cat "$T/out" "$T/err" | head -3))"
  fi
}

GPT2=$S/reference/tiny/gpt2/model-f32
LLAMA=$S/reference/tiny/llama_gqa/model-f32
STORIES=$S/models/stories260K

expect "inspect gpt2" 0 "GPT-2 (model_type gpt2)" "$NNTERP" inspect -m "$GPT2"
expect "inspect lists hook points" 0 "attention_probabilities.i" "$NNTERP" inspect -m "$LLAMA"
expect "inspect llama2.c bin" 0 "adjacent pairs" "$NNTERP" inspect -m "$STORIES/stories260K.bin"
# The families of 2025-26 (tests/reference): inspect names each deviation.
NEW=$(dirname "$0")/reference
expect "inspect gemma3 sliding layers" 0 "on layers 0, 1, 3, 4; the others are global" \
  "$NNTERP" inspect -m "$NEW/gemma3_text/model-f32"
expect "inspect gemma3 local rotary" 0 "sliding-window layers rotate with theta 10000, unscaled" \
  "$NNTERP" inspect -m "$NEW/gemma3_text/model-f32"
expect "inspect qwen3 q/k norm" 0 "q and k over each head's head_dim" \
  "$NNTERP" inspect -m "$NEW/qwen3/model-f32"
expect "inspect olmo2 block" 0 "no pre-norm" "$NNTERP" inspect -m "$NEW/olmo2/model-f32"
expect "inspect smollm3 NoPE" 0 "NoPE layers      1, 3" "$NNTERP" inspect -m "$NEW/smollm3/model-f32"
expect "inspect granite residual" 0 "x += branch * 0.22" "$NNTERP" inspect -m "$NEW/granite/model-f32"
expect "inspect phi4 longrope" 0 "longrope scaling" "$NNTERP" inspect -m "$NEW/phi4_mini/model-f32"
expect "inspect qwen3_moe dense layers" 0 "(3 of 4 layers)" \
  "$NNTERP" inspect -m "$NEW/qwen3_moe/model-f32"
expect "inspect gpt-oss sinks" 0 "attention_probabilities rows sum to 1 - p(sink)" \
  "$NNTERP" inspect -m "$NEW/gpt_oss/model-f32"
expect "inspect gpt-oss yarn" 0 "cos and sin x 1.34657" "$NNTERP" inspect -m "$NEW/gpt_oss/model-f32"
expect "inspect gpt-oss MXFP4" 0 "MXFP4 stacks dequantized exactly" \
  "$NNTERP" inspect -m "$NEW/gpt_oss/model-mxfp4"
expect "inspect deepseek latent attention" 0 "[latent 16 | rotary key 8] = kv_a(x)" \
  "$NNTERP" inspect -m "$NEW/deepseek_v3/model-f32"
expect "inspect deepseek router" 0 "top-2 of 4 groups" "$NNTERP" inspect -m "$NEW/deepseek_v3/model-f32"
expect "inspect deepseek dense layers" 0 "dense layers     0..0" \
  "$NNTERP" inspect -m "$NEW/deepseek_v3/model-f32"
expect "inspect glm4 sandwich" 0 "sequential with sandwich norms" \
  "$NNTERP" inspect -m "$NEW/glm4/model-f32"
expect "--help" 0 "usage: nnterp trace" "$NNTERP" trace --help

# Greedy generation from BOS reproduces the published story's first 32 ids.
"$NNTERP" generate -m "$STORIES/stories260K.bin" --ids 1 -n 32 --no-eos --print-ids >"$T/gen" 2>"$T/err"
want=$(tr -s ' \n' ' ' <"$STORIES/greedy_256_ids.txt" | cut -d' ' -f1-32)
if [ "$(sed -n 2p "$T/gen")" = "$want" ] && [ "$(head -c 15 "$T/gen")" = "Once upon a tim" ]; then ok "generate greedy 32 ids"; else bad "generate: $(cat "$T/gen" "$T/err")"; fi
"$NNTERP" generate -m "$STORIES/hf" --ids 1 -n 20 --temperature 0.8 --top-p 0.9 --seed 7 >"$T/s1" 2>/dev/null
"$NNTERP" generate -m "$STORIES/hf" --ids 1 -n 20 --temperature 0.8 --top-p 0.9 --seed 7 >"$T/s2" 2>/dev/null
if [ -s "$T/s1" ] && cmp -s "$T/s1" "$T/s2"; then ok "sampling is reproducible with a seed"; else bad "sampling with a seed"; fi

# Text: tokenize matches the Hugging Face test vectors; both forms of stories260K agree on text.
TOK=$S/tokenizers
out=$("$NNTERP" tokenize -m "$TOK/llama2" --ids "Hello world" 2>&1)
[ "$out" = "1 15043 3186" ] && ok "tokenize --ids (Llama 2, BOS added)" || bad "tokenize llama2: $out"
out=$("$NNTERP" tokenize -m "$TOK/llama2" --ids --no-special "Hello world" 2>&1)
[ "$out" = "15043 3186" ] && ok "tokenize --no-special" || bad "tokenize --no-special: $out"
out=$("$NNTERP" tokenize -m "$TOK/gpt2" --ids -- "Hello, world!" 2>&1)
[ "$out" = "15496 11 995 0" ] && ok "tokenize GPT-2" || bad "tokenize gpt2: $out"
expect "tokenize shows pieces" 0 "▁Hello" "$NNTERP" tokenize -m "$TOK/llama2" "Hello"
out=$("$NNTERP" tokenize -m "$STORIES/stories260K.bin" --ids "Once upon a time" 2>&1)
[ "$out" = "1 403 407 261 378" ] && ok "tokenize finds tok512.bin beside a llama2.c checkpoint" || bad "tokenize .bin: $out"
"$NNTERP" generate -m "$STORIES/stories260K.bin" -p "Once upon a time" -n 40 >"$T/g1" 2>"$T/err"
"$NNTERP" generate -m "$STORIES/hf" -p "Once upon a time" -n 40 >"$T/g2" 2>>"$T/err"
if grep -q "there was a little girl named Lily" "$T/g1" && cmp -s "$T/g1" "$T/g2"; then ok "generate -p: .bin and HF tell the same story"; else bad "generate -p: $(cat "$T/g1" "$T/g2" "$T/err")"; fi
"$NNTERP" generate -m "$STORIES/hf" -p "Once upon a time" -n 12 --print-ids >"$T/g3" 2>/dev/null
[ "$(sed -n 2p "$T/g3")" = "$(tr -s ' \n' ' ' <"$STORIES/greedy_256_ids.txt" | cut -d' ' -f5-16)" ] && ok "generate --print-ids" || bad "generate --print-ids: $(cat "$T/g3")"
"$NNTERP" trace -m "$STORIES/hf" -p "Once upon a time" -p "Lily" --save layers_output --layers -1 -o "$T/text.h5" 2>/dev/null
/usr/bin/python3 -c "
import h5py,sys; f=h5py.File('$T/text.h5','r')
sys.exit(0 if list(f['prompts/token_offsets'][:])==[0,5,7] and list(f['tokens/ids'][:5])==[1,403,407,261,378] else 1)" \
  && ok "trace -p text prompts (BOS added)" || bad "trace -p"

# trace: the batch case of the reference, every hook point, read back with h5py.
REF=$S/reference/tiny/llama_gqa/ref-f32
"$NNTERP" trace -m "$LLAMA" --ids "$(/usr/bin/python3 -c "
import json; c=[c for c in json.load(open('$REF/manifest.json'))['cases'] if c['name']=='batch3_len13_24_1'][0]
print(' '.join(map(str, c['input_ids'][0][:c['lengths'][0]])))")" \
  --ids "$(/usr/bin/python3 -c "
import json; c=[c for c in json.load(open('$REF/manifest.json'))['cases'] if c['name']=='batch3_len13_24_1'][0]
print(' '.join(map(str, c['input_ids'][1][:c['lengths'][1]])))")" \
  --save token_embeddings,layers_input,attentions_input,attention_probabilities,attentions_output,mlps_input,mlps_output,layers_output,ln_final,logits,next_token_probs \
  -o "$T/trace.h5" 2>"$T/err"
if [ $? -eq 0 ] && [ -f "$T/trace.h5" ] && [ ! -e "$T/trace.h5.partial" ]; then ok "trace writes the store"; else bad "trace: $(cat "$T/err")"; fi
if /usr/bin/python3 - "$T/trace.h5" "$REF" <<'PY'
import json, sys, h5py, numpy as np
path, ref = sys.argv[1], sys.argv[2]
man = json.load(open(ref + "/manifest.json"))
case = [c for c in man["cases"] if c["name"] == "batch3_len13_24_1"][0]
f = h5py.File(path, "r")
offs = f["prompts/token_offsets"][:]
assert list(offs) == [0, 13, 37], offs
assert f.attrs["format"] == "nnterp-trace"
assert json.loads(f.attrs["model_config"])["model_type"] == "llama"
worst = 0.0
for name, t in case["tensors"].items():
    if name.startswith("logit_lens"):
        continue
    r = np.fromfile(ref + "/" + t["file"], dtype="<f4").reshape(t["shape"])
    hook, _, layer = name.partition(".")
    for b in range(2):
        n = case["lengths"][b]
        if hook == "attention_probabilities":
            ours, want = f[f"activations/{hook}/{layer}/{b}"][:], r[b, :, :n, :n]
        else:
            key = f"activations/{hook}/{layer}" if layer else f"activations/{hook}"
            ours, want = f[key][offs[b]:offs[b + 1]], r[b, :n]
        d = float(np.abs(ours - want).max())
        worst = max(worst, d)
        assert d < 1e-4, (name, b, d)
# layers_output.i == layers_input.(i+1) in the store too
assert np.array_equal(f["activations/layers_output/0"][:], f["activations/layers_input/1"][:])
p = f["activations/next_token_probs"][:]
assert p.shape == (2, 512) and abs(p.sum(axis=1) - 1).max() < 1e-5
print("trace store matches the reference, max abs diff %.3g" % worst)
PY
then ok "trace store equals the reference (h5py)"; else bad "trace store vs reference"; fi

# Early exit: only layer 0 requested; the store holds exactly that.
"$NNTERP" trace -m "$GPT2" --ids "5 6 7" --save layers_output --layers 0 -o "$T/early.h5" 2>/dev/null
if /usr/bin/python3 -c "
import h5py,sys; f=h5py.File('$T/early.h5','r'); k=list(f['activations/layers_output'].keys())
sys.exit(0 if k==['0'] and f['activations/layers_output/0'].shape==(3,64) else 1)"; then ok "trace --layers 0"; else bad "trace --layers 0"; fi

# The toolkit commands on the trained stories260K.
Q="Once upon a time, there was a little girl named"
"$NNTERP" lens -m "$STORIES/hf" -p "$Q" -k 3 -o "$T/lens.h5" >"$T/lens" 2>"$T/err"
if [ $? -eq 0 ] && grep -q "layer   4  ' Lily'" "$T/lens"; then ok "lens: the answer is top-1 at the last layer"; else bad "lens: $(cat "$T/lens" "$T/err")"; fi
/usr/bin/python3 -c "
import h5py,sys; f=h5py.File('$T/lens.h5','r'); sys.exit(0 if f['lens/top_ids'].shape==(5,1,3) and f['lens/top_ids'][4,0,0]==317 else 1)" \
  && ok "lens -o stores ids and probabilities" || bad "lens -o"
expect "patchscope" 0 "layer   4" "$NNTERP" patchscope -m "$STORIES/hf" --source "Lily" --layers 3:5 -k 2 --generate 4
printf '%s\n' '{"prompt": "'"$Q"'", "targets": {"lily": ["Lily"], "tom": "Tom"}}' >"$T/p.jsonl"
out=$("$NNTERP" probs -m "$STORIES/hf" -f "$T/p.jsonl" 2>&1)
echo "$out" | /usr/bin/python3 -c "
import json,sys; r=json.loads(sys.stdin.readline()); sys.exit(0 if r['probs']['lily']>0.9 and r['tokens']['lily']==[438,317] else 1)" \
  && ok "probs: P(Lily) > 0.9 over the first tokens of 'Lily' and ' Lily'" || bad "probs: $out"
expect "steer --contrast" 0 "steered:" "$NNTERP" steer -m "$STORIES/hf" -p "Once upon a time" --contrast "The dog barked." "The girl sang." --layers 3 --factor 2 -n 8
/usr/bin/python3 -c "import numpy as np; np.save('$T/v.npy', np.zeros(64, np.float32)); np.save('$T/v3.npy', np.zeros(3, np.float32)); np.save('$T/vi.npy', np.zeros(64, np.int32))"
"$NNTERP" steer -m "$STORIES/hf" -p "Once upon a time" --vector "$T/v.npy" --layers all --factor 5 -n 12 >"$T/st" 2>&1 &&
  grep -q '^baseline: .' "$T/st" && grep -q '^steered: ' "$T/st" &&
  [ "$(sed -n 1p "$T/st" | cut -c11-)" = "$(sed -n 2p "$T/st" | cut -c11-)" ] && ok "steering with a zero vector changes nothing" || bad "zero steer: $(cat "$T/st")"
expect "steer: wrong vector length" 1 "the vector has 3 values, the model's d_model is 64" "$NNTERP" steer -m "$STORIES/hf" -p "x" --vector "$T/v3.npy" --layers 1 --factor 1
expect "steer: wrong dtype" 1 "dtype '<i4' is not supported" "$NNTERP" steer -m "$STORIES/hf" -p "x" --vector "$T/vi.npy" --layers 1 --factor 1
printf 'not numpy' >"$T/bad.npy"
expect "steer: malformed npy" 1 "bad magic" "$NNTERP" steer -m "$STORIES/hf" -p "x" --vector "$T/bad.npy" --layers 1 --factor 1
expect "lens: layer out of range" 1 "layer 9 is out of range" "$NNTERP" lens -m "$STORIES/hf" -p "x" --layers 9
expect "patchscope: index outside the target" 1 "index_to_patch 40 is outside the target" "$NNTERP" patchscope -m "$STORIES/hf" --source "Lily" --index 40
expect "lens: empty prompt" 1 "encodes to no tokens" "$NNTERP" lens -m "$STORIES/hf" -p "" --no-special
printf '{"prompt": 3}\n' >"$T/bad.jsonl"
expect "probs: bad line" 1 "bad.jsonl:1: field 'prompt' missing or not a string" "$NNTERP" probs -m "$STORIES/hf" -f "$T/bad.jsonl"

# Bad input: clear errors, non-zero exits, no output file left behind.
expect "unknown command" 2 "unknown command 'trce'" "$NNTERP" trce
expect "missing -m" 2 "-m MODEL is required" "$NNTERP" inspect
expect "missing model" 1 "no such file or directory" "$NNTERP" inspect -m "$T/nope"
expect "token id out of range" 1 "token id 999 at position 1" "$NNTERP" trace -m "$GPT2" --ids "1 999" --save logits -o "$T/x.h5"
[ ! -e "$T/x.h5" ] && [ ! -e "$T/x.h5.partial" ] && ok "failed trace leaves no file" || bad "failed trace left a file"
expect "layer out of range" 1 "layer 7 is out of range" "$NNTERP" trace -m "$GPT2" --ids "1 2" --save layers_output.7 -o "$T/x.h5"
expect "bad layer spec" 1 "layer spec '0:99'" "$NNTERP" trace -m "$GPT2" --ids "1 2" --save layers_output --layers 0:99 -o "$T/x.h5"
expect "unknown hook" 1 "unknown hook point 'layer_output'" "$NNTERP" trace -m "$GPT2" --ids "1 2" --save layer_output -o "$T/x.h5"
expect "bad ids" 1 "'x' is not a token id" "$NNTERP" generate -m "$GPT2" --ids "1 x"
expect "prompt longer than the context" 1 "exceeds the model's context of 64" "$NNTERP" generate -m "$GPT2" --ids "$(seq -s ' ' 1 65)"
expect "bad -n" 2 "-n takes a non-negative integer" "$NNTERP" generate -m "$GPT2" --ids 1 -n x
expect "unwritable output" 1 "cannot create the output file" "$NNTERP" trace -m "$GPT2" --ids "1 2" --save logits -o /nonexistent/x.h5
expect "text prompt without a tokenizer" 1 "no tokenizer.json" "$NNTERP" generate -m "$GPT2" -p "hello"
expect "tokenize without TEXT" 2 "TEXT is required" "$NNTERP" tokenize -m "$S/tokenizers/gpt2"

# The option table (cli/options.c, cli/main.c): a flag a command does not take is a usage error
# naming the commands that take it; every command's --help lists what it takes; every flag its
# usage text mentions, and every option of its row, is accepted.
expect "inspect --factor: a usage error naming steer" 2 \
  "nnterp inspect: unknown option --factor (an option of steer) (see nnterp inspect --help)" \
  "$NNTERP" inspect -m "$GPT2" --factor 3
expect "an option no command takes" 2 "nnterp lens: unknown option --bogus (see nnterp lens --help)" \
  "$NNTERP" lens -m "$GPT2" -p x --bogus
expect "a stray argument" 2 "nnterp generate: unexpected argument 'x'" "$NNTERP" generate -m "$GPT2" x
expect "run rejects a foreign flag" 2 "nnterp run: unknown option --layers (an option of" \
  "$NNTERP" run job.json --layers 3
expect "plan rejects a foreign flag" 2 "nnterp plan: unknown option -p (an option of" \
  "$NNTERP" plan -m "$GPT2" -p x
expect "plot rejects a foreign flag" 2 "nnterp plot: unknown option --factor (an option of steer)" \
  "$NNTERP" plot s.h5 -o x.png --factor 2
expect "plot --feature rejects a foreign flag" 2 "nnterp plot --feature: unknown option --title (an option of plot)" \
  "$NNTERP" plot s.h5 --feature 1 -o x.png --title t
expect "sae --sae with another command" 2 "unknown option --sae (an option of plot --feature, sae)" \
  "$NNTERP" generate -m "$GPT2" --ids 1 --sae dir
expect "plot --feature --help (the mode's own help)" 0 "usage: nnterp plot STORE.h5 --feature F" \
  "$NNTERP" plot --feature --help
if "$NNTERP" --list-options >"$T/options" 2>"$T/err" && [ -s "$T/options" ]; then ok "cli_options: no name twice, every command's names are rows"; else bad "--list-options: $(cat "$T/err")"; fi
"$NNTERP" --list-commands >"$T/commands"
for c in run inspect tokenize generate trace lens patchscope steer probs patch plot "plot --feature" plan sae chat-template; do
  grep -qxF "$c" "$T/commands" || bad "cli_commands lacks $c"
done
"$NNTERP" --help >"$T/main_help"
value_for() { # a value each parser takes for FLAG (its checks run before --help is seen)
  case $1 in --compute) echo float32 ;; --logits | --lens) echo last ;; --transformers) echo 5 ;;
    --now) echo 2025-01-01 ;; *) echo 1 ;; esac
}
mentions() { # FLAG FILE: FLAG stands in FILE as a word of its own
  grep -qE -- "(^|[^a-zA-Z0-9_-])$1([^a-zA-Z0-9_-]|$)" "$2"
}
while IFS= read -r c <&3; do
  # A mode ("plot --feature") runs as its command with the mode's flag.
  if [ "$c" = "plot --feature" ]; then pre=(plot --feature 1); else pre=("$c"); fi
  grep -qE "^  ${c%% *} " "$T/main_help" || bad "nnterp --help does not list $c"
  if ! "$NNTERP" --list-options "$c" >"$T/takes" 2>"$T/err"; then bad "--list-options $c: $(cat "$T/err")"; continue; fi
  if ! "$NNTERP" "${pre[@]}" --help >"$T/help" 2>"$T/err" </dev/null || ! grep -qF "usage: nnterp ${pre[0]}" "$T/help"; then
    bad "nnterp $c --help: $(head -3 "$T/help" "$T/err")"; continue
  fi
  # every flag the usage text (before "also accepted:", less `quoted command lines` of other
  # commands) mentions is an option of the command
  missing=""
  for f in $(sed -e '/^also accepted:/,$d' -e 's/`[^`]*`//g' "$T/help" | tr " []()|,=:;\`'\"" '\n' | sed 's/\.$//' |
    grep -xE -- '--[a-z][a-z0-9-]*|-[a-zA-Z]' | grep -vxE -- '--help|-h' | sort -u); do
    awk -v f="$f" '$1 == f || $2 == f { found = 1 } END { exit !found }' "$T/takes" || missing="$missing $f"
  done
  [ -z "$missing" ] && ok "$c: every flag its usage mentions is its option" || bad "$c: usage mentions$missing, not in its row"
  # every option of its row is accepted by its parser and named by its --help
  failed=""
  while read -r flag alias value; do
    mentions "$flag" "$T/help" || { [ "$alias" != - ] && mentions "$alias" "$T/help"; } ||
      failed="$failed $flag(not in --help)"
    vals=()
    [ "$value" != - ] && vals=("$(value_for "$flag")")
    [ "$flag" = --contrast ] && vals=(a b)
    "$NNTERP" "${pre[@]}" "$flag" "${vals[@]}" --help >/dev/null 2>"$T/err" </dev/null ||
      failed="$failed $flag($(head -1 "$T/err"))"
  done <"$T/takes"
  [ -z "$failed" ] && ok "$c: its parser takes each of its $(wc -l <"$T/takes") options, --help names them" || bad "$c:$failed"
  # and refuses a switch it does not take, naming it
  foreign=$(awk 'NR == FNR { t[$1] = 1; next } !($1 in t) && $3 == "-" { print $1; exit }' "$T/takes" "$T/options")
  expect "$c refuses $foreign" 2 "unknown option $foreign" "$NNTERP" "${pre[@]}" "$foreign" --help
done 3<"$T/commands"

finish test_cli
