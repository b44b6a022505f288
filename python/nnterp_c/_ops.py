"""nnterp's operations over the engine's toolkit (engine/toolkit.h), with nnterp's names, signatures
and return shapes. Each runs on the model's nn_context (its state, pool and rotary tables reused)."""
import ctypes
from ctypes import POINTER, byref, c_char_p, c_float, c_int, c_int32, c_void_p
from dataclasses import dataclass, field

import numpy as np

from . import _lib
from ._core import NnterpError, _check, _cint_array, _float_ptr, _layers_of, _Run
from ._lib import lib


def _prompts(model, prompts):
    model._check_open()
    ids = model._prompt_list(prompts)
    return ids, model._c_prompts(ids)


def _owned(ptr, shape, dtype):
    """An ndarray over memory the engine allocated, freed (nn_free) with the array: no copy."""
    n = int(np.prod(shape))
    ctype = {np.float32: c_float, np.int32: c_int32}[dtype]
    buf = (ctype * n).from_address(ctypes.cast(ptr, c_void_p).value)
    arr = np.frombuffer(buf, dtype=dtype).reshape(shape)
    holder = _Owner(ctypes.cast(ptr, c_void_p).value)
    # numpy keeps `buf` alive through arr.base; the holder frees the C memory with buf
    buf._owner = holder
    return arr


class _Owner:
    def __init__(self, addr):
        self.addr = addr

    def __del__(self):
        if self.addr:
            lib.nn_free(self.addr)
            self.addr = None


# ---- logit lens ------------------------------------------------------------------------------

def _lens(model, prompts, inverse, layers=None):
    ids, cp = _prompts(model, prompts)
    lay = _layers_of(model, layers)
    la, lp = _cint_array(lay)
    params = _lib.LensParams(lp, len(lay), None, 0, 0, None, 0, True, inverse)
    r, err = _lib.LensResult(), _lib.Err()
    model._enter()
    try:
        _check(lib.nn_logit_lens_ctx(model._ctx, cp, len(ids), byref(params), byref(r),
                                     byref(err)), err)
    finally:
        model._leave()
    try:
        probs = _owned(r.full, (len(ids), len(lay), model.vocab_size), np.float32)
        r.full = None  # the array owns it now
    finally:
        lib.nn_lens_result_free(byref(r))
    return probs


def logit_lens(model, prompts, return_inv_logits=False, layers=None):
    """Probabilities (B, L, V) of the lens at each prompt's last token: softmax(head(ln_final(
    layers_output.l))); with return_inv_logits also nnterp's inverse lens (head of -ln_final)."""
    probs = _lens(model, prompts, False, layers)
    if return_inv_logits:
        return probs, _lens(model, prompts, True, layers)
    return probs


# ---- patchscope ------------------------------------------------------------------------------

@dataclass
class TargetPrompt:
    prompt: str
    index_to_patch: int


def repeat_prompt(words=None, rel=" ", sep="\n", placeholder="?"):
    """nnterp's repeat_prompt: "king king\\n1135 1135\\nhello hello\\n?" patched at its last token."""
    if words is None:
        wp, n = None, 0
    else:
        words = list(words)
        wp, n = (c_char_p * len(words))(*[w.encode() for w in words]), len(words)
    err = _lib.Err()
    s = lib.nn_repeat_prompt(wp, n, rel.encode(), sep.encode(), placeholder.encode(), byref(err))
    if not s:
        raise NnterpError(err.text())
    return TargetPrompt(_lib.take_string(s), -1)


