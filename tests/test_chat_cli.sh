#!/usr/bin/env bash
# Chat templates from the command line and in jobs:
# - nnterp chat-template prints exactly what transformers renders (a real template of the shared
#   tokenizers, the cases of tests/chat; a template in chat_template.jinja; --chat-template);
# - a template that raises (Gemma 2's "System role not supported") exits 1 with its message;
#   bad flags and files are clear errors;
# - patchscope --target it-repeat: models/demo has no template (the error says what to give),
#   and runs with --chat-template examples/chat_template.jinja;
# - --chat FILE.json prompts are the rendered text tokenized without added special tokens;
# - a job whose dataset lines hold "messages" stores the rendered text and its tokens, and its
#   patchscope_lens op takes the it_repeat target.
set -u
NNTERP=$1
. "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
need_shared test_chat_cli tokenizers/modern/qwen3 chat
PY=/usr/bin/python3
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
DEMO=$ROOT/models/demo
TEMPLATE=$ROOT/examples/chat_template.jinja

# 1. chat-template against transformers 5.24 (tests/chat/qwen3.jsonl, written by tools/chat_expected.py)
$PY - "$ROOT/tests/chat/qwen3.jsonl" "$T" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
for i, c in enumerate(lines[1:]):
    if "expected" not in c:
        continue
    conv = {"messages": c["messages"]}
    if c.get("tools"):
        conv["tools"] = c["tools"]
    conv.update(c.get("template_kwargs", {}))
    flags = (" --add-generation-prompt" if c["add_generation_prompt"] else "") + \
            (" --continue-final-message" if c["continue_final_message"] else "")
    json.dump(conv, open(f"{sys.argv[2]}/conv{i}.json", "w"), ensure_ascii=False)
    open(f"{sys.argv[2]}/want{i}.txt", "w", encoding="utf-8", newline="").write(c["expected"])
    open(f"{sys.argv[2]}/flags{i}", "w").write(flags)
