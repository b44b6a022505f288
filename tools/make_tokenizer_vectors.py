#!/usr/bin/env python3
"""Writes tests/data/tokenizers/<name>.jsonl: expected encodings of the project's own test texts
for the real tokenizers of ../shared/tokenizers/modern, made by Hugging Face's `tokenizers`
library (the Rust core transformers uses). Same line schema as the shared vectors (see
../shared/tokenizers/modern/README.md): id, category, text, ids, ids_special, tokens, decoded,
decoded_skip_special, and for deepseek_v3 ids_special_transformers ([BOS] + ids: its
tokenizer_config.json's add_bos_token, which nnterp follows as transformers 4.x did).

The texts cover code, numbers, whitespace runs, CJK, emoji, Arabic, Hindi, special tokens written
literally, and characters assigned in Unicode 15.0, 15.1 and 16.0 (and 17.0, unassigned for the
oracle), each next to a space, which is where a regex engine with older Unicode tables differs.

Run by hand from /work/venv (tests read the committed files; they never need PyPI):
    python tools/make_tokenizer_vectors.py [--shared ../shared]
"""
import argparse
import json
import os

import tokenizers

NAMES = ["llama3_1", "qwen3", "gemma3", "deepseek_v3", "gptoss"]

TEXTS = [
    ("code", "def f(x):\n    return x ** 2  # square\n"),
    ("code", "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }"),
    ("code", "const re = /^\\s*(\\d+)\\.(\\d+)$/u; // version"),
    ("code", "SELECT id, name FROM users WHERE age >= 18 ORDER BY name;"),
    ("code", "<div class=\"row\">\n\t<span>{{ value | json }}</span>\n</div>"),
    ("code", "fn main() -> Result<(), Box<dyn Error>> { Ok(()) }"),
    ("code", "x=1;y=2\r\nz=x+y\r\n"),
    ("code", "    if a:\n        b()\n\n\n    else:\n\t\tc()"),
    ("numbers", "1234567890 12 345 6789"),
    ("numbers", "3.14159 -2.5e-10 1,000,000.00 0x1F 0b1010"),
    ("numbers", "In 2026, 7% of 1.2k users paid $4.99/mo."),
    ("numbers", "٠١٢٣٤٥٦٧٨٩ ०१२३४५६७८९ ١٢٣"),
    ("numbers", "①②③ ½ ¾ ² ³ Ⅻ 𝟙𝟚𝟛"),
    ("numbers", "phone: +1 (555) 010-9999, ext. 42"),
    ("whitespace", "a  b   c    d     e"),
    ("whitespace", "   leading and trailing   "),
    ("whitespace", "tab\there\t\tand\t\t\tthere"),
    ("whitespace", "line\n\nbreaks\n\n\n\nmany"),
    ("whitespace", " \u00a0nbsp\u2003em\u3000ideographic\u200bzwsp"),
    ("whitespace", "\n"),
    ("whitespace", "        "),
    ("whitespace", "end with newline\n"),
    ("cjk", "日本語のテキストを分割します。"),
    ("cjk", "中文分词测试：我爱北京天安门！"),
    ("cjk", "한국어 문장도 포함합니다."),
    ("cjk", "カタカナ ひらがな 漢字 ｶﾀｶﾅ"),
    ("cjk", "混合 mixed 文本 text 123"),
    ("emoji", "I love pizza 🍕🍕 and 🐍 Python!"),
    ("emoji", "👨‍👩‍👧‍👦 family 🏳️‍🌈 flag 👍🏽 thumbs"),
    ("emoji", "🇫🇷🇯🇵🇺🇸 flags"),
    ("emoji", "emoji at end 😀"),
    ("arabic", "مرحبا بالعالم، كيف حالك؟"),
    ("arabic", "النص العربي مع English و 123 أرقام"),
    ("arabic", "שלום עולם"),
    ("hindi", "नमस्ते दुनिया, आप कैसे हैं?"),
    ("hindi", "हिन्दी में क्षत्रिय और ज्ञान"),
    ("hindi", "தமிழ் மொழி বাংলা ভাষা"),
    ("special_literal", "<|begin_of_text|>Hello<|end_of_text|>"),
    ("special_literal", "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"),
    ("special_literal", "<think>reasoning</think> answer"),
    ("special_literal", "<bos><start_of_turn>user\nhello<end_of_turn>"),
    ("special_literal", "<｜begin▁of▁sentence｜>text<｜end▁of▁sentence｜>"),
    ("special_literal", "<|start|>system<|message|>hi<|end|>"),
    ("special_literal", "< |im_start| > <|im_start <im_start|>"),
    ("special_literal", "text<|endoftext|>more <|endoftext|> spaced"),
    ("mixed", "Hello, world! It's a test—don't panic… «quotes» „low“ 'single'"),
    ("mixed", "café naïve résumé Ångström Æsir œuvre straße"),
    ("mixed", "e\u0301 a\u0308 n\u0303 (combining) vs é ä ñ"),
    ("mixed", "ＡＢＣ full-width ＡＢＣ１２３"),
    ("mixed", "URL https://example.com/a?b=c&d=e#f and mail a.b@c.de"),
    ("mixed", "I'M HE'LL WE'VE they'D it'S"),
    ("unicode15", "a goose \U0001FABF here"),
    ("unicode15", "shaking \U0001FAE8 face"),
    ("unicode15", "pink \U0001FA77 heart"),
    ("unicode15", "CJK Ext H \U00031350\U00031351 x"),
    ("unicode15", "Kawi \U00011F04\U00011F05\U00011F06 script"),
    ("unicode15", "Ext I \U0002EBF0\U0002EBF1\U0002EE5D end"),
    ("unicode15", "ideographic description \u2FFC\u2FFD \u31EF"),
    ("unicode16", "Garay \U00010D50\U00010D51\U00010D70 letters"),
    ("unicode16", "Tulu-Tigalari \U00011380\U00011381 and Todhri \U000105C0"),
    ("unicode16", "legacy computing \U0001CC00\U0001CC01 symbols"),
    ("unicode16", "Kirat Rai \U00016D40\U00016D43 Gurung Khema \U00016100"),
    ("unicode16", "digits \U00011BF0\U00011BF1 Sunuwar"),
    ("unicode16", "Ahom \U0001171E medial ra"),
    ("unicode17", "not yet \U00010940 assigned \U000323B0"),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "data",
                                                  "tokenizers"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for name in NAMES:
        tok = tokenizers.Tokenizer.from_file(
            os.path.join(args.shared, "tokenizers", "modern", name, "tokenizer.json"))
        cfg = json.load(open(os.path.join(args.shared, "tokenizers", "modern", name,
                                          "tokenizer_config.json")))
        path = os.path.join(args.out, name + ".jsonl")
        with open(path, "w", encoding="utf-8") as f:
            for i, (category, text) in enumerate(TEXTS):
                plain = tok.encode(text, add_special_tokens=False)
                special = tok.encode(text, add_special_tokens=True)
                row = {"id": i, "category": category, "text": text, "ids": plain.ids,
                       "ids_special": special.ids}
                if name == "deepseek_v3":
                    assert cfg.get("add_bos_token") is True
                    row["ids_special_transformers"] = [tok.token_to_id(cfg["bos_token"]["content"]
                                                       if isinstance(cfg["bos_token"], dict)
                                                       else cfg["bos_token"])] + plain.ids
                row["tokens"] = plain.tokens
                row["decoded"] = tok.decode(plain.ids, skip_special_tokens=False)
                row["decoded_skip_special"] = tok.decode(special.ids, skip_special_tokens=True)
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(f"{path}: {len(TEXTS)} texts (tokenizers {tokenizers.__version__})")


if __name__ == "__main__":
    main()
