#!/usr/bin/python3
"""Writes docs/benchmarks-tokenizer.md from the results bench/tokenizer.sh left in TMP (its JSON
and id dumps) and the machine facts it exports (BENCH_*). Standard library only.

Usage (from bench/tokenizer.sh): bench/tokenizer_report.py TMP OUT.md
"""
import hashlib
import json
import os
import sys

tmp, out = sys.argv[1:3]
e = os.environ
J = lambda n: json.load(open(os.path.join(tmp, n)))
corpus = e["BENCH_CORPUS"]
data = open(corpus, "rb").read()
sha = hashlib.sha256(data).hexdigest()[:16]
lines = data.split(b"\n")
TOKS = [("gpt2", "GPT-2", ["hf-tokenizers", "tiktoken"]),
        ("llama3_1", "Llama 3.1", ["hf-tokenizers", "tiktoken"]),
        ("llama2", "Llama 2", ["sentencepiece", "hf-tokenizers"])]
LABEL = {"hf-tokenizers": "Hugging Face tokenizers", "tiktoken": "tiktoken",
         "sentencepiece": "sentencepiece"}
CALLS = {"hf-tokenizers": ("`encode(line)` per line", "`encode_batch(lines)`"),
         "tiktoken": ("`encode_ordinary(line)` per line", "`encode_ordinary_batch(lines)`"),
         "sentencepiece": ("`encode(line)` per line", "`encode(lines)` batched")}
R = {(t, "nnterp"): J(f"nn_{t}.json") for t, _, _ in TOKS}
for t, _, refs in TOKS:
    for r in refs:
        R[(t, r)] = J(f"{r}_{t}.json")
base = R[("gpt2", "nnterp")]
for k, r in R.items():
    if r["bytes"] != base["bytes"] or r["lines"] != base["lines"]:
        sys.exit(f"tokenizer_report.py: {k} read a different corpus "
                 f"({r['bytes']} vs {base['bytes']} bytes)")


def ids(name):
    d = {}
    for row in open(os.path.join(tmp, name)):
        k, _, v = row.rstrip("\n").partition("\t")
        d[int(k)] = v
    return d


def tok_dir(t):
    return os.path.join(e["BENCH_TOK_DIR"], "modern", t) if t == "llama3_1" else os.path.join(
        e["BENCH_TOK_DIR"], t)


def pieces(t):
    """id -> the bytes the token stands for, from the tokenizer.json nnterp read."""
    tj = json.load(open(os.path.join(tok_dir(t), "tokenizer.json")))
    vocab = dict(tj["model"]["vocab"])
    added = {a["content"]: a["id"] for a in tj.get("added_tokens", [])}
    if t != "llama2":  # byte-level: GPT-2's bytes_to_unicode, inverted
        bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
        cs, n = bs[:], 0
        for b in range(256):
            if b not in bs:
                bs.append(b)
                cs.append(256 + n)
                n += 1
        inv = {chr(c): b for b, c in zip(bs, cs)}
        conv = lambda p: bytes(inv[c] for c in p if c in inv)
    else:  # SentencePiece-style: U+2581 for spaces, <0xNN> byte fallback
        conv = lambda p: (bytes([int(p[3:5], 16)]) if len(p) == 6 and p.startswith("<0x")
                          else p.replace("\u2581", " ").encode())
    got = {i: conv(p) for p, i in vocab.items()}
    got.update({i: p.encode() for p, i in added.items()})
    return got


PIECES = {}


def where(t, i, a, b):
    """The text around the first token where the two sides part, as a hint of why."""
    if t not in PIECES:
        PIECES[t] = pieces(t)
    a, b = a.split(), b.split()
    k = 0
    while k < min(len(a), len(b)) and a[k] == b[k]:
        k += 1
    off = sum(len(PIECES[t].get(int(x), b"")) for x in a[:k])
    if t == "llama2":
        off = max(0, off - 1)  # the space the Llama 2 normalizer puts in front
    raw = lines[i]
    lo = max(0, off - 12)
    while lo > 0 and (raw[lo] & 0xC0) == 0x80:
        lo -= 1
    return f"line {i}, token {k}: `{ascii(raw[lo:off + 12].decode('utf-8', 'replace'))}`"


def agree(t, r):
    A, B = ids(f"nn_{t}.ids"), ids(f"{r}_{t}.ids")
    same = [k for k in A if A.get(k) == B.get(k)]
    diff = sorted(k for k in A if A.get(k) != B.get(k))
    return len(same), len(A), [where(t, k, A[k], B.get(k, "")) for k in diff[:3]], len(diff)


