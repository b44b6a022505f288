#!/usr/bin/env bash
# Pictures end to end: nnterp lens/patchscope --plot and nnterp plot, read back as a user would.
# - the HTML page: one cell per layer x rank, each cell's id and probability equal to the numbers
#   of `nnterp lens -o` / the job's store (float32, exactly), its layer and its token text;
# - the PNG (decoded with PIL): the size of the page's SVG at scale 2, every cell of the page's
#   colour at the same place with text drawn on it, the title, the colour bar;
# - nnterp plot of a job store (logit_lens + patchscope_lens, --prompt, -k, --op) and of a lens file;
# - the errors: a bad extension, a missing store, a prompt out of range, a store without results.
set -u
NNTERP=$1
. "$(dirname "$0")/lib.sh"
need_shared test_plot models/stories260K
need_python test_plot h5py numpy PIL
PY=/usr/bin/python3
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T"
expect() { # name, expected exit code, output needle, command...
  local name=$1 code=$2 needle=$3
  shift 3
  "$@" >out 2>err
  local rc=$?
  if [ "$rc" -eq "$code" ] && grep -qF -- "$needle" err out; then ok "$name"; else
    bad "$name (exit $rc, wanted $code; output: $(cat out err | head -3))"
  fi
}
MODEL=$S/models/stories260K/hf
PROMPT="Once upon a time, there was a little girl named"

# The page parser and checks, shared by the cases below.
cat >check.py <<'PY'
import html.parser, sys, numpy as np
from PIL import Image

class Page(html.parser.HTMLParser):
    def __init__(self, path):
        super().__init__()
        self.panels, self.cell, self.texts, self.stops, self.bar = [], None, [], [], None
        self.in_text = self.in_colorbar = False
        self.feed(open(path, encoding="utf-8").read())
    def handle_starttag(self, tag, a):
        a = dict(a)
        if tag == "svg":
            self.w, self.h = float(a["width"]), float(a["height"])
        elif tag == "g" and a.get("class") == "panel":
            self.panels.append(dict(rows=int(a["data-rows"]), k=int(a["data-k"]), cells=[], texts=[]))
        elif tag == "g" and a.get("class") == "cell":
            self.cell = dict(row=int(a["data-row"]), rank=int(a["data-rank"]), id=int(a["data-id"]),
                             prob=np.float32(a["data-prob"]), label=a["data-label"],
                             token=a["data-token"], text=[])
            self.panels[-1]["cells"].append(self.cell)
        elif tag == "g" and a.get("class") == "colorbar":
            self.in_colorbar = True
        elif tag == "rect" and self.cell is not None:
            self.cell.update(x=float(a["x"]), y=float(a["y"]), w=float(a["width"]),
                             h=float(a["height"]), fill=a["fill"])
        elif tag == "rect" and self.in_colorbar:
            self.bar = [float(a[k]) for k in ("x", "y", "width", "height")]
        elif tag == "stop":
            self.stops.append(a["stop-color"])
        elif tag == "text":
            self.in_text = a.get("class")
    def handle_endtag(self, tag):
        if tag == "g":
            self.cell = None
        if tag == "text":
            self.in_text = False
    def handle_data(self, data):
        if self.in_text and self.cell is not None:
            self.cell["text"].append(data)
        elif self.in_text:
            (self.panels[-1]["texts"] if self.panels else self.texts).append((self.in_text, data))

def cells_of(panel):
    """[rows][k] from a panel's cells, checking there is one per row and rank."""
    grid = [[None] * panel["k"] for _ in range(panel["rows"])]
    for c in panel["cells"]:
        assert grid[c["row"]][c["rank"] - 1] is None, "two cells at one place"
        grid[c["row"]][c["rank"] - 1] = c
    assert all(c is not None for row in grid for c in row), "a missing cell"
    assert len(panel["cells"]) == panel["rows"] * panel["k"]
    return grid

