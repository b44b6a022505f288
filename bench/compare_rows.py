#!/usr/bin/env python3
"""Rows of a store made from a subset of a job's prompts against the same prompts' rows in the
full store (the 8B run's one-stage check, docs/benchmarks-mpi.md): layers_output 0/10/20/31 and
the logit lens, bit for bit.

Usage: /usr/bin/python3 bench/compare_rows.py FULL.h5 SUB.h5 FIRST
  FIRST: the index in FULL.h5 of SUB.h5's first prompt (the subset is consecutive prompts).
"""
import sys, h5py
full, sub = h5py.File(sys.argv[1]), h5py.File(sys.argv[2])
fo, so = full["prompts/token_offsets"][:], sub["prompts/token_offsets"][:]
first = int(sys.argv[3])  # the sub-store's prompt 0 is the full store's prompt `first`
n = len(so) - 1
bad = []
for name in ("layers_output/0", "layers_output/10", "layers_output/20", "layers_output/31"):
    a = full["activations/" + name][fo[first]:fo[first + n]]
    b = sub["activations/" + name][:]
    if a.tobytes() != b.tobytes():
        bad.append(name)
for name in ("top_ids", "top_probs"):
    if full["logit_lens/" + name][first:first + n].tobytes() != sub["logit_lens/" + name][:].tobytes():
        bad.append("logit_lens/" + name)
print(f"prompts {first}..{first + n - 1} ({so[-1]} tokens): 1 stage vs 2 stages:",
      "bitwise identical" if not bad else f"DIFFER {bad}")