f1 = lambda x: f"{x / 1e6:.2f} M" if x >= 1e6 else f"{x / 1e3:.0f} k"
rows, checks, colds, passes = [], [], [], []


def row(tok, name, r, ref=None):
    """ref: nnterp's result, for the ratio columns (None on nnterp's own row)."""
    ratio = lambda k: "—" if ref is None else f"**{ref[k] / r[k]:.2f}×**"
    rows.append(f"| {tok} | {name} | {f1(r['tokens_per_s'])} | {r['mb_per_s']:.2f} | "
                f"{r['mb_per_s_cpu']:.2f} | {r['mb_per_s_cold']:.2f} | {r['tokens']:,} | "
                f"{ratio('mb_per_s')} | {ratio('mb_per_s_cpu')} |")


runs = lambda r: ", ".join(f"{x:.2f}" for x in r["runs"])
for t, label, refs in TOKS:
    nn = R[(t, "nnterp")]
    row(label, "**nnterp** (`bench/bench_tokenizer.c`)", nn)
    passes.append(f"nnterp {label} {runs(nn)}")
    for r in refs:
        x = R[(t, r)]
        pl, b = x["modes"]["per_line"], x["modes"]["batch"]
        row(label, f"{LABEL[r]} {x['version']}, {CALLS[r][0]}", pl, nn)
        row(label, f"{LABEL[r]} {x['version']}, {CALLS[r][1]}", b, nn)
        colds.append(f"{label} vs {LABEL[r]} {nn['mb_per_s_cold'] / pl['mb_per_s_cold']:.2f}× "
                     f"(per line), {nn['mb_per_s_cold'] / b['mb_per_s_cold']:.2f}× (batched)")
        passes.append(f"{LABEL[r]} {label} {runs(pl)} per line, {runs(b)} batched")
        checks.append((label, f"nnterp vs {LABEL[r]}", *agree(t, r)))

check_rows = "\n".join(
    f"| {t} | {name} | {s} / {n} ({100 * s / n:.2f} %) | "
    + ("; ".join(d) + (" …" if nd > 3 else "") if d else "—") + " |"
    for t, name, s, n, d, nd in checks)
mb = base["bytes"] / 1e6
ver = lambda r: R[("llama2" if r == "sentencepiece" else "gpt2", r)]["version"]
py = R[("gpt2", "hf-tokenizers")]["python"]
load = lambda t, r: R[(t, r)]["seconds_load"]

