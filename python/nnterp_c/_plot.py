"""plot_topk_tokens drawn by the engine's own plotter (io/plot.c): the PNG and HTML pictures the
CLI draws, returned as an object that shows itself in Jupyter."""
import os
import tempfile
from ctypes import byref, c_char_p

import numpy as np

from . import _lib
from ._core import NnterpError, _check
from ._lib import lib


class TopkPlot:
    """A drawn top-k picture. png: the PNG's bytes; html: the self-contained page; width/height:
    the PNG's size in pixels. Jupyter shows it through _repr_png_ / _repr_html_."""

    def __init__(self, png, html, width, height, files):
        self.png, self.html, self.width, self.height, self.files = png, html, width, height, files

    def _repr_png_(self):
        return self.png

    def _repr_html_(self):
        return self.html

    def save(self, path):
        path = str(path)
        if path.endswith(".png"):
            data = self.png
        elif path.endswith((".html", ".htm")):
            data = self.html.encode()
        else:
            raise ValueError(f"{path}: the picture is written as .png or .html")
        with open(path, "wb") as f:
            f.write(data)


def _draw(fn, plot, path):
    info, err = _lib.PlotInfo(), _lib.Err()
    _check(fn(byref(plot), path.encode(), byref(info), byref(err)), err)
    return info


def plot_topk_tokens(probs, tokenizer, k=4, title=None, file=None, panel_titles=None,
                     layers=None):
    """probs: (L, V) or (B, L, V) probabilities (logit_lens, patchscope_lens); a heatmap per
    prompt of the k most probable tokens at each layer (ties: the lower id first, as the engine's
    nn_top_k), coloured by probability. file: also write it there (.png or .html)."""
    if not _lib.has("nn_plot_png"):
        raise NnterpError("this libnnterp was built without the plotter (cairo/pango)")
    p = np.asarray(probs, dtype=np.float32)
    if p.ndim == 2:
        p = p[None]
    if p.ndim != 3 or p.shape[2] < 1:
        raise ValueError(f"probs must be (L, V) or (B, L, V), got shape {np.shape(probs)}")
    B, L, V = p.shape
    if not 1 <= k <= V:
        raise ValueError(f"k={k} must be in 1..{V}")
    layers = list(range(L)) if layers is None else list(layers)
    if len(layers) != L:
        raise ValueError(f"{len(layers)} layer labels for {L} rows")
    keep = []  # every buffer C points to, alive until drawn
    panels = (_lib.PlotPanel * B)()
    for b in range(B):
        order = np.argsort(-p[b], axis=1, kind="stable")[:, :k]
        cells = (_lib.PlotCell * (L * k))()
        for li in range(L):
            for r in range(k):
                tid = int(order[li, r])
                text = tokenizer.decode([tid]).encode() if tokenizer is not None else None
                keep.append(text)
                cells[li * k + r] = _lib.PlotCell(text, tid, float(p[b, li, tid]))
        labels = (c_char_p * L)(*[str(x).encode() for x in layers])
        t = panel_titles[b].encode() if panel_titles else None
        keep += [cells, labels, t]
        panels[b] = _lib.PlotPanel(t, None, L, k, labels, cells)
    ttl = title.encode() if title else None
    plot = _lib.Plot(ttl, None, None, panels, B, 0, 0.0)
    files = []
    with tempfile.TemporaryDirectory() as d:
        png_path, html_path = os.path.join(d, "p.png"), os.path.join(d, "p.html")
        info = _draw(lib.nn_plot_png, plot, png_path)
        _draw(lib.nn_plot_html, plot, html_path)
        with open(png_path, "rb") as f:
            png = f.read()
        with open(html_path, encoding="utf-8") as f:
            html = f.read()
    out = TopkPlot(png, html, info.width, info.height, files)
    if file is not None:
        out.save(file)
        files.append(str(file))
    return out
