"""StandardizedTransformer, its tokenizer and model.trace: the engine's forward pass with hooks."""
import ctypes
import inspect
import json
import threading
import weakref
from ctypes import POINTER, byref, c_float, c_int, c_int32, c_size_t, c_void_p

import numpy as np

from . import _lib
from ._lib import lib


class NnterpError(RuntimeError):
    """An error the engine reported; the message names the file and the field."""


def _check(rc, err):
    if rc == _lib.NN_ERR:
        raise NnterpError(err.text())
    return rc


STOP = object()
"""Returned by a hook: end the forward pass after this hook point (nnterp's tracer.stop())."""


def _int_array(values):
    a = np.ascontiguousarray(values, dtype=np.int32)
    return a, a.ctypes.data_as(POINTER(c_int32))


def _cint_array(values):
    a = np.ascontiguousarray(values, dtype=np.intc)
    return a, a.ctypes.data_as(POINTER(c_int))


def _float_ptr(a):
    return a.ctypes.data_as(POINTER(c_float))


class Tokenizer:
    """The model's tokenizer (tokenizer.json or llama2.c tokenizer.bin), exact as Hugging Face's."""

    def __init__(self, handle, owner=None):
        self._h = handle
        self._owner = owner
        self._fin = weakref.finalize(self, lib.nn_tokenizer_free, handle)

    @classmethod
    def load(cls, path):
        err, h = _lib.Err(), c_void_p()
        _check(lib.nn_tokenizer_load(str(path).encode(), byref(h), byref(err)), err)
        return cls(h.value)

    @property
    def vocab_size(self):
        return int(lib.nn_tokenizer_vocab_size(self._h))

    @property
    def bos_token_id(self):
        b = lib.nn_tokenizer_bos(self._h)
        return None if b < 0 else int(b)

    @property
    def eos_token_id(self):
        e = lib.nn_tokenizer_eos(self._h)
        return None if e < 0 else int(e)

    def encode(self, text, add_special_tokens=True):
        if not isinstance(text, str):
            raise TypeError(f"encode wants a str, got {type(text).__name__}")
        data = text.encode("utf-8")
        ids, err = _lib.Ids(), _lib.Err()
        try:
            _check(lib.nn_tokenizer_encode(self._h, data, len(data), add_special_tokens,
                                           byref(ids), byref(err)), err)
            return [ids.ids[i] for i in range(ids.n)]
        finally:
            lib.nn_ids_free(byref(ids))

    def decode(self, ids, skip_special_tokens=False):
        a, p = _int_array(np.asarray(ids).reshape(-1))
        out, err = c_void_p(), _lib.Err()
        _check(lib.nn_tokenizer_decode(self._h, p, a.size, skip_special_tokens, byref(out),
                                       byref(err)), err)
        return _lib.take_string(out.value)

    def convert_ids_to_tokens(self, ids):
        single = np.ndim(ids) == 0
        out = []
        for i in np.asarray(ids).reshape(-1).tolist():
            n = c_size_t()
            p = lib.nn_tokenizer_piece(self._h, int(i), byref(n))
            if not p:
                raise IndexError(f"token id {i} is outside the vocabulary ({self.vocab_size})")
            out.append(ctypes.string_at(p, n.value).decode("utf-8", "replace"))
        return out[0] if single else out

    def __call__(self, text, add_special_tokens=True):
        texts = [text] if isinstance(text, str) else list(text)
        ids = [self.encode(t, add_special_tokens) for t in texts]
        return {"input_ids": ids[0] if isinstance(text, str) else ids}


class HookInfo:
    """The second argument of a two-argument hook: where the view is and how the batch is packed
    (offsets: prompt p's rows are offsets[p]:offsets[p+1] of a per-token view)."""

    __slots__ = ("name", "point", "layer", "seq", "n_heads", "_batch", "_offsets")

    def __init__(self, v, name):
        self.name = name
        self.point = _lib.HOOK_POINTS[v.point]
        self.layer = v.layer
        self.seq = v.seq
        self.n_heads = v.n_heads
        self._batch = v.batch
        self._offsets = None

    @property
    def offsets(self):
        if self._offsets is None:
            b = self._batch.contents
            self._offsets = np.ctypeslib.as_array(b.offsets, shape=(b.n_seqs + 1,)).copy()
        return self._offsets


def _wants_info(fn):
    """Whether fn takes (view, info): counted from its code object (inspect is slow)."""
    code = getattr(fn, "__code__", None)
    if code is not None:
        n = code.co_argcount - (1 if inspect.ismethod(fn) else 0)
        return n >= 2 or (n == 1 and bool(code.co_flags & inspect.CO_VARARGS))
    try:
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
        return len(params) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)
    except (TypeError, ValueError):
        return False


