#!/usr/bin/env python3
"""The harvest benchmark's dataset (bench/run.sh, bench/harvest_bf16.sh): 512 lines of common
English words whose token counts spread evenly from 8 to 256 (one GPT-2 token a word), in no
particular order, as in a dataset nobody sorted by length.

Usage: /usr/bin/python3 bench/harvest_prompts.py OUT.txt
"""
import random
import sys

random.seed(1)
words = ("the of and a to in is was that for on with as by at from his her it an were are which "
         "this be had not but have one they you all we can there been if more when will would who "
         "so no time people year way day man thing woman life child world school state family").split()
lengths = [8 + (i * 248) // 511 for i in range(512)]
random.shuffle(lengths)
with open(sys.argv[1], "w") as f:
    for n in lengths:
        f.write(" ".join(random.choice(words) for _ in range(n)) + "\n")
