#!/usr/bin/env python3
"""bench_python: model.trace of nnterp_c against the C forward of bench_forward, same batch.

Usage: OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/bench_python.py MODEL_DIR [--batch 8]
           [--tokens 128] [--reps 5] [--hook-model models/demo] [--paired]

Mode "trace": model.trace(batch, save=["layers_output"]) — every layer's output copied into numpy
arrays by the engine's copy hook, last-position logits — the Python counterpart of bench_forward's
"layers_output" mode (the same prompts: token i = (i+1)*2654435761 mod 2^32 mod vocab). Each call
allocates its result arrays, as a user's call does. Prints the median seconds as JSON.

"hook_cost": the time a no-op Python hook adds per call, from a trace of the hook model with a hook
on every per-layer point against the same trace without hooks (median of reps; each trace makes
n_layers * 6 hook calls, at the per-token points; minima of the reps)."""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import nnterp_c as nc  # noqa: E402


def prompts(vocab, batch, tokens):
    i = np.arange(1, batch * tokens + 1, dtype=np.uint64)
    ids = ((i * np.uint64(2654435761)) % np.uint64(2 ** 32)) % np.uint64(vocab)
    return [row.astype(np.int32) for row in ids.reshape(batch, tokens)]


def timed(fn, reps):
    fn()  # warm-up
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def paired(m, batch, reps):
    """The C forward and model.trace alternately in this process: the C side is bench_forward's
    "layers_output" mode through the library's C API (a hook set of nn_hook_copy into buffers
    allocated once, nn_context_forward), the same code model.trace runs, so a paired ratio per
    round cancels most of what other processes do to the timings."""
    import ctypes
    from nnterp_c import _lib
    lib = _lib.lib
    ids = np.concatenate(batch).astype(np.int32)
    offsets = np.arange(0, ids.size + 1, batch[0].size, dtype=np.intc)
    err, hs = _lib.Err(), ctypes.c_void_p()
    assert lib.nn_hookset_create(ctypes.byref(hs), m.num_layers, ctypes.byref(err)) == 0
    bufs = [np.zeros((ids.size, m.hidden_size), dtype=np.float32) for _ in range(m.num_layers)]
    targets = [_lib.CopyTarget(b.ctypes.data, b.size, 0, 0, 0) for b in bufs]
    copy = ctypes.cast(lib.nn_hook_copy, ctypes.c_void_p)
    for layer, t in enumerate(targets):
        assert lib.nn_hookset_add(hs, _lib.HP["layers_output"], layer, copy,
                                  ctypes.addressof(t), ctypes.byref(err)) == 0
    b = _lib.Batch(ids.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)), ids.size, len(batch),
                   offsets.ctypes.data_as(ctypes.POINTER(ctypes.c_int)), None, None)
    fp = _lib.ForwardParams(hs.value, True)

    def c_forward():
        assert lib.nn_context_forward(m._ctx, ctypes.byref(b), ctypes.byref(fp),
                                      ctypes.byref(err)) == 0

    def py_trace():
        m.trace(batch, save=["layers_output"])
    c_forward()
    py_trace()
    cs, ps = [], []
    for _ in range(reps):
        for fn, dst in ((c_forward, cs), (py_trace, ps)):
            t0 = time.perf_counter()
            fn()
            dst.append(time.perf_counter() - t0)
    lib.nn_hookset_destroy(hs)
    ratios = [p / c for p, c in zip(ps, cs)]
    return {"c_forward_s": cs, "trace_s": ps, "ratio_median": statistics.median(ratios),
            "ratio_of_medians": statistics.median(ps) / statistics.median(cs),
            "ratio_of_minima": min(ps) / min(cs)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--hook-model", default=None)
    ap.add_argument("--paired", action="store_true")
    a = ap.parse_args()
    nc.blas_sleep_when_idle()
    m = nc.StandardizedTransformer(a.model)
    batch = prompts(m.vocab_size, a.batch, a.tokens)
    # The time inside the engine's forward call, to separate the package's own cost (packing,
    # hook set, result arrays) from the pass: on a loaded machine this difference is steadier
    # than a ratio of two separately timed runs.
    lib = nc._core.lib
    forward = lib.nn_context_forward
    inside = []

    def timed_forward(*args):
        t0 = time.perf_counter()
        rc = forward(*args)
        inside.append(time.perf_counter() - t0)
        return rc
    lib.nn_context_forward = timed_forward
    secs = timed(lambda: m.trace(batch, save=["layers_output"]), a.reps)
    lib.nn_context_forward = forward
    overhead = [t - f for t, f in zip(secs, inside[1:])]
    out = {"impl": "nnterp_c", "model": a.model, "batch": a.batch, "tokens": a.tokens,
           "threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
           "modes": {"trace": {"seconds_median": statistics.median(secs), "runs": secs,
                               "outside_forward_s_median": statistics.median(overhead),
                               "outside_forward_fraction_median":
                                   statistics.median([o / t for o, t in zip(overhead, secs)])}}}
    if a.hook_model:
        h = nc.StandardizedTransformer(a.hook_model)
        # per-token points only: hooking attention_probabilities would also switch the engine to
        # its full-softmax path, a cost of the engine, not of Python
        points = ["layers_input", "attentions_input", "attentions_output", "mlps_input",
                  "mlps_output", "layers_output"]
        hooks = {f"{p}.{l}": (lambda v: None) for p in points for l in range(h.num_layers)}
        small = prompts(h.vocab_size, 1, 8)
        # the minimum of many short runs: on a shared machine it is the figure least disturbed by
        # other processes (a median of 1 ms runs moves by more than the hooks cost)
        reps = max(a.reps, 50)
        base = min(timed(lambda: h.trace(small), reps))
        hooked = min(timed(lambda: h.trace(small, hooks=hooks), reps))
        plain_c = min(timed(lambda: h.trace(small, save=points), reps))
        out["hook_cost"] = {"model": a.hook_model, "calls_per_trace": len(hooks),
                            "trace_s": base, "trace_with_hooks_s": hooked,
                            "per_call_us": (hooked - base) / len(hooks) * 1e6,
                            "trace_with_c_copy_hooks_s": plain_c}
    if a.paired:
        out["paired"] = paired(m, batch, a.reps)
    json.dump(out, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