md = f"""# Tokenizer benchmark

Generated by `bench/tokenizer.sh` — rerun that one command to reproduce; it rewrites this file.

Encoding speed of nnterp's tokenizer (`engine/tokenizer.c`) against the encoders a user would pick
instead, from PyPI: Hugging Face `tokenizers` {ver('hf-tokenizers')} (the Rust core under
transformers' `AutoTokenizer`), `tiktoken` {ver('tiktoken')} and `sentencepiece`
{ver('sentencepiece')}; same corpus, same machine, one run, each process pinned with
`{e['BENCH_PIN']}` and single-threaded.

## Figures

Corpus: `{corpus}` — {mb:.1f} MB (10⁶ bytes of text, newlines excluded), {base['lines']:,}
documents, one per line, written by `tools/make_corpus.py --mb {e['BENCH_TOK_MB']} --seed 0`
(sha256 {sha}…): mostly English-like prose (common words with Zipf frequencies plus a tail of rare
made-up words and names, numbers, quotes, contractions), with code-like lines and lines that
splice in the shared tokenizer test texts (accents, CJK, emoji, RTL and Indic scripts, control
characters, URLs, odd whitespace). {base['bytes'] / base['tokens']:.2f} bytes per GPT-2 token,
{base['bytes'] / R[('llama3_1', 'nnterp')]['tokens']:.2f} per Llama 3.1 token,
{base['bytes'] / R[('llama2', 'nnterp')]['tokens']:.2f} per Llama 2 token.

Each line is encoded on its own, without special tokens (BOS/EOS), the way a dataset of prompts
is tokenized. Every side first makes one pass reported apart ("cold": it fills the word caches),
then times {base['reps']} passes (nnterp) or {R[('gpt2', 'tiktoken')]['reps']} passes of each mode
(the references: one call per line from Python, and the library's own batch call, whose loop runs
in Rust or C++ on one thread); the warm figures are the medians. MB/s counts input bytes, so the
ratio column, nnterp's MB/s ÷ the reference's, compares the same work even where the token counts
differ by a few. Each pass is timed twice: by the wall clock (the tokens/s, MB/s and cold columns)
and by the CPU time of the process (the "MB/s, CPU time" column), which other work sharing the
machine does not inflate; when the two differ much, the machine was busy (see the load average
below) and the CPU-time ratio is the steadier comparison.

| tokenizer | implementation | tokens/s | MB/s | MB/s, CPU time | MB/s cold | tokens | nnterp faster by (wall) | (CPU time) |
|---|---|---:|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

Cold-pass ratios (first pass over the corpus, nnterp ÷ reference): {'; '.join(colds)}.

Timed passes (seconds): {'; '.join(passes)}. Loading the tokenizer (not timed above): nnterp
GPT-2 {load('gpt2', 'nnterp'):.3f} s, Llama 3.1 {load('llama3_1', 'nnterp'):.3f} s, Llama 2
{load('llama2', 'nnterp'):.3f} s; Hugging Face tokenizers {load('gpt2', 'hf-tokenizers'):.3f} s,
{load('llama3_1', 'hf-tokenizers'):.3f} s, {load('llama2', 'hf-tokenizers'):.3f} s (with the
Python import).

What each side does:

- nnterp: `nn_tokenizer_encode(tok, line, len, false, &ids)` from the Hugging Face
  `tokenizer.json` in `../shared/tokenizers/{{gpt2,modern/llama3_1,llama2}}`, reusing one id buffer.
- Hugging Face tokenizers: `Tokenizer.from_file(tokenizer.json)`, then
  `encode(line, add_special_tokens=False).ids` per line, or `encode_batch(lines,
  add_special_tokens=False)` with `TOKENIZERS_PARALLELISM=false` (one thread). This is what
  transformers' `AutoTokenizer` runs underneath.
- tiktoken: an `Encoding` built from the same tokenizer.json (each token's bytes ranked by its id,
  the tokenizer.json's split regex), which is how tiktoken's own `gpt2` encoding and Llama 3's
  tokenizer are defined; `encode_ordinary(line)`, or `encode_ordinary_batch(lines,
  num_threads=1)`.
- sentencepiece: `SentencePieceProcessor(model_file=tokenizer.model)`; `sp.encode(line)` per line,
  or one `sp.encode(lines, num_threads=1)`.

Lines are decoded to `str` before timing on every Python path (`bench/tokenizer_pypi.py`).

## Same ids

Every {e['BENCH_SAMPLE']}th line of the corpus, encoded by both sides after the timing and
compared id for id:

| tokenizer | pair | lines identical | first differing lines (text where the ids part) |
|---|---|---:|---|
{check_rows}

nnterp follows the Hugging Face `tokenizers` library, which its tests check id for id (the shared
vectors and `tests/data/tokenizers`). tiktoken takes a whole piece when the piece is a token and
otherwise merges by the rank of the result: that is the BPE of Llama 3.1's `ignore_merges`
tokenizer, and for GPT-2 it can differ where the merges would not rebuild a piece that is itself a
token. SentencePiece and the Hugging Face Llama 2 `tokenizer.json` differ only on literal
special-token text (`<s>`, `</s>`), which the corpus leaves out.

## Machine

- CPU: {e['BENCH_CPU_MODEL']} ({e['BENCH_NPROC']} logical CPUs visible; ISA extensions:
  {e['BENCH_ISA'].strip()}); every process pinned with `{e['BENCH_PIN']}`, run one after another
- Kernel: {e['BENCH_KERNEL']}
- nnterp: CMake Release build (-O3 -DNDEBUG), compiler {e['BENCH_CC']}
- References: Python {py} in `{e['BENCH_VENV']}`, PyPI's tokenizers {ver('hf-tokenizers')},
  tiktoken {ver('tiktoken')}, sentencepiece {ver('sentencepiece')}
- Date: {e['BENCH_DATE']}; the whole script took {e['BENCH_ELAPSED']} s; load average (1, 5,
  15 min) {e['BENCH_LOAD_START']} at the start, {e['BENCH_LOAD_END']} at the end — other work on
  the machine shares its {e['BENCH_NPROC']} CPUs and makes the wall-clock figures noisier the
  higher that is
- Command: `bench/tokenizer.sh` (`BENCH_TOK_MB=50 bench/tokenizer.sh` for a larger corpus)
"""
open(out, "w").write(md)
for t, label, refs in TOKS:
    print(f"{label}: nnterp {R[(t, 'nnterp')]['mb_per_s']:.2f} MB/s; " + ", ".join(
        f"{LABEL[r]} {R[(t, r)]['modes']['per_line']['mb_per_s']:.2f} per line / "
        f"{R[(t, r)]['modes']['batch']['mb_per_s']:.2f} batched" for r in refs))
for t, name, s, n, d, nd in checks:
    print(f"ids {t} {name}: {s}/{n} lines identical")
print(f"-> {out}")