def _patchscope_one(model, source, target, layers, generate=0, gen=None):
    lay = _layers_of(model, layers)
    la, lp = _cint_array(lay)
    pp = lib.nn_patchscope_default_params()
    pp.layers, pp.n_layers = lp, len(lay)
    pp.index_to_patch = target.index_to_patch
    pp.top_k = 0
    pp.generate = generate
    if gen is not None:
        pp.gen = gen
    src = model._ids(source)
    dst = model._ids(target.prompt)
    r, err = _lib.PatchscopeResult(), _lib.Err()
    model._enter()
    try:
        _check(lib.nn_patchscope_ctx(model._ctx, _lib.Prompt(src.ctypes.data_as(POINTER(c_int32)),
                                                             src.size),
                                     _lib.Prompt(dst.ctypes.data_as(POINTER(c_int32)), dst.size),
                                     byref(pp), byref(r), byref(err)), err)
    finally:
        model._leave()
    try:
        probs = _owned(r.probs, (len(lay), model.vocab_size), np.float32)
        r.probs = None
        tokens = None
        if generate:
            tokens = np.ctypeslib.as_array(r.tokens, shape=(len(lay), generate)).copy()
    finally:
        lib.nn_patchscope_result_free(byref(r))
    return lay, probs, tokens


def _latent_patch_probs(model, latents, target, lay):
    """patchscope_lens with given latents (num_layers, B, d): each copy of the target gets its
    latent written into layers_output.l at index_to_patch by a Python hook."""
    latents = np.asarray(latents, dtype=np.float32)
    if latents.ndim != 3 or latents.shape[0] != len(lay) or latents.shape[2] != model.hidden_size:
        raise ValueError(f"latents must be (num_layers={len(lay)}, B, {model.hidden_size}), got "
                         f"{latents.shape}")
    dst = model._ids(target.prompt)
    pos = target.index_to_patch + dst.size if target.index_to_patch < 0 else target.index_to_patch
    if not 0 <= pos < dst.size:
        raise IndexError(f"index_to_patch {target.index_to_patch} is outside the target prompt "
                         f"({dst.size} tokens)")
    out = np.empty((latents.shape[1], len(lay), model.vocab_size), dtype=np.float32)
    for b in range(latents.shape[1]):
        hooks = {}
        for i, layer in enumerate(lay):
            def write(view, info, i=i, b=b, layer=layer):
                view[info.offsets[i] + pos] = latents[i, b]
            hooks[f"layers_output.{layer}"] = write
        r = model.trace([dst] * len(lay), hooks=hooks)
        out[b] = r.next_token_probs
    return out


def patchscope_lens(model, source_prompts=None, target_patch_prompts=None, layers=None,
                    latents=None):
    """For each source prompt and layer l: the target (default repeat_prompt()) run with
    layers_output.l at index_to_patch replaced by the source's at its last token; the patched
    target's next-token probabilities, (num_sources, num_layers, V)."""
    target = target_patch_prompts if target_patch_prompts is not None else repeat_prompt()
    lay = _layers_of(model, layers)
    if latents is not None:
        return _latent_patch_probs(model, latents, target, lay)
    if source_prompts is None:
        raise ValueError("patchscope_lens needs source_prompts or latents")
    sources = [source_prompts] if isinstance(source_prompts, str) else list(source_prompts)
    return np.stack([_patchscope_one(model, s, target, lay)[1] for s in sources])


def patchscope_generate(model, prompts, target_patch_prompt, max_length=50, layers=None):
    """The patched target then greedy generation, per layer: {layer: [text per prompt]}."""
    sources = [prompts] if isinstance(prompts, str) else list(prompts)
    gen = lib.nn_generate_default_params()
    out = {}
    for s in sources:
        lay, _, tokens = _patchscope_one(model, s, target_patch_prompt, layers, max_length, gen)
        for i, layer in enumerate(lay):
            t = tokens[i]
            out.setdefault(layer, []).append(model.tokenizer.decode(t[t >= 0], skip_special_tokens=True))
    return out


# ---- interventions ---------------------------------------------------------------------------