def same_numbers(panel, ids, probs, layers, k=None):
    """The panel's cells hold exactly ids/probs [layers, k] for these layers."""
    grid = cells_of(panel)
    k = k or ids.shape[1]
    assert panel["rows"] == len(layers) and panel["k"] == k, (panel["rows"], panel["k"], len(layers), k)
    for r, row in enumerate(grid):
        for j, c in enumerate(row):
            assert c["id"] == ids[r, j], (r, j, c["id"], ids[r, j])
            assert c["prob"] == probs[r, j], (r, j, c["prob"], probs[r, j])
            assert c["label"] == str(layers[r]), (c["label"], layers[r])
            shown = "".join(c["text"])
            assert shown.startswith("'") or shown.startswith("#") or shown == "(empty)", shown
            assert c["text"][-1] == "%.3f" % c["prob"], (c["text"], c["prob"])

def png_matches(page, png, scale=2):
    """The PNG is the page drawn at `scale`: size, each cell's colour in place, text on each cell."""
    im = Image.open(png).convert("RGB")
    W, H = im.size
    assert (W, H) == (round(page.w * scale), round(page.h * scale)), (im.size, page.w, page.h)
    px = im.load()
    hexc = lambda v: "#%02x%02x%02x" % v
    n = 0
    for p in page.panels:
        for c in p["cells"]:
            x0, y0 = int(round(c["x"] * scale)), int(round(c["y"] * scale))
            x1, y1 = int(c["x"] + c["w"]) * scale, int(c["y"] + c["h"]) * scale
            corner = hexc(px[x0 + 3, y0 + 3])
            assert corner == c["fill"], ("cell colour", c["row"], c["rank"], corner, c["fill"])
            fill = tuple(int(c["fill"][i:i + 2], 16) for i in (1, 3, 5))
            ink = sum(1 for x in range(x0 + 2, x1 - 2, 1) for y in range(y0 + 2, y1 - 2, 1)
                      if sum(abs(a - b) for a, b in zip(px[x, y], fill)) > 150)
            assert ink > 40 * scale, ("no text drawn in cell", c["row"], c["rank"], ink)
            n += 1
    # the title: ink in the top band
    top = sum(1 for x in range(0, min(W, 400 * scale)) for y in range(0, 40 * scale)
              if sum(px[x, y]) < 300)
    assert top > 100, ("no title", top)
    # the colour bar: viridis(1) at the top, viridis(0) at the bottom, as the page's gradient
    bx, by, bw, bh = page.bar
    near = lambda a, b: all(abs(u - v) <= 4 for u, v in zip(a, b))
    t, b = px[int((bx + bw / 2) * scale), int(by * scale) + 1], px[int((bx + bw / 2) * scale), int((by + bh) * scale) - 2]
    rgb = lambda h: tuple(int(h[i:i + 2], 16) for i in (1, 3, 5))
    assert near(t, rgb(page.stops[-1])) and near(b, rgb(page.stops[0])), ("colour bar", t, b)
    return n
PY

# --- nnterp lens --plot: one panel per position, the numbers of -o -------------------------------
"$NNTERP" lens -m "$MODEL" -p "$PROMPT" --positions -1,-3 -k 6 -o lens.h5 --plot lens.html >lens.txt 2>err \
  && grep -q "wrote lens.html (2 panels" err || bad "lens --plot html: $(cat err)"
"$NNTERP" lens -m "$MODEL" -p "$PROMPT" --positions -1,-3 -k 6 --plot lens.png >/dev/null 2>err \
  && grep -q "wrote lens.png (2 panels" err && ! grep -q "no glyph" err || bad "lens --plot png: $(cat err)"
$PY - <<'PY' && ok "lens --plot: the page's cells are the lens' numbers (ids, float32 probabilities, layers)" || bad "lens page vs lens.h5"
import sys, h5py; sys.path.insert(0, ".")
from check import *
f = h5py.File("lens.h5", "r")
ids, probs, layers = f["lens/top_ids"][:], f["lens/top_probs"][:], f["lens/layers"][:]
page = Page("lens.html")
assert len(page.panels) == ids.shape[1] == 2
for j, p in enumerate(page.panels):
    same_numbers(p, ids[:, j, :], probs[:, j, :], layers)