# One C trampoline for every Python hook: making a ctypes callback allocates an executable
# closure (tens of microseconds), so hooks are found through the `user` pointer instead.
_HOOKS = {}
_NEXT_ID = [1]


def _dispatch(view_p, user, err_p):
    return _HOOKS[user]._call(view_p, err_p)


_TRAMPOLINE = _lib.HOOK_FN(_dispatch)
_TRAMPOLINE_ADDR = ctypes.cast(_TRAMPOLINE, c_void_p).value


class _PyHook:
    """One Python callable behind a C hook. Exceptions are kept and re-raised after the pass."""

    def __init__(self, name, fn, run):
        self.name, self.fn, self.run = name, fn, run
        self.two_args = _wants_info(fn)

    def _call(self, view_p, err_p):
        try:
            v = view_p.contents
            n = v.rows * v.cols
            arr = np.frombuffer((c_float * n).from_address(v.data), dtype=np.float32)
            arr = arr.reshape(v.rows, v.cols)
            out = self.fn(arr, HookInfo(v, self.name)) if self.two_args else self.fn(arr)
            if out is STOP:
                return _lib.NN_HOOK_STOP
            if out is not None and out is not arr:
                rep = np.asarray(out)
                if rep.shape != arr.shape:
                    raise ValueError(f"hook {self.name} returned an array of shape {rep.shape}; "
                                     f"the activation is {arr.shape}")
                np.copyto(arr, rep, casting="same_kind")
            return _lib.NN_HOOK_CONTINUE
        except BaseException as e:  # noqa: B902 - everything goes back to the caller's thread
            if self.run.error is None:
                self.run.error = e
            lib.nn_err_set(err_p, f"python hook {self.name}: {type(e).__name__}: {e}".encode())
            return _lib.NN_ERR


class _Run:
    """The hooks and buffers of one call; keeps every object C points to alive until it ends."""

    def __init__(self, model):
        model._check_open()
        self.model = model
        self.error = None
        self.keep = []
        err, hs = _lib.Err(), c_void_p()
        _check(lib.nn_hookset_create(byref(hs), model.num_layers, byref(err)), err)
        self.hs = hs.value
        self.skips = []
        self.hook_ids = []

    def close(self):
        for i in self.hook_ids:
            _HOOKS.pop(i, None)
        self.hook_ids = []
        for s in self.skips:
            lib.nn_skip_free(s)
        self.skips = []
        if self.hs:
            lib.nn_hookset_destroy(self.hs)
            self.hs = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def parse(self, name):
        hp, layer, err = c_int(), c_int(), _lib.Err()
        _check(lib.nn_hook_name_parse(name.encode(), self.model.num_layers, byref(hp),
                                      byref(layer), byref(err)), err)
        return hp.value, layer.value

    def add_c(self, hp, layer, fn_addr, user):
        err = _lib.Err()
        _check(lib.nn_hookset_add(self.hs, hp, layer, fn_addr, user, byref(err)), err)

    def add_python(self, name, fn):
        if not callable(fn):
            raise TypeError(f"hook {name}: {fn!r} is not callable")
        hp, layer = self.parse(name)
        hid = _NEXT_ID[0]
        _NEXT_ID[0] += 1
        _HOOKS[hid] = _PyHook(name, fn, self)
        self.hook_ids.append(hid)
        self.add_c(hp, layer, _TRAMPOLINE_ADDR, hid)

    def finish(self, rc, err):
        """Raises the hook's own exception if one failed the call, else the engine's error."""
        if self.error is not None:
            e, self.error = self.error, None
            raise e
        return _check(rc, err)


def _layers_of(model, layers):
    L = model.num_layers
    if layers is None:
        return list(range(L))
    if isinstance(layers, (int, np.integer)):
        layers = [int(layers)]
    out = []
    for layer in layers:
        if not isinstance(layer, (int, np.integer)):
            raise TypeError(f"layer {layer!r} is not an integer")
        i = int(layer) + L if layer < 0 else int(layer)
        if not 0 <= i < L:
            raise IndexError(f"layer {layer} is out of range (the model has {L} layers)")
        out.append(i)
    return out


class TraceResult:
    """What model.trace saved: packed arrays [n_tokens, width] per hook name ("layers_output.3"),
    per prompt as views of them (no copy), and the last-position logits when computed."""

    def __init__(self, offsets, saved, logits, stopped):
        self.offsets = offsets
        self.saved = saved
        self.logits = logits
        self.stopped = stopped

    def __getitem__(self, name):
        return self.saved[name]

    def __contains__(self, name):
        return name in self.saved

    def keys(self):
        return self.saved.keys()

    def per_prompt(self, name):
        a = self.saved[name]
        if isinstance(a, list):  # attention_probabilities: one array per prompt already
            return a
        if name.startswith("next_token_probs"):
            return [a[i] for i in range(a.shape[0])]
        o = self.offsets
        return [a[o[i]:o[i + 1]] for i in range(len(o) - 1)]

    @property
    def next_token_probs(self):
        if self.logits is None:
            return None
        z = self.logits.astype(np.float32, copy=True)
        for row in z:
            lib.nn_softmax(_float_ptr(row), row.size)
        return z