class Steer:
    """factor * vector added to layers_output at the given layers (and positions) by the engine's
    steering hook (nn_steer_add), in trace, generate, run_prompts and next_token_probs."""

    def __init__(self, model, layers, vector, factor=1.0, positions=None):
        model._check_open()
        self.layers = np.asarray(_layers_of(model, layers), dtype=np.intc)
        v = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)
        if v.size != model.hidden_size:
            raise ValueError(f"steering vector has {v.size} values, the model's hidden size is "
                             f"{model.hidden_size}")
        self.vector = v
        self.factor = float(factor)
        if positions is None:
            self.positions = None
        else:
            p = np.atleast_1d(np.asarray(positions, dtype=np.intc))
            if (p < 0).any():
                raise ValueError("steer: positions are absolute (0 = first token), not negative")
            self.positions = p

    def _install(self, model, run):
        pos = self.positions
        s = _lib.Steer(_float_ptr(self.vector), self.factor,
                       self.layers.ctypes.data_as(POINTER(c_int)), self.layers.size,
                       pos.ctypes.data_as(POINTER(c_int)) if pos is not None else None,
                       0 if pos is None else pos.size, 0)
        run.keep.append((self, s))
        err = _lib.Err()
        _check(lib.nn_steer_add(run.hs, model._m, byref(s), byref(err)), err)


def contrast_vector(model, prompts_a, prompts_b, layer):
    """mean(layers_output.layer | a) - mean(... | b) over every token but a leading BOS."""
    ia, ca = _prompts(model, prompts_a)
    ib, cb = _prompts(model, prompts_b)
    layer = _layers_of(model, layer)[0]
    out = np.empty(model.hidden_size, dtype=np.float32)
    bos = model.tokenizer.bos_token_id if model.tokenizer else None
    err = _lib.Err()
    model._enter()
    try:
        _check(lib.nn_contrast_vector_ctx(model._ctx, ca, len(ia), cb, len(ib), layer,
                                          -1 if bos is None else bos, _float_ptr(out),
                                          byref(err)), err)
    finally:
        model._leave()
    return out


def steer(model, layers, steering_vector=None, factor=1.0, positions=None, contrast=None,
          contrast_layer=None):
    """A steering intervention: steering_vector, or contrast=(prompts_a, prompts_b) whose mean
    difference at contrast_layer (default: the first steered layer) is the vector."""
    if steering_vector is None:
        if contrast is None:
            raise ValueError("steer needs steering_vector or contrast=(prompts_a, prompts_b)")
        first = _layers_of(model, layers)[0]
        steering_vector = contrast_vector(model, contrast[0], contrast[1],
                                          first if contrast_layer is None else contrast_layer)
    return Steer(model, layers, steering_vector, factor, positions)


class SkipLayers:
    """layers_output.i := layers_input.i for each listed layer (nn_skip_add)."""

    def __init__(self, model, layers):
        self.layers = np.asarray(_layers_of(model, layers), dtype=np.intc)

    def _install(self, model, run):
        sk, err = c_void_p(), _lib.Err()
        _check(lib.nn_skip_add(run.hs, model._m, self.layers.ctypes.data_as(POINTER(c_int)),
                               self.layers.size, None, byref(sk), byref(err)), err)
        run.skips.append(sk.value)


def skip_layers(model, layers):
    return SkipLayers(model, layers)


# ---- activations -----------------------------------------------------------------------------

def get_token_activations(model, prompts, layers=None, idx=-1):
    """layers_output at token idx of each prompt: (num_layers, B, d)."""
    lay = _layers_of(model, layers)
    r = model.trace(prompts, save=[("layers_output", lay)], want_logits=False)
    o = r.offsets
    n = len(o) - 1
    lengths = o[1:] - o[:-1]
    rows = np.where(idx < 0, o[1:] + idx, o[:-1] + idx)
    if ((idx < 0) & (-idx > lengths)).any() or ((idx >= 0) & (idx >= lengths)).any():
        raise IndexError(f"token index {idx} is outside a prompt")
    out = np.empty((len(lay), n, model.hidden_size), dtype=np.float32)
    for i, layer in enumerate(lay):
        out[i] = r[f"layers_output.{layer}"][rows]
    return out


def collect_token_activations_batched(model, prompts, batch_size=32, layers=None, idx=-1):
    """get_token_activations over batches: (num_layers, N, d)."""
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    parts = [get_token_activations(model, prompts[i:i + batch_size], layers, idx)
             for i in range(0, len(prompts), batch_size)]
    return np.concatenate(parts, axis=1)


# ---- target probabilities --------------------------------------------------------------------