# the last layer's favourite after "named" is " Lily", its leading space shown as ␣
top = cells_of(page.panels[0])[len(layers) - 1][0]
assert top["token"] == "'\u2423Lily'" and "".join(top["text"]).startswith("'\u2423Lily'"), top
# titles: the model, the prompt, the position
assert any("Logit lens" in t and "stories260K" in t for _, t in page.texts), page.texts
assert any("position 13 of 14, after '\u2423named'" in t for _, t in page.panels[0]["texts"])
PY
$PY - <<'PY' && ok "lens --plot: the PNG is the page drawn at scale 2 (size, cell colours in place, text in every cell, title, colour bar)" || bad "lens PNG vs page"
import sys; sys.path.insert(0, ".")
from check import *
assert png_matches(Page("lens.html"), "lens.png") == 2 * 5 * 6
PY

# --- nnterp plot of the lens file: the same cells ------------------------------------------------
"$NNTERP" plot lens.h5 -o lensfile.html 2>err >/dev/null || bad "plot lens.h5: $(cat err)"
$PY - <<'PY' && ok "plot LENS.h5 draws what lens --plot drew" || bad "plot of the lens file"
import sys; sys.path.insert(0, ".")
from check import *
a, b = Page("lens.html"), Page("lensfile.html")
strip = lambda pg: [[(c["id"], c["prob"], c["token"], c["label"], c["row"], c["rank"]) for c in p["cells"]] for p in pg.panels]
assert strip(a) == strip(b)
PY

# --- patchscope --plot ----------------------------------------------------------------------------
"$NNTERP" patchscope -m "$MODEL" --source "Lily and Tom" -k 5 --plot ps.html >ps.txt 2>err || bad "patchscope --plot: $(cat err)"
$PY - <<'PY' && ok "patchscope --plot: a row per layer, the printed probabilities" || bad "patchscope page"
import re, sys; sys.path.insert(0, ".")
from check import *
page = Page("ps.html")
assert len(page.panels) == 1
grid = cells_of(page.panels[0])
lines = [l for l in open("ps.txt") if l.startswith("  layer")]
assert len(lines) == len(grid) == 5
for l, row in zip(lines, grid):
    layer = int(l.split()[1])
    printed = re.findall(r"(?<=\s)(\d\.\d{3})(?=\s|$)", l)
    assert printed == ["%.3f" % c["prob"] for c in row], (printed, l)
    assert all(c["label"] == str(layer) for c in row)
assert any(t.startswith("patched at index -1 of ") for _, t in page.panels[0]["texts"])
PY

# --- nnterp plot of a job's store -----------------------------------------------------------------
printf '%s\n' '{"text": "Once upon a time, there was a little girl named"}' \
  '{"text": "Lily saw a 😀 dog.\nShe was 東京 happy"}' '{"text": "Tom and Sue went to the park"}' >prompts.jsonl
cat >job.json <<JOB
{"model": "$MODEL", "dataset": {"path": "prompts.jsonl"}, "output": "store.h5",
 "operations": [{"op": "logit_lens", "top_k": 5, "positions": [-1, -2]},
                {"op": "patchscope_lens", "layers": "1:4", "top_k": 4}]}
JOB
"$NNTERP" run job.json >/dev/null 2>err || bad "run: $(cat err)"
"$NNTERP" plot store.h5 -o store.html 2>err >/dev/null && grep -q "9 panels" err || bad "plot store: $(cat err)"
"$NNTERP" plot store.h5 -o store.png 2>err >/dev/null && ! grep -q "no glyph" err || bad "plot store png: $(cat err)"
"$NNTERP" plot store.h5 --prompt 1 -k 3 -o p1.html 2>err >/dev/null || bad "plot --prompt: $(cat err)"
"$NNTERP" plot store.h5 --prompt 2,0 --op patchscope_lens -o ps2.html 2>err >/dev/null || bad "plot --op: $(cat err)"
$PY - <<'PY' && ok "plot STORE.h5: per prompt, its lens rows then its patchscope, equal to the store; --prompt, -k, --op" || bad "store pages"
import sys, h5py, numpy as np; sys.path.insert(0, ".")
from check import *
f = h5py.File("store.h5", "r")
L = f["logit_lens"]; P = f["patchscope_lens"]
ti, offs = L["token_index"][:], f["prompts/token_offsets"][:]
prompt_of = lambda t: int(np.searchsorted(offs, t, side="right") - 1)
def expected(prompts, k=None, lens=True, scope=True):
    out = []
    for p in prompts:
        if lens:
            for r in range(len(ti)):
                if prompt_of(ti[r]) == p:
                    out.append((L["top_ids"][r], L["top_probs"][r], L["layers"][:], "prompt %d, position %d" % (p, ti[r] - offs[p])))
        if scope:
            out.append((P["top_ids"][p], P["top_probs"][p], P["layers"][:], "prompt %d, patchscope" % p))
    return out