def _free_model(ctx, model):
    lib.nn_context_free(ctx)  # the context points to the model: it goes first
    lib.nn_model_free(model)


class StandardizedTransformer:
    """A model loaded by the engine, named as nnterp names things.

    path_or_hf_cache_id: a checkpoint directory, a llama2.c .bin, or a Hugging Face id found in
    the local hub cache. compute: "float32" (the engine's only compute type today).
    """

    def __init__(self, path_or_hf_cache_id, compute="float32", tokenizer=None):
        if compute not in ("float32", None):
            raise ValueError(f"compute {compute!r}: this engine computes in float32")
        err, m = _lib.Err(), c_void_p()
        _check(lib.nn_model_load(str(path_or_hf_cache_id).encode(), byref(m), byref(err)), err)
        self._m = m.value
        ctx = c_void_p()
        if lib.nn_context_init(byref(ctx), self._m, None, byref(err)) == _lib.NN_ERR:
            lib.nn_model_free(self._m)
            raise NnterpError(err.text())
        self._ctx = ctx.value
        self._fin = weakref.finalize(self, _free_model, self._ctx, self._m)
        self._lock = threading.RLock()
        self._busy = False
        self.num_layers = lib.nn_model_n_layers(self._m)
        self.hidden_size = lib.nn_model_d_model(self._m)
        self.num_heads = lib.nn_model_n_heads(self._m)
        self.num_kv_heads = lib.nn_model_n_kv_heads(self._m)
        self.head_dim = lib.nn_model_head_dim(self._m)
        self.vocab_size = lib.nn_model_vocab_size(self._m)
        self.max_positions = lib.nn_model_max_positions(self._m)
        self.model_type = lib.nn_model_type(self._m).decode()
        self.source = lib.nn_model_source(self._m).decode()
        text = lib.nn_model_config_json(self._m)
        self.config = json.loads(text) if text else {
            "model_type": self.model_type, "num_hidden_layers": self.num_layers,
            "hidden_size": self.hidden_size, "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads, "vocab_size": self.vocab_size,
            "max_position_embeddings": self.max_positions}
        if tokenizer is not None:
            self.tokenizer = tokenizer if isinstance(tokenizer, Tokenizer) else \
                Tokenizer.load(tokenizer)
        else:
            tok = c_void_p()
            _check(lib.nn_tokenizer_load_for_model(self.source.encode(), None, self.vocab_size,
                                                   False, byref(tok), byref(err)), err)
            self.tokenizer = Tokenizer(tok.value) if tok.value else None

    def __repr__(self):
        return (f"StandardizedTransformer({self.source!r}: {self.model_type}, "
                f"{self.num_layers} layers, d={self.hidden_size}, vocab={self.vocab_size})")

    def close(self):
        """Frees the engine's model and context now (otherwise when the object is collected)."""
        self._fin()
        self._m = self._ctx = None

    def _check_open(self):
        if self._ctx is None:
            raise NnterpError(f"{self.source}: the model was closed")

    # ---- prompts -----------------------------------------------------------------------------
    def _ids(self, prompt):
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise NnterpError(f"{self.source}: no tokenizer found; give token ids")
            return np.asarray(self.tokenizer.encode(prompt), dtype=np.int32)
        a = np.asarray(prompt)
        if a.ndim != 1 or a.size == 0 or not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"a prompt is a str or a non-empty 1-D sequence of token ids, got "
                             f"{a.dtype} of shape {a.shape}")
        return np.ascontiguousarray(a, dtype=np.int32)

    def _prompt_list(self, prompts):
        """A str, one prompt as ids, or a list of either."""
        if isinstance(prompts, str):
            prompts = [prompts]
        elif isinstance(prompts, np.ndarray):
            prompts = [prompts] if prompts.ndim == 1 else list(prompts)
        elif isinstance(prompts, (list, tuple)):
            if prompts and all(isinstance(x, (int, np.integer)) for x in prompts):
                prompts = [prompts]
        else:
            raise TypeError(f"prompts: a str, token ids or a list of them, not "
                            f"{type(prompts).__name__}")
        ids = [self._ids(p) for p in prompts]
        if not ids:
            raise ValueError("no prompts")
        return ids

    def _pack(self, prompts):
        ids = self._prompt_list(prompts)
        offsets = np.zeros(len(ids) + 1, dtype=np.intc)
        np.cumsum([len(a) for a in ids], out=offsets[1:])
        return ids, np.concatenate(ids).astype(np.int32, copy=False), offsets

    def _c_prompts(self, ids):
        arr = (_lib.Prompt * len(ids))()
        for i, a in enumerate(ids):
            arr[i].ids = a.ctypes.data_as(POINTER(c_int32))
            arr[i].n = a.size
        return arr

    def _enter(self):
        self._check_open()
        self._lock.acquire()
        if self._busy:
            self._lock.release()
            raise NnterpError("the model is running a pass: a hook cannot start another one on it")
        self._busy = True

    def _leave(self):
        self._busy = False
        self._lock.release()

    # ---- trace -------------------------------------------------------------------------------
    def _save_targets(self, run, save, n_tokens, n_seqs):
        """C copy hooks for save: each writes straight into a numpy array of the result."""
        saved = {}
        targets = []
        for item in save or []:
            if isinstance(item, str):
                name, layers = item, None
            else:
                name, layers = item
            hp, layer = run.parse(name)
            point = _lib.HOOK_POINTS[hp]
            if layers is not None and not isinstance(layers, str):
                if layer != _lib.NN_ALL_LAYERS:
                    raise ValueError(f"save: {name} names a layer and also gives layers")
                layer_list = _layers_of(self, layers)
            elif layer == _lib.NN_ALL_LAYERS:
                layer_list = list(range(self.num_layers))
            else:
                layer_list = [layer]
            for lay in layer_list:
                key = f"{point}.{lay}" if lay >= 0 else point
                if hp == _lib.HP["attention_probabilities"]:
                    per = [None] * n_seqs

                    def grab(view, info, per=per):
                        per[info.seq] = view.reshape(info.n_heads, -1, view.shape[1]).copy()
                    saved[key] = per
                    run.add_python(key, grab)
                    continue
                width = lib.nn_hook_point_width(self._m, hp)
                rows = n_seqs if hp == _lib.HP["next_token_probs"] else n_tokens
                if width == 0:
                    continue  # router_probabilities of a dense model: never called
                buf = np.empty((rows, width), dtype=np.float32)
                t = _lib.CopyTarget(buf.ctypes.data, buf.size, 0, 0, 0)
                run.keep.append(t)
                run.add_c(hp, lay, ctypes.cast(lib.nn_hook_copy, c_void_p),
                          ctypes.addressof(t))
                targets.append((key, buf, t))
        return saved, targets

    def trace(self, prompts, save=(), hooks=None, interventions=(), want_logits=True):
        """Runs the prompts as one packed batch.

        save: hook names ("layers_output" = every layer, "mlps_output.3", "logits") or (name,
        layers) pairs; each is copied once from the live buffer into the result's numpy array.
        hooks: {name: fn}; fn(view) or fn(view, info) gets a writable numpy view [rows, cols] of
        the live activation (no copy; valid only during the call): it may edit it in place, return
        a replacement of the same shape, or return nnterp_c.STOP to end the pass.
        interventions: steer(...), skip_layers(...) objects, applied by the engine's own hooks.
        """
        ids, tokens, offsets = self._pack(prompts)
        with _Run(self) as run:
            for iv in interventions or ():
                iv._install(self, run)
            for name, fn in (hooks or {}).items():
                run.add_python(name, fn)
            # saves come after the edits at the same site: they keep what the pass continues with
            saved, targets = self._save_targets(run, save, tokens.size, len(ids))
            batch = _lib.Batch(tokens.ctypes.data_as(POINTER(c_int32)), tokens.size, len(ids),
                               offsets.ctypes.data_as(POINTER(c_int)), None, None)
            fp = _lib.ForwardParams(run.hs, bool(want_logits))
            err = _lib.Err()
            self._enter()
            try:
                rc = lib.nn_context_forward(self._ctx, byref(batch), byref(fp), byref(err))
                run.finish(rc, err)
                logits = None
                if want_logits and rc == _lib.NN_OK:
                    st = lib.nn_context_last_state(self._ctx)
                    z = lib.nn_state_logits(st)
                    logits = np.ctypeslib.as_array(z, shape=(len(ids), self.vocab_size)).copy()
            finally:
                self._leave()
            for key, buf, t in targets:
                if t.calls:
                    saved[key] = buf
            for key in [k for k, v in saved.items() if isinstance(v, list) and any(x is None for x in v)]:
                del saved[key]  # a stopped pass never reached it
        return TraceResult(offsets.astype(np.int64), saved, logits, rc == _lib.NN_STOPPED)