PY
n=0
same=0
for f in "$T"/conv*.json; do
  i=${f##*/conv}; i=${i%.json}
  n=$((n + 1))
  # shellcheck disable=SC2046
  "$NNTERP" chat-template -m "$S/tokenizers/modern/qwen3" --messages "$f" --now 2024-07-26 \
    $(cat "$T/flags$i") >"$T/got$i.txt" 2>"$T/err$i" && cmp -s "$T/got$i.txt" "$T/want$i.txt" &&
    same=$((same + 1))
done
[ "$n" -gt 10 ] && [ "$same" -eq "$n" ] && ok "chat-template: $same/$n qwen3 cases byte for byte" ||
  bad "chat-template: $same/$n qwen3 cases byte for byte"

# 2. chat_template.jinja beside the model; Gemma 2 refuses a system message
mkdir -p "$T/gemma"
cp "$S/chat/templates/gemma2-it.jinja" "$T/gemma/chat_template.jinja"
echo '{"bos_token": "<bos>", "eos_token": "<eos>"}' >"$T/gemma/tokenizer_config.json"
echo '[{"role": "user", "content": "Hi"}]' >"$T/user.json"
echo '[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]' >"$T/sys.json"
out=$("$NNTERP" chat-template -m "$T/gemma" --messages "$T/user.json" --add-generation-prompt)
[ "$out" = "$(printf '<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n')" ] &&
  ok "chat_template.jinja is the model's template" || bad "chat_template.jinja: got '$out'"
"$NNTERP" chat-template -m "$T/gemma" --messages "$T/sys.json" >"$T/out" 2>"$T/err"
rc=$?
[ $rc -eq 1 ] && grep -q "System role not supported" "$T/err" && [ ! -s "$T/out" ] &&
  ok "raise_exception: exit 1 with the template's message" || bad "raise_exception: rc $rc, $(cat "$T/err")"

# 3. errors
"$NNTERP" chat-template -m "$DEMO" --messages "$T/user.json" 2>"$T/err"
[ $? -eq 1 ] && grep -q "has no chat template.*--chat-template FILE.jinja" "$T/err" &&
  ok "no template: says to give --chat-template" || bad "no template: $(cat "$T/err")"
"$NNTERP" chat-template -m "$T/gemma" 2>"$T/err"
[ $? -eq 2 ] && grep -q -- "--messages FILE.json is required" "$T/err" && ok "--messages is required" ||
  bad "--messages missing: $(cat "$T/err")"
"$NNTERP" chat-template -m "$T/gemma" --messages "$T/user.json" --now 2024-13-01 2>"$T/err"
[ $? -eq 1 ] && grep -q "expected YYYY-MM-DD" "$T/err" && ok "--now: a bad date" || bad "--now: $(cat "$T/err")"
echo '{% for m in messages %}{{ m.content | frobnicate }}{% endfor %}' >"$T/bad.jinja"
"$NNTERP" chat-template -m "$DEMO" --chat-template "$T/bad.jinja" --messages "$T/user.json" 2>"$T/err"
[ $? -eq 1 ] && grep -q "bad.jinja:1:39: no filter named 'frobnicate'" "$T/err" &&
  ok "unknown filter: file, line and column" || bad "unknown filter: $(cat "$T/err")"
echo '[{"role": "user", "content": "Hi"}' >"$T/broken.json"
"$NNTERP" chat-template -m "$T/gemma" --messages "$T/broken.json" 2>"$T/err"
[ $? -eq 1 ] && grep -q "broken.json: conversation: bad JSON" "$T/err" && ok "a broken conversation file" ||
  bad "broken conversation: $(cat "$T/err")"
"$NNTERP" chat-template -m "$T/gemma" --messages "$T/user.json" --add-generation-prompt \
  --continue-final-message 2>"$T/err"
[ $? -eq 1 ] && grep -q "not compatible" "$T/err" && ok "add_generation_prompt with continue_final_message" ||
  bad "both flags: $(cat "$T/err")"

# 4. patchscope --target it-repeat on models/demo
"$NNTERP" patchscope -m "$DEMO" --source "The capital of France is" --target it-repeat 2>"$T/err" >/dev/null
[ $? -eq 1 ] && grep -q "it-repeat: .*has no chat template" "$T/err" && ok "it-repeat without a template: clear error" ||
  bad "it-repeat without a template: $(cat "$T/err")"
"$NNTERP" patchscope -m "$DEMO" --source "The capital of France is" --target it-repeat \
  --chat-template "$TEMPLATE" --layers 0,3 -k 3 >"$T/ps" 2>"$T/err"
want="target 'You are a helpful assistant.\\n\\nUser: I will provide you with a series of sentences."
[ $? -eq 0 ] && grep -qF "$want" "$T/ps" && grep -qF "Assistant: king king\\n1135 1135\\nhello hello\\n?' at index -1" "$T/ps" &&
  grep -q "layer   3" "$T/ps" && ok "patchscope --target it-repeat --chat-template" || bad "it-repeat: $(cat "$T/ps" "$T/err")"
"$NNTERP" patchscope -m "$DEMO" --source "The capital of France is" --target it-repeat --no-user-instr \
  --no-system-prompt --chat-template "$TEMPLATE" --layers 0 -k 1 >"$T/ps2" 2>&1
grep -qF "target 'User: Guess the next word in the following sentence (answer only the next word): king king" "$T/ps2" &&
  ok "it-repeat --no-user-instr --no-system-prompt" || bad "it-repeat variants: $(cat "$T/ps2")"

# 5. --chat FILE.json: the rendered text, tokenized without special tokens added
"$NNTERP" chat-template -m "$DEMO" --chat-template "$TEMPLATE" --messages "$T/user.json" \
  --add-generation-prompt >"$T/rendered.txt"
"$NNTERP" tokenize -m "$DEMO" --no-special --ids -- "$(cat "$T/rendered.txt")" >"$T/ids_text"
"$NNTERP" lens -m "$DEMO" --chat "$T/user.json" --chat-template "$TEMPLATE" --add-generation-prompt \
  --layers 0 -k 1 >"$T/lens" 2>&1
n_tok=$(wc -w <"$T/ids_text")
rendered=$(cat "$T/rendered.txt")
[ "$rendered" = "User: Hi
Assistant:" ] && ok "--chat renders the conversation" || bad "--chat rendering: '$rendered'"
grep -q "at position $((n_tok - 1)) of $n_tok (after ':')" "$T/lens" &&
  ok "lens --chat: the $n_tok tokens of the rendered text, no BOS added" || bad "lens --chat: $(cat "$T/lens")"

# 6. a job: dataset lines with "messages", and patchscope_lens with the it_repeat target
cat >"$T/ds.jsonl" <<'EOF'
{"text": "The capital of France is"}
{"messages": [{"role": "user", "content": "The capital of Italy is"}]}
{"messages": [{"role": "system", "content": "Answer."}, {"role": "user", "content": "Dogs say"}]}
EOF
cat >"$T/job.json" <<EOF
{"model": "$DEMO", "dataset": {"path": "$T/ds.jsonl"},
 "chat": {"template": "$TEMPLATE", "add_generation_prompt": true},
 "operations": [{"op": "collect", "hooks": ["layers_output"], "layers": [0], "positions": "last"},
                {"op": "patchscope_lens", "layers": [0, 3], "top_k": 3, "target": {"it_repeat": true}}],
 "output": "$T/out.h5"}
EOF
"$NNTERP" run "$T/job.json" >"$T/run.log" 2>&1
rc=$?
if [ $rc -ne 0 ]; then
  bad "job with messages: rc $rc $(tail -3 "$T/run.log")"
elif ! $PY -c 'import h5py' 2>/dev/null; then
  skip "job with messages: no h5py to read the store"
else
  $PY - "$T/out.h5" "$T/want_tail" <<'PY' >"$T/check" 2>&1 && ok "job: messages lines rendered; it_repeat target" || bad "job: $(cat "$T/check")"
import sys, h5py
f = h5py.File(sys.argv[1], "r")
text = f["prompts/text"][:].tobytes().decode()
offs = f["prompts/text_offsets"][:]
prompts = [text[offs[i]:offs[i + 1]] for i in range(len(offs) - 1)]
assert prompts == ["The capital of France is", "User: The capital of Italy is\nAssistant:",
                   "Answer.\n\nUser: Dogs say\nAssistant:"], prompts
assert "patchscope_lens" in f, list(f)
PY
fi
finish test_chat_cli
