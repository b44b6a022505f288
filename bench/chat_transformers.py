#!/usr/bin/env python3
"""The reference for bench_chat: transformers' own rendering path (its compiled jinja2 template,
render_jinja_template) on the cases of a ../shared/chat file, timed the same way (microseconds per
render, median of R reps of N passes over the cases).

    /work/venv/bin/python bench/chat_transformers.py CASES.jsonl [REPS] [ITERS]
"""
import json, statistics, sys, time

from transformers.utils.chat_template_utils import render_jinja_template

lines = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 5
iters = int(sys.argv[3]) if len(sys.argv) > 3 else 200
head, cases = lines[0], [c for c in lines[1:] if "expected_error" not in c]
special = {k: v for k, v in head["special_tokens"].items() if v is not None}
runs = []
for _ in range(reps):
    t0 = time.perf_counter()
    for _ in range(iters):
        for c in cases:
            render_jinja_template(conversations=[c["messages"]], tools=c.get("tools"),
                                  chat_template=head["template"],
                                  add_generation_prompt=c["add_generation_prompt"],
                                  continue_final_message=c["continue_final_message"], **special)
    runs.append((time.perf_counter() - t0) / (iters * len(cases)) * 1e6)
print(json.dumps({"cases": len(cases), "reps": reps, "iters": iters,
                  "us_per_render": round(statistics.median(runs), 2)}))
