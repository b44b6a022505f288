#!/usr/bin/env bash
# nnterp plot STORE.h5 --feature F: an SAE feature's page from a job's sae operation, as a PNG and
# as a self-contained HTML page that headless Chromium (no network) renders with its histogram and
# shaded contexts; the contexts are the store's top examples of the feature, in order.
set -u
NNTERP=$1
. "$(dirname "$0")/lib.sh"
need_shared test_sae_plot models/stories260K
need_python test_sae_plot h5py PIL
SRC=$(cd "$(dirname "$0")/.." && pwd)
PY=/usr/bin/python3
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T"
printf 'Once upon a time there was a little girl.\nThe cat sat on the mat.\nTom had a big red ball.\nShe was happy.\n' >p.txt
cat >job.json <<JOB
{"model": "$S/models/stories260K/hf", "dataset": {"path": "p.txt", "max_tokens": 32},
 "operations": [{"op": "sae", "sae": "$SRC/tests/sae/stories_topk", "top_n": 6}], "output": "s.h5"}
JOB
"$NNTERP" run job.json >/dev/null 2>err || { bad "run: $(cat err)"; finish test_sae_plot; exit 1; }
F=$($PY -c 'import h5py; print(int(h5py.File("s.h5")["sae/0/features/count"][:].argmax()))')
"$NNTERP" plot s.h5 --feature "$F" -o f.html 2>err && "$NNTERP" plot s.h5 --feature "$F" -o f.png 2>>err ||
  bad "plot --feature: $(cat err)"
$PY - "$F" <<'PY' && ok "the page lists the store's top examples of feature $F in order; the PNG is drawn" || bad "page contents"
import re, sys, h5py
from PIL import Image
F = int(sys.argv[1])
f = h5py.File("s.h5")
g = f["sae/0/features"]
page = open("f.html", encoding="utf-8").read()
labels = re.findall(r'<span class="lab">([\d.]+) p(\d+):(\d+)</span>', page)
n = int((g["top_prompts"][F] >= 0).sum())
assert len(labels) == n, (len(labels), n)
for (v, p, pos), wv, wp, wpos in zip(labels, g["top_values"][F], g["top_prompts"][F], g["top_positions"][F]):
    assert (int(p), int(pos)) == (wp, wpos) and abs(float(v) - wv) < 1e-3, (v, p, pos, wv, wp, wpos)
assert len(re.findall(r'<rect [^>]*fill="#e07020"', page)) == 40
assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "") and "src=" not in page
im = Image.open("f.png").convert("RGB")
orange = sum(n for n, c in im.getcolors(im.size[0] * im.size[1]) if c[0] > 200 and 90 < c[1] < 140 and c[2] < 60)
assert im.size[0] > 1000 and orange > 2000, (im.size, orange)
PY
CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
if [ -n "$CHROMIUM" ]; then
  HOME=$T timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync --disable-extensions \
    --disable-default-apps --no-default-browser-check --hide-scrollbars --force-device-scale-factor=1 \
    --force-color-profile=srgb --host-resolver-rules="MAP * ~NOTFOUND" --user-data-dir="$T/profile" \
    --window-size=1000,700 --screenshot="$T/shot.png" "file://$T/f.html" >chromium.log 2>&1
  $PY - <<'PY' && ok "headless Chromium renders the page by itself: histogram bars and shaded tokens" || bad "chromium: $(tail -3 chromium.log)"
from PIL import Image
im = Image.open("shot.png").convert("RGB")
cols = im.getcolors(im.size[0] * im.size[1])
bars = sum(n for n, c in cols if c == (224, 112, 32))
shaded = sum(n for n, c in cols if c[0] > 225 and 120 < c[1] < 250 and c[2] < 200 and c != (255, 255, 255))
assert len(cols) > 30 and bars > 500 and shaded > 200, (len(cols), bars, shaded)
PY
else
  skip "chromium absent: the page's rendering untested"
fi
"$NNTERP" plot s.h5 --feature 100000 -o x.html >out 2>err
[ $? -eq 1 ] && grep -q "features 0..255" err && ok "a feature out of range: a clear error" || bad "range: $(cat err)"
"$NNTERP" plot s.h5 --feature 3 --sae 4 -o x.html >out 2>err
[ $? -eq 1 ] && grep -q "no /sae/4/features/count" err && ok "an SAE the store lacks: a clear error" || bad "sae 4: $(cat err)"
finish test_sae_plot