for path, prompts, k, lens in (("store.html", [0, 1, 2], None, True), ("p1.html", [1], 3, True),
                                ("ps2.html", [2, 0], None, False)):
    page, want = Page(path), expected(prompts, k, lens)
    assert len(page.panels) == len(want), (path, len(page.panels), len(want))
    for panel, (ids, probs, layers, sub) in zip(page.panels, want):
        kk = k or ids.shape[1]
        same_numbers(panel, ids[:, :kk], probs[:, :kk], layers, kk)
        assert any(sub in t for _, t in panel["texts"]), (path, sub, panel["texts"])
# prompt text as the panel's title, newline made visible, emoji and CJK kept
titles = lambda path, i: [t for c, t in Page(path).panels[i]["texts"] if c == "ptitle"]
assert titles("store.html", 3) == ["Lily saw a \U0001F600 dog.\\nShe was \u6771\u4eac happy"], titles("store.html", 3)
# a title too long for its panel keeps the prompt's end
t = titles("p1.html", 0)[0]
assert t.startswith("\u2026") and t.endswith("She was \u6771\u4eac happy"), t
PY
$PY - <<'PY' && ok "plot STORE.h5 PNG is its page drawn at scale 2" || bad "store PNG vs page"
import sys; sys.path.insert(0, ".")
from check import *
assert png_matches(Page("store.html"), "store.png") == 3 * 2 * 5 * 5 + 3 * 3 * 4
PY

# --- errors ---------------------------------------------------------------------------------------
expect "lens --plot with a bad extension is a usage error" 2 ".png or .html" \
  "$NNTERP" lens -m "$MODEL" -p "$PROMPT" --plot x.svg
expect "patchscope --plot with a bad extension" 2 ".png or .html" \
  "$NNTERP" patchscope -m "$MODEL" --source "Lily" --plot x.pdf
expect "plot needs -o" 2 "-o FILE.png" "$NNTERP" plot store.h5
expect "plot of a missing store" 1 "no such file" "$NNTERP" plot missing.h5 -o x.png
expect "plot --prompt out of range" 1 "prompts 0..2" "$NNTERP" plot store.h5 --prompt 7 -o x.png
expect "plot --op unknown" 2 "logit_lens or patchscope_lens" "$NNTERP" plot store.h5 --op steer -o x.png
"$NNTERP" trace -m "$MODEL" -p "Lily" --save layers_output --layers -1 -o trace.h5 2>/dev/null
expect "plot of a trace file (no top-k results)" 1 "holds no top-k" "$NNTERP" plot trace.h5 -o x.png
cp store.h5 newer.h5 && /usr/bin/python3 -c "import h5py; h5py.File('newer.h5', 'r+').attrs['format_version'] = 2"
expect "plot of a store of a newer format_version" 1 "newer.h5: format_version 2 of nnterp-store; this nnterp reads versions 1 to 1" \
  "$NNTERP" plot newer.h5 -o x.png
echo '{"model": "'"$MODEL"'", "dataset": {"path": "prompts.jsonl"}, "output": "collect.h5", "operations": [{"op": "collect", "hooks": ["ln_final"]}]}' >c.json
"$NNTERP" run c.json >/dev/null 2>&1
expect "plot of a store without lens results" 1 "no logit_lens or patchscope_lens results" \
  "$NNTERP" plot collect.h5 -o x.png
[ ! -e x.png ] && ok "no picture left by a failed plot" || bad "a failed plot left x.png"

finish test_plot
