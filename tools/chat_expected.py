#!/usr/bin/env python3
"""Expected chat-template renderings from transformers itself, for tests/chat/*.jsonl.

For each real tokenizer of ../shared/tokenizers/modern that has a chat template, renders nnterp's
own conversations (tool calls, tool results, reasoning, continue_final_message with odd
whitespace, content blocks, non-ASCII, it_repeat_prompt's four variants...) with
tokenizer.apply_chat_template(tokenize=False) and (tokenize=True) and writes one JSONL file per
tokenizer: line 1 {"type": "template", "model_dir"} (the directory relative to the shared data,
loaded by nnterp's own loader), then one {"type": "case"} line per conversation with `expected`
(or `expected_error` when transformers raises) and `expected_ids`.

strftime_now is pinned to 2024-07-26 00:00:00 (local time), as in ../shared/chat.

    /work/venv/bin/python tools/chat_expected.py [SHARED_DIR] [OUT_DIR]   (default ../shared tests/chat)
"""
import datetime as _dt
import json
import os
import sys

import transformers
import transformers.utils.chat_template_utils as ctu
from transformers import AutoTokenizer


class _PinnedDatetime(_dt.datetime):
    @classmethod
    def now(cls, tz=None):
        return cls(2024, 7, 26, 0, 0, 0)


ctu.datetime = _PinnedDatetime  # the module's strftime_now calls datetime.now()

TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city, e.g. \"Paris\""},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer"},
            },
            "required": ["city"],
        },
    },
}]

TOOL_CALL = {"type": "function", "function": {
    "name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius", "days": 2, "ratio": 1.0}}}


def it_repeat(add_user_instr, use_system_prompt, complete_prompt=True):
    """nnterp.interventions.it_repeat_prompt's conversation (nnterp 1.3.0)."""
    prompt = "king king\n1135 1135\nhello hello\n?"
    chat = []
    if add_user_instr:
        if use_system_prompt:
            chat.append({"role": "system", "content": "You are a helpful assistant."})
        chat += [
            {"role": "user", "content": "I will provide you with a series of sentences. Your task is to guess the "
                                        "next word in the sentence. You must answer with the next word only."},
            {"role": "assistant", "content": "Ok."},
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": prompt if complete_prompt else ""},
        ]
    else:
        if use_system_prompt:
            chat += [{"role": "system", "content": "The user will provide you with a sentence. Your task is to guess "
                                                   "the next word in the sentence. You must answer with the next word "
                                                   "only."},
                     {"role": "user", "content": prompt}]
        else:
            chat.append({"role": "user", "content": "Guess the next word in the following sentence (answer only the "
                                                    f"next word): {prompt}"})
        chat.append({"role": "assistant", "content": prompt if complete_prompt else ""})
    return chat


