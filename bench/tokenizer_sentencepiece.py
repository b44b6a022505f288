#!/usr/bin/python3
"""The Llama 2 reference for bench/tokenizer.sh: Google's SentencePiece (Debian's
python3-sentencepiece) encoding the corpus line by line, timed like bench_tokenizer.c.

Usage: bench/tokenizer_sentencepiece.py TOKENIZER_MODEL CORPUS_FILE [--reps R]
                                        [--dump-ids OUT [--dump-every K]]

Two modes over the same lines (each line without its '\\n', no BOS/EOS):
  per_line  sp.encode(line) in a Python loop, one call per document;
  batch     sp.encode(list_of_lines), one call for the whole corpus (SentencePiece's own fast
            path: the loop runs in C++; with num_threads=1 it stays on one thread).
Each mode makes a first pass, reported apart as "cold", then R timed passes; the JSON on stdout
gives the medians (wall clock; cpu_seconds_* and mb_per_s_cpu from the process's CPU time, which
other work on a busy machine does not inflate). Lines are decoded from UTF-8 before timing (the
corpus is valid UTF-8), so the timed work is SentencePiece's plus the Python call overhead of
each mode. --dump-ids writes every K-th line's ids ("LINENO<TAB>ids") as bench_tokenizer does.
"""
import argparse
import json
import statistics
import sys
import time

try:
    import sentencepiece as spm
except ImportError:
    sys.exit("tokenizer_sentencepiece.py: no sentencepiece module; install Debian's "
             "python3-sentencepiece (apt-get install -y python3-sentencepiece)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("corpus")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--dump-ids")
    ap.add_argument("--dump-every", type=int, default=1000)
    ap.add_argument("--modes", default="per_line,batch")
    a = ap.parse_args()

    sp = spm.SentencePieceProcessor(model_file=a.model)
    with open(a.corpus, "rb") as f:
        data = f.read()
    raw = data.split(b"\n")
    if raw and raw[-1] == b"":
        raw.pop()
    lines = [x.decode("utf-8") for x in raw]
    n_bytes = sum(len(x) for x in raw)
    del raw, data

    def per_line():
        enc = sp.encode
        return [enc(x) for x in lines]

    def batch():
        return sp.encode(lines, num_threads=1)

    out = {"implementation": "sentencepiece", "version": spm.__version__, "lines": len(lines),
           "bytes": n_bytes, "reps": a.reps, "modes": {}}
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
