#!/usr/bin/env python3
"""The references of bench/tokenizer.sh, from PyPI (run from a venv that has them, /work/venv):
Hugging Face's `tokenizers` (the Rust core transformers uses), OpenAI's `tiktoken`, and Google's
`sentencepiece`, encoding the corpus line by line, timed like bench_tokenizer.c.

Usage: bench/tokenizer_pypi.py IMPL TOKENIZER_DIR CORPUS_FILE [--reps R]
                               [--dump-ids OUT [--dump-every K]] [--modes per_line,batch]
IMPL:
  hf-tokenizers  Tokenizer.from_file(DIR/tokenizer.json); encode(line, add_special_tokens=False),
                 batched encode_batch(lines, add_special_tokens=False) with
                 TOKENIZERS_PARALLELISM=false (one thread);
  tiktoken       an Encoding built from DIR/tokenizer.json (byte-level BPE only): the token bytes
                 ranked by id and the tokenizer.json's split regex, which is how tiktoken's own
                 gpt2 and Llama 3's tokenizer are defined; encode_ordinary(line), batched
                 encode_ordinary_batch(lines, num_threads=1);
  sentencepiece  SentencePieceProcessor(DIR/tokenizer.model); encode(line), batched
                 encode(lines, num_threads=1).
Each mode makes a first pass, reported apart as "cold", then R timed passes; the JSON on stdout
gives the medians (wall clock; cpu_seconds_* and mb_per_s_cpu from the process's CPU time, which
other work on a busy machine does not inflate). Lines are decoded from UTF-8 before timing, so the
timed work is the library's plus the Python call overhead of each mode. --dump-ids writes every
K-th line's ids ("LINENO<TAB>ids") of the first mode, as bench_tokenizer does.
"""
import argparse
import json
import os
import statistics
import sys
import time

os.environ["TOKENIZERS_PARALLELISM"] = "false"  # before tokenizers is imported


def byte_level_decoder():
    """GPT-2's printable code point -> byte map, inverted."""
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def split_regex(tj):
    """The pre-tokenizer regex of a byte-level tokenizer.json."""
    pre = tj["pre_tokenizer"]
    steps = pre.get("pretokenizers", [pre]) if pre["type"] == "Sequence" else [pre]
    for s in steps:
        if s["type"] == "Split":
            return s["pattern"]["Regex"]
        if s["type"] == "ByteLevel" and s.get("use_regex", True):
            return r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
    sys.exit("tokenizer_pypi.py: no split regex in this tokenizer.json")


def make_tiktoken(path):
    import tiktoken
    tj = json.load(open(os.path.join(path, "tokenizer.json")))
    inv = byte_level_decoder()
    ranks = {bytes(inv[c] for c in piece): i for piece, i in tj["model"]["vocab"].items()}
    enc = tiktoken.Encoding(name=os.path.basename(path.rstrip("/")), pat_str=split_regex(tj),
                            mergeable_ranks=ranks, special_tokens={})
    return tiktoken.__version__, enc.encode_ordinary, lambda xs: enc.encode_ordinary_batch(
        xs, num_threads=1)


def make_hf(path):
    import tokenizers
    tok = tokenizers.Tokenizer.from_file(os.path.join(path, "tokenizer.json"))
    return (tokenizers.__version__, lambda x: tok.encode(x, add_special_tokens=False).ids,
            lambda xs: [e.ids for e in tok.encode_batch(xs, add_special_tokens=False)])


def make_sentencepiece(path):
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=os.path.join(path, "tokenizer.model"))
    return spm.__version__, sp.encode, lambda xs: sp.encode(xs, num_threads=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("impl", choices=["hf-tokenizers", "tiktoken", "sentencepiece"])
    ap.add_argument("tokenizer")
    ap.add_argument("corpus")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dump-ids")
    ap.add_argument("--dump-every", type=int, default=1000)
    ap.add_argument("--modes", default="per_line,batch")
    a = ap.parse_args()

    t0 = time.perf_counter()
    version, encode_one, encode_batch = {"hf-tokenizers": make_hf, "tiktoken": make_tiktoken,
                                         "sentencepiece": make_sentencepiece}[a.impl](a.tokenizer)
    load = time.perf_counter() - t0
    with open(a.corpus, "rb") as f:
        data = f.read()
    raw = data.split(b"\n")
    if raw and raw[-1] == b"":
        raw.pop()
    lines = [x.decode("utf-8") for x in raw]
    n_bytes = sum(len(x) for x in raw)
    del raw, data

    def per_line():
        return [encode_one(x) for x in lines]

    def batch():
        return encode_batch(lines)

    out = {"implementation": a.impl, "version": version, "lines": len(lines), "bytes": n_bytes,
           "reps": a.reps, "seconds_load": load, "python": sys.version.split()[0], "modes": {}}
    for name in a.modes.split(","):
        fn = {"per_line": per_line, "batch": batch}[name]
        c0, t0 = time.process_time(), time.perf_counter()
        ids = fn()
        cold, cpu_cold = time.perf_counter() - t0, time.process_time() - c0
        tokens = sum(len(x) for x in ids)
        if a.dump_ids and name == a.modes.split(",")[0]:
            with open(a.dump_ids, "w") as f:
                for i in range(0, len(ids), a.dump_every):
                    f.write(f"{i}\t{' '.join(map(str, ids[i]))}\n")
        del ids
        runs, cpu_runs = [], []
        for _ in range(a.reps):
            c0, t0 = time.process_time(), time.perf_counter()
            ids = fn()
            runs.append(time.perf_counter() - t0)
            cpu_runs.append(time.process_time() - c0)
            del ids
        med, cpu_med = statistics.median(runs), statistics.median(cpu_runs)
        out["tokens"] = tokens
        out["modes"][name] = {
            "tokens": tokens, "seconds_cold": cold, "seconds_median": med, "runs": runs,
            "tokens_per_s": tokens / med, "mb_per_s": n_bytes / med / 1e6,
            "tokens_per_s_cold": tokens / cold, "mb_per_s_cold": n_bytes / cold / 1e6,
            "cpu_seconds_cold": cpu_cold, "cpu_seconds_median": cpu_med,
            "mb_per_s_cpu": n_bytes / cpu_med / 1e6}
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