def cases():
    yield "it_repeat/instr+system", it_repeat(True, True), {"continue_final_message": True}
    yield "it_repeat/instr", it_repeat(True, False), {"continue_final_message": True}
    yield "it_repeat/system", it_repeat(False, True), {"continue_final_message": True}
    yield "it_repeat/bare", it_repeat(False, False), {"continue_final_message": True}
    yield "it_repeat/instr+system/incomplete", it_repeat(True, True, False), {"continue_final_message": True}
    yield "tool_call_and_result", [
        {"role": "system", "content": "You can call tools."},
        {"role": "user", "content": "Weather in Paris for 2 days?"},
        {"role": "assistant", "content": "", "tool_calls": [TOOL_CALL]},
        {"role": "tool", "name": "get_weather", "content": "{\"temp\": 21.5, \"sky\": \"clear\"}"},
        {"role": "assistant", "content": "It is 21.5 °C and clear."},
    ], {"tools": TOOLS}
    yield "tools/user/generation_prompt", [
        {"role": "user", "content": "What's the weather like in Tokyo?"},
    ], {"tools": TOOLS, "add_generation_prompt": True}
    yield "reasoning/generation_prompt", [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4", "reasoning_content": "Adding two and two gives four."},
        {"role": "user", "content": "And 3+3?"},
    ], {"add_generation_prompt": True}
    yield "enable_thinking=true", [{"role": "user", "content": "Think about it."}], \
        {"add_generation_prompt": True, "enable_thinking": True}
    yield "continue/trailing_space", [
        {"role": "user", "content": "Complete: the cat"},
        {"role": "assistant", "content": "The cat sat on the  "},
    ], {"continue_final_message": True}
    yield "continue/leading_newline", [
        {"role": "user", "content": "List two fruits."},
        {"role": "assistant", "content": "\n1. apple\n2."},
    ], {"continue_final_message": True}
    yield "quotes_backslashes_tabs", [
        {"role": "system", "content": "Use \"double\" and 'single' quotes, a\\backslash and\ttabs."},
        {"role": "user", "content": "  {{ not jinja }} {% neither %}  "},
    ], {"add_generation_prompt": True}
    yield "content_blocks", [
        {"role": "user", "content": [{"type": "text", "text": "Describe "}, {"type": "text", "text": "this."}]},
    ], {"add_generation_prompt": True}
    yield "long_multilingual", [
        {"role": "user", "content": "Привет! Как дела?"},
        {"role": "assistant", "content": "Хорошо, спасибо. 😊"},
        {"role": "user", "content": "مرحبا"},
        {"role": "assistant", "content": "नमस्ते\n\n  indented line\n"},
        {"role": "user", "content": "最後の質問です。"},
    ], {"add_generation_prompt": False}
    yield "system_only", [{"role": "system", "content": "Only a system prompt."}], {"add_generation_prompt": True}


def main():
    shared = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "shared")
    out_dir = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "..", "tests", "chat")
    os.makedirs(out_dir, exist_ok=True)
    base = os.path.join(shared, "tokenizers", "modern")
    for name in sorted(os.listdir(base)):
        d = os.path.join(base, name)
        if not os.path.isdir(d):
            continue
        tok = AutoTokenizer.from_pretrained(d)
        if not tok.chat_template:
            continue
        lines = [{"type": "template", "id": name, "model_dir": f"tokenizers/modern/{name}",
                  "transformers": transformers.__version__,
                  "special_tokens_map": tok.special_tokens_map}]
        for case, messages, opts in cases():
            opts = dict(opts)
            tools = opts.pop("tools", None)
            agp = opts.pop("add_generation_prompt", False)
            cfm = opts.pop("continue_final_message", False)
            line = {"type": "case", "id": name, "case": case, "messages": messages,
                    "add_generation_prompt": agp, "continue_final_message": cfm}
            if tools:
                line["tools"] = tools
            if opts:
                line["template_kwargs"] = opts
            try:
                text = tok.apply_chat_template(messages, tools=tools, add_generation_prompt=agp,
                                               continue_final_message=cfm, tokenize=False, **opts)
                ids = tok.apply_chat_template(messages, tools=tools, add_generation_prompt=agp,
                                              continue_final_message=cfm, tokenize=True, return_dict=False, **opts)
                if isinstance(ids, dict) or hasattr(ids, "keys"):
                    ids = ids["input_ids"]
                line["expected"] = text
                line["expected_ids"] = list(ids)
                line["ids_tokenizer"] = name
            except Exception as e:  # the template (or transformers) refuses the conversation
                line["expected_error"] = {"type": type(e).__name__, "message": str(e).split("\n")[0]}
            lines.append(line)
        path = os.path.join(out_dir, f"{name}.jsonl")
        with open(path, "w", encoding="utf-8") as f:
            for line in lines:
                f.write(json.dumps(line, ensure_ascii=False) + "\n")
        print(f"{path}: {len(lines) - 1} cases")


if __name__ == "__main__":
    main()
