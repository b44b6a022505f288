#!/usr/bin/env python3
"""Expected outputs of one-line Jinja templates from jinja2 itself, configured as transformers
configures it (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols, its
tojson), for test_jinja: reads tests/jinja/templates.txt (one template a line, rendered with no
variables) and writes tests/jinja/expected.jsonl ({"template", "expected"} or {"template",
"error"} with jinja2's exception type).

    /work/venv/bin/python tools/jinja_expected.py [TEMPLATES.txt] [OUT.jsonl]
"""
import json
import os
import sys

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "jinja")
src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "templates.txt")
dst = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "expected.jsonl")
env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
env.filters["tojson"] = lambda x, ensure_ascii=False, indent=None, separators=None, sort_keys=False: json.dumps(
    x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
with open(src, encoding="utf-8") as f, open(dst, "w", encoding="utf-8") as out:
    for line in f:
        template = line.rstrip("\n")
        if not template:
            continue
        try:
            case = {"template": template, "expected": env.from_string(template).render()}
        except Exception as e:  # noqa: BLE001 - the type is what the test compares
            case = {"template": template, "error": type(e).__name__}
        out.write(json.dumps(case, ensure_ascii=False) + "\n")
print(f"{dst}: jinja2 {jinja2.__version__}")
