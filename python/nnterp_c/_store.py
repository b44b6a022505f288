"""open_store: a trace's or a job's HDF5 store read through the engine's own reader (io/h5file.c),
as numpy arrays per prompt with its tokens and metadata (docs/trace-format.md, docs/jobs.md)."""
import ctypes
import json
import weakref
from ctypes import POINTER, byref, c_char_p, c_int, c_int64, c_uint64, c_void_p

import numpy as np

from . import _lib
from ._core import NnterpError, _check
from ._lib import lib

_H5_TYPES = {0: np.float32, 1: np.int32, 2: np.int64, 3: np.uint8, 4: np.float16, 5: np.uint16}
_BF16 = 5


def _names(fn, f, path):
    arr, n, err = POINTER(c_char_p)(), c_int(), _lib.Err()
    _check(fn(f, path.encode(), byref(arr), byref(n), byref(err)), err)
    try:
        return [arr[i].decode() for i in range(n.value)]
    finally:
        ptrs = ctypes.cast(arr, POINTER(c_void_p))
        for i in range(n.value):
            lib.nn_free(ptrs[i])
        lib.nn_free(ptrs)


class Store:
    """An open store. store["activations/layers_output/5"]: the whole dataset (float32; float16
    and bfloat16 datasets are widened); store.per_prompt(path): a list of per-prompt views of a
    dataset with one row per token (or per prompt); tokens, offsets, attrs (root attributes,
    model_config parsed), datasets (every dataset path)."""

    def __init__(self, path):
        if not _lib.has("nn_h5_open_read"):
            raise NnterpError("this libnnterp was built without HDF5: it cannot read stores")
        h, err = c_void_p(), _lib.Err()
        _check(lib.nn_h5_open_read(str(path).encode(), byref(h), byref(err)), err)
        self.path = str(path)
        self._h = h.value
        self._fin = weakref.finalize(self, lib.nn_h5_free, self._h)
        self._cache = {}
        self.datasets = []
        self._walk("/")
        self.attrs = {}
        for name in _names(lib.nn_h5_attr_names, self._h, "/"):
            err = _lib.Err()
            s = lib.nn_h5_get_attr_string(self._h, b"/", name.encode(), byref(err))
            if s:
                self.attrs[name] = _lib.take_string(s)
                continue
            v = c_int64()
            if lib.nn_h5_get_attr_i64(self._h, b"/", name.encode(), byref(v), byref(err)) == 0:
                self.attrs[name] = v.value
        if isinstance(self.attrs.get("model_config"), str):
            try:
                self.attrs["model_config"] = json.loads(self.attrs["model_config"])
            except ValueError:
                pass
        self.offsets = self["prompts/token_offsets"] if "prompts/token_offsets" in self else None
        self.tokens = self["tokens/ids"] if "tokens/ids" in self else None

    def close(self):
        self._fin()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _walk(self, group):
        for name in _names(lib.nn_h5_list, self._h, group):
            full = (group.rstrip("/") + "/" + name).lstrip("/")
            if name.endswith("/"):
                self._walk("/" + full.rstrip("/"))
            else:
                self.datasets.append(full)

    def __contains__(self, path):
        return path.strip("/") in self.datasets

    def keys(self):
        return list(self.datasets)

    @property
    def n_prompts(self):
        return None if self.offsets is None else len(self.offsets) - 1

    def __getitem__(self, path):
        path = path.strip("/")
        if path in self._cache:
            return self._cache[path]
        if path not in self.datasets:
            raise KeyError(f"{self.path}: no dataset {path}")
        t, rank, dims, err = c_int(), c_int(), (c_uint64 * 8)(), _lib.Err()
        cpath = ("/" + path).encode()
        _check(lib.nn_h5_shape(self._h, cpath, byref(t), byref(rank), dims, byref(err)), err)
        shape = tuple(int(dims[i]) for i in range(rank.value))
        a = np.empty(shape, dtype=_H5_TYPES[t.value])
        _check(lib.nn_h5_read(self._h, cpath, a.ctypes.data, a.nbytes, byref(err)), err)
        if t.value == _BF16:  # the top half of a float32
            a = (a.astype(np.uint32) << 16).view(np.float32)
        elif a.dtype == np.float16:
            a = a.astype(np.float32)
        self._cache[path] = a
        return a

    def per_prompt(self, path):
        a = self[path]
        o = self.offsets
        if o is None:
            raise NnterpError(f"{self.path}: no prompts/token_offsets")
        P = len(o) - 1
        if a.shape[0] == o[-1]:
            return [a[o[p]:o[p + 1]] for p in range(P)]
        if a.shape[0] == P:
            return [a[p] for p in range(P)]
        raise NnterpError(f"{self.path}: {path} has {a.shape[0]} rows, neither one per token "
                          f"({o[-1]}) nor one per prompt ({P})")


def open_store(path):
    return Store(path)
