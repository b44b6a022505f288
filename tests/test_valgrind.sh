#!/usr/bin/env bash
# Bad input through the command line under valgrind: each case must exit with its own code and
# message, and valgrind must find no invalid access, no use of uninitialised memory and no
# definite or indirect leak. valgrind's --error-exitcode is 99, not 1, so that the expected error
# exit (1) is told apart from a valgrind finding. Skipped (loudly) without valgrind, without the
# shared test data, or when nnterp is built with AddressSanitizer (the two do not mix).
set -u
NNTERP=$1
. "$(dirname "$0")/lib.sh"
need_command test_valgrind valgrind valgrind
need_shared test_valgrind reference
if nm "$NNTERP" 2>/dev/null | grep -q __asan_init; then
  echo "SKIPPED: test_valgrind: $NNTERP is built with AddressSanitizer, which valgrind cannot run"; exit 77
fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
V=(valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect
   --log-file="$T/vg.log")
expect() { # name, expected exit code, stderr needle, arguments...
  local name=$1 code=$2 needle=$3
  shift 3
  "${V[@]}" "$NNTERP" "$@" >"$T/out" 2>"$T/err"
  local rc=$?
  if [ "$rc" -eq "$code" ] && grep -qF -- "$needle" "$T/err" && [ ! -s "$T/vg.log" ]; then
    ok "$name"
  else
    bad "$name (exit $rc, wanted $code): $(head -3 "$T/err")"
    head -30 "$T/vg.log"
  fi
}

GPT2=$S/reference/tiny/gpt2/model-f32
# Hostile files, made from the real ones.
/usr/bin/python3 - "$GPT2" "$S/models/stories260K/stories260K.bin" "$T" <<'PY' || { echo "FAIL: python3 could not prepare the files"; exit 1; }
import json, os, shutil, struct, sys
gpt2, stories, t = sys.argv[1:4]
img = open(gpt2 + "/model.safetensors", "rb").read()
(n,) = struct.unpack("<Q", img[:8])
header = json.loads(img[8:8 + n])
for name, bad in [("nan", b"\x00\x00\xc0\x7f"), ("cut", None)]:
    os.makedirs(f"{t}/{name}")
    shutil.copy(gpt2 + "/config.json", f"{t}/{name}/config.json")
    data = bytearray(img)
    if bad:
        at = 8 + n + header["transformer.h.0.mlp.c_proj.weight"]["data_offsets"][0] + 4 * 3
        data[at:at + 4] = bad
    else:
        data = data[: len(data) // 2]
    open(f"{t}/{name}/model.safetensors", "wb").write(data)
open(f"{t}/cut.bin", "wb").write(open(stories, "rb").read()[:5000])
os.makedirs(f"{t}/tok")
rob = {"type": "RobertaProcessing", "sep": ["b", 1], "cls": ["a", 0]}
json.dump({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": []},
           "post_processor": {"type": "Sequence", "processors": [rob] * 9}}, open(f"{t}/tok/tokenizer.json", "w"))
open(f"{t}/long.txt", "w").write("short\n" + "x" * 100 + "\n")
job = {"model": stories.replace("stories260K.bin", "hf"), "output": f"{t}/o.h5",
       "dataset": {"path": f"{t}/long.txt", "max_line_bytes": 64},
       "operations": [{"op": "generate", "max_new_tokens": 2}]}
json.dump(job, open(f"{t}/long.json", "w"))
open(f"{t}/dup.json", "w").write('{"model": "a", "model": "b"}')
open(f"{t}/bad.npy", "wb").write(b"\x93NUMPY\x01\x00\x0c\x00{'descr': '<")
PY

expect "missing model" 1 "no such file or directory" inspect -m "$T/nope"
export NNTERP_CHECK_WEIGHTS=1 # mapped F32 weights are scanned on request
expect "NaN in a weight" 1 "tensor 'transformer.h.0.mlp.c_proj.weight' holds NaN at element 3" inspect -m "$T/nan"
unset NNTERP_CHECK_WEIGHTS
expect "truncated safetensors" 1 "run past the data section" inspect -m "$T/cut"
expect "truncated llama2.c checkpoint" 1 "cut.bin: 4972 bytes of weights" inspect -m "$T/cut.bin"
expect "hostile tokenizer.json" 1 "more than 8 template tokens" tokenize -m "$T/tok" "x"
expect "invalid UTF-8 text" 1 "text is not valid UTF-8" tokenize -m "$S/tokenizers/gpt2" $'ok\xff'
expect "job with a duplicate key" 1 "key 'model' appears twice" run "$T/dup.json"
expect "dataset line beyond max_line_bytes" 1 "long.txt:2: line of 100 bytes exceeds dataset.max_line_bytes = 64" run "$T/long.json"
expect "malformed .npy vector" 1 "header lacks descr" steer -m "$S/models/stories260K/hf" -p x --vector "$T/bad.npy" --layers 1 --factor 1
expect "token id beyond the vocabulary" 1 "token id 999 at position 1" generate -m "$GPT2" --ids "1 999"
expect "unknown hook point" 1 "unknown hook point 'layer_output'" trace -m "$GPT2" --ids "1 2" --save layer_output -o "$T/x.h5"
finish test_valgrind
