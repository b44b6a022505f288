#!/usr/bin/env bash
# The HTML page as a browser shows it: headless Chromium (no network: every host name fails to
# resolve) loads `nnterp lens --plot page.html` and takes a screenshot at the page's size. The
# screenshot must have that size, not be blank, and show every cell of the SVG in its colour at
# its place with text on it: the page renders by itself, with nothing fetched.
set -u
NNTERP=$1
. "$(dirname "$0")/lib.sh"
need_shared test_plot_chromium models/stories260K
CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$CHROMIUM" ]; then
  echo "SKIPPED: test_plot_chromium needs Debian's chromium (tools/setup.sh installs it)"; exit 77
fi
need_python test_plot_chromium PIL
PY=/usr/bin/python3
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T"
"$NNTERP" lens -m "$S/models/stories260K/hf" -p "Once upon a time, there was a little girl named" \
  --positions -1,-2 -k 5 --plot page.html >/dev/null 2>err || { echo "FAIL lens --plot: $(cat err)"; exit 1; }
read -r W H < <($PY -c "
import re; s = open('page.html', encoding='utf-8').read()
m = re.search(r'<svg [^>]*width=\"(\d+)\" height=\"(\d+)\"', s); print(m.group(1), m.group(2))")
HOME=$T timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync --disable-extensions \
  --disable-default-apps --no-default-browser-check --hide-scrollbars --force-device-scale-factor=1 \
  --force-color-profile=srgb --host-resolver-rules="MAP * ~NOTFOUND" --user-data-dir="$T/profile" \
  --window-size="$W,$H" --screenshot="$T/shot.png" "file://$T/page.html" >chromium.log 2>&1
rc=$?
if [ $rc -ne 0 ] || [ ! -s shot.png ]; then
  echo "FAIL chromium exited $rc without a screenshot:"; tail -5 chromium.log; exit 1
fi
$PY - "$W" "$H" <<'PY'
import re, sys
from PIL import Image
W, H = int(sys.argv[1]), int(sys.argv[2])
im = Image.open("shot.png").convert("RGB")
assert im.size == (W, H), ("screenshot size", im.size, (W, H))
px = im.load()
colours = im.getcolors(W * H)
white = sum(n for n, c in colours if c == (255, 255, 255))
assert len(colours) > 50, ("blank: %d colours" % len(colours))
assert 0.2 < 1 - white / (W * H) < 0.95, ("ink fraction", 1 - white / (W * H))
page = open("page.html", encoding="utf-8").read()
cells = re.findall(r'<rect x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" height="([\d.]+)" fill="#([0-9a-f]{6})"/>', page)
assert len(cells) == 2 * 5 * 5, len(cells)
for x, y, w, h, fill in cells:
    x, y, w, h = float(x), float(y), float(w), float(h)
    want = tuple(int(fill[i:i + 2], 16) for i in (0, 2, 4))
    got = px[int(x) + 3, int(y) + 3]
    assert all(abs(a - b) <= 3 for a, b in zip(got, want)), ("cell colour", x, y, got, want)
    ink = sum(1 for u in range(int(x) + 2, int(x + w) - 2) for v in range(int(y) + 2, int(y + h) - 2)
              if sum(abs(a - b) for a, b in zip(px[u, v], want)) > 150)
    assert ink > 40, ("no text in the cell at", x, y, ink)
print("ok   chromium rendered the page: %dx%d, %d colours, %d cells in place with text" % (W, H, len(colours), len(cells)))
PY