def get_first_tokens(words, tokenizer):
    """nnterp's get_first_tokens: the first token of "word" and " word" for each word, deduped."""
    words = [words] if isinstance(words, str) else list(words)
    wp = (c_char_p * len(words))(*[w.encode() for w in words])
    ids, err = _lib.Ids(), _lib.Err()
    try:
        _check(lib.nn_first_tokens(tokenizer._h, wp, len(words), byref(ids), byref(err)), err)
        return [ids.ids[i] for i in range(ids.n)]
    finally:
        lib.nn_ids_free(byref(ids))


@dataclass
class Prompt:
    prompt: str
    target_tokens: dict = field(default_factory=dict)
    target_strings: dict = field(default_factory=dict)

    @classmethod
    def from_strings(cls, prompt, target_strings, tokenizer):
        ts = {k: [v] if isinstance(v, str) else list(v) for k, v in target_strings.items()}
        return cls(prompt, {k: get_first_tokens(v, tokenizer) for k, v in ts.items()}, ts)

    def get_target_probs(self, probs):
        """{target: the probability mass of its tokens} for probs (V,), summed in double in
        token order and rounded to float32, as the engine's target_probs operation does."""
        probs = np.asarray(probs, dtype=np.float32)
        out = {}
        for k, ids in self.target_tokens.items():
            total = 0.0
            for i in ids:
                total += float(probs[i])
            out[k] = np.float32(total)
        return out


def next_token_probs(model, prompts, interventions=()):
    """Softmax of each prompt's last logits, (B, V), under the interventions (one packed pass)."""
    ids, cp = _prompts(model, prompts)
    out = np.empty((len(ids), model.vocab_size), dtype=np.float32)
    with _Run(model) as run:
        for iv in interventions or ():
            iv._install(model, run)
        err = _lib.Err()
        model._enter()
        try:
            rc = lib.nn_next_token_probs_ctx(model._ctx, cp, len(ids), run.hs, _float_ptr(out),
                                             byref(err))
        finally:
            model._leave()
        run.finish(rc, err)
    return out


def run_prompts(model, prompts, batch_size=32, interventions=()):
    """For Prompt objects: {target name: (N,) the probability mass of its target tokens}."""
    prompts = list(prompts)
    out = {}
    for i in range(0, len(prompts), batch_size):
        chunk = prompts[i:i + batch_size]
        probs = next_token_probs(model, [p.prompt for p in chunk], interventions)
        for j, p in enumerate(chunk):
            for k, v in p.get_target_probs(probs[j]).items():
                out.setdefault(k, []).append(v)
    return {k: np.asarray(v, dtype=np.float32) for k, v in out.items()}


# ---- generation ------------------------------------------------------------------------------

def generate(model, prompt, max_new_tokens=32, temperature=0.0, top_p=1.0, seed=42,
             stop_at_eos=True, interventions=(), hooks=None, return_ids=False):
    """Greedy (temperature 0) or sampled generation with a KV cache; interventions and hooks apply
    to every forward call. Returns the new text (and ids with return_ids)."""
    ids = model._ids(prompt)
    if max_new_tokens < 0:
        raise ValueError("max_new_tokens must be >= 0")
    out = np.empty(max(1, max_new_tokens), dtype=np.int32)
    n = c_int()
    with _Run(model) as run:
        for iv in interventions or ():
            iv._install(model, run)
        for name, fn in (hooks or {}).items():
            run.add_python(name, fn)
        gp = lib.nn_generate_default_params()
        gp.max_new_tokens = max_new_tokens
        gp.temperature, gp.top_p, gp.seed, gp.stop_at_eos = temperature, top_p, seed, stop_at_eos
        gp.hooks = run.hs
        err = _lib.Err()
        model._enter()
        try:
            rc = lib.nn_generate_ctx(model._ctx, ids.ctypes.data_as(POINTER(c_int32)), ids.size,
                                     byref(gp), out.ctypes.data_as(POINTER(c_int32)), byref(n),
                                     byref(err))
        finally:
            model._leave()
        run.finish(rc, err)
    new = out[:n.value].copy()
    text = model.tokenizer.decode(new, skip_special_tokens=True) if model.tokenizer else None
    return (text, new) if return_ids else text
