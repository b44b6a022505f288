#!/usr/bin/env python3
"""Expected outputs of one-line Jinja templates from jinja2 itself, configured as transformers
configures it (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols, its
tojson, the {% generation %} tag), for test_jinja: reads tests/jinja/templates.txt (one template a
line) and tests/jinja/whitespace.blocks (multi-line templates separated by lines "----"), rendered
with no variables, and writes tests/jinja/expected.jsonl ({"template", "expected"} or {"template",
"error"} with jinja2's exception type).

    /work/venv/bin/python tools/jinja_expected.py [TEMPLATES.txt] [OUT.jsonl]
"""
import json
import os
import sys

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "jinja")
src = sys.argv[1] if len(sys.argv) > 1 else ",".join(os.path.join(here, f) for f in ("templates.txt", "whitespace.blocks"))
dst = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "expected.jsonl")
class Generation(jinja2.ext.Extension):
    """transformers' {% generation %} tag, rendered as its body."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

    def _body(self, caller):
        return caller()


env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                    extensions=["jinja2.ext.loopcontrols", Generation])
env.filters["tojson"] = lambda x, ensure_ascii=False, indent=None, separators=None, sort_keys=False: json.dumps(
    x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def templates(path):
    """One template a line, or for a .blocks file, templates separated by lines '----'."""
    text = open(path, encoding="utf-8").read()
    if path.endswith(".blocks"):
        return text.split("\n----\n")
    return [line for line in text.split("\n") if line]


with open(dst, "w", encoding="utf-8") as out:
    for template in [t for p in src.split(",") for t in templates(p)]:
        try:
            case = {"template": template, "expected": env.from_string(template).render()}
        except Exception as e:  # noqa: BLE001 - the type is what the test compares
            case = {"template": template, "error": type(e).__name__}
        out.write(json.dumps(case, ensure_ascii=False) + "\n")
print(f"{dst}: jinja2 {jinja2.__version__}")
