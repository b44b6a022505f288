"""ctypes declarations of libnnterp's C API (engine/nnterp.h, io/plot.h, io/h5file.h).

The structs mirrored here are checked against the library's own sizeof (nn_abi_sizeof) when the
library loads, so a header change that is not reflected here fails at import, not with a crash.
"""
import ctypes
import ctypes.util
import os
import pathlib
from ctypes import (POINTER, Structure, c_bool, c_char, c_char_p, c_double, c_float, c_int,
                    c_int32, c_size_t, c_uint64, c_void_p)

NN_OK, NN_ERR, NN_STOPPED = 0, -1, 1
NN_HOOK_CONTINUE, NN_HOOK_STOP = 0, 1
NN_ALL_LAYERS = -1000
HOOK_POINTS = ["token_embeddings", "layers_input", "attentions_input", "attention_probabilities",
               "attentions_output", "mlps_input", "mlps_output", "layers_output", "ln_final",
               "logits", "next_token_probs", "router_probabilities"]
HP = {name: i for i, name in enumerate(HOOK_POINTS)}


class Err(Structure):
    _fields_ = [("msg", c_char * 1024)]

    def text(self):
        return self.msg.decode("utf-8", "replace")


class Batch(Structure):
    _fields_ = [("tokens", POINTER(c_int32)), ("n_tokens", c_int), ("n_seqs", c_int),
                ("offsets", POINTER(c_int)), ("pos0", POINTER(c_int)), ("slot", POINTER(c_int))]


class StateParams(Structure):
    _fields_ = [("max_tokens", c_int), ("max_seqs", c_int), ("n_slots", c_int),
                ("slot_capacity", c_int)]


class ForwardParams(Structure):
    _fields_ = [("hooks", c_void_p), ("want_logits", c_bool)]


class HookView(Structure):
    _fields_ = [("point", c_int), ("layer", c_int), ("data", c_void_p), ("rows", c_size_t),
                ("cols", c_size_t), ("seq", c_int), ("n_heads", c_int),
                ("batch", POINTER(Batch))]


class Ids(Structure):
    _fields_ = [("ids", POINTER(c_int32)), ("n", c_size_t), ("cap", c_size_t)]


class Prompt(Structure):
    _fields_ = [("ids", POINTER(c_int32)), ("n", c_int)]


class LensParams(Structure):
    _fields_ = [("layers", POINTER(c_int)), ("n_layers", c_int), ("positions", POINTER(c_int)),
                ("n_positions", c_int), ("top_k", c_int), ("target_ids", POINTER(c_int32)),
                ("n_targets", c_int), ("full", c_bool), ("inverse", c_bool)]


class LensResult(Structure):
    _fields_ = [("n_prompts", c_int), ("n_layers", c_int), ("n_positions", c_int),
                ("top_k", c_int), ("n_targets", c_int), ("vocab", c_size_t),
                ("layers", POINTER(c_int)), ("positions", POINTER(c_int)),
                ("top_ids", POINTER(c_int32)), ("top_probs", POINTER(c_float)),
                ("target_probs", POINTER(c_float)), ("full", POINTER(c_float))]


ON_TOKEN = ctypes.CFUNCTYPE(c_int, c_int32, c_void_p, POINTER(Err))
HOOK_FN = ctypes.CFUNCTYPE(c_int, POINTER(HookView), c_void_p, POINTER(Err))


class GenerateParams(Structure):
    _fields_ = [("max_new_tokens", c_int), ("temperature", c_float), ("top_p", c_float),
                ("seed", c_uint64), ("stop_at_eos", c_bool), ("hooks", c_void_p),
                ("on_token", c_void_p), ("user", c_void_p)]


class PatchscopeParams(Structure):
    _fields_ = [("layers", POINTER(c_int)), ("n_layers", c_int), ("index_to_patch", c_int),
                ("source_position", c_int), ("top_k", c_int), ("target_ids", POINTER(c_int32)),
                ("n_targets", c_int), ("generate", c_int), ("gen", GenerateParams)]


class PatchscopeResult(Structure):
    _fields_ = [("n_layers", c_int), ("top_k", c_int), ("n_targets", c_int),
                ("generated", c_int), ("vocab", c_size_t), ("layers", POINTER(c_int)),
                ("probs", POINTER(c_float)), ("top_ids", POINTER(c_int32)),
                ("top_probs", POINTER(c_float)), ("target_probs", POINTER(c_float)),
                ("tokens", POINTER(c_int32))]


class Steer(Structure):
    _fields_ = [("vector", POINTER(c_float)), ("factor", c_float), ("layers", POINTER(c_int)),
                ("n_layers", c_int), ("positions", POINTER(c_int)), ("n_positions", c_int),
                ("from_position", c_int)]


class CopyTarget(Structure):
    _fields_ = [("dst", c_void_p), ("capacity", c_size_t), ("rows", c_size_t),
                ("cols", c_size_t), ("calls", c_int)]


class PlotCell(Structure):
    _fields_ = [("text", c_char_p), ("id", c_int32), ("prob", c_float)]


class PlotPanel(Structure):
    _fields_ = [("title", c_char_p), ("subtitle", c_char_p), ("n_rows", c_int), ("k", c_int),
                ("row_labels", POINTER(c_char_p)), ("cells", POINTER(PlotCell))]


class Plot(Structure):
    _fields_ = [("title", c_char_p), ("row_axis", c_char_p), ("col_axis", c_char_p),
                ("panels", POINTER(PlotPanel)), ("n_panels", c_int), ("columns", c_int),
                ("scale", c_double)]


class PlotInfo(Structure):
    _fields_ = [("width", c_int), ("height", c_int), ("unknown_glyphs", c_int)]


_CHECKED = {"nn_err": Err, "nn_batch": Batch, "nn_state_params": StateParams,
            "nn_forward_params": ForwardParams, "nn_hook_view": HookView, "nn_ids": Ids,
            "nn_prompt": Prompt, "nn_lens_params": LensParams, "nn_lens_result": LensResult,
            "nn_generate_params": GenerateParams, "nn_patchscope_params": PatchscopeParams,
            "nn_patchscope_result": PatchscopeResult, "nn_steer": Steer,
            "nn_copy_target": CopyTarget}

E = POINTER(Err)
P = c_void_p
# name: (restype, argtypes). Every function that can fail takes an nn_err * last.
_SIGNATURES = {
    "nn_version_string": (c_char_p, []),
    "nn_version_number": (c_int, []),
    "nn_abi_sizeof": (c_size_t, [c_char_p]),
    "nn_free": (None, [P]),
    "nn_err_set": (c_int, [E, c_char_p]),
    "nn_model_load": (c_int, [c_char_p, POINTER(P), E]),
    "nn_model_free": (None, [P]),
    "nn_model_n_layers": (c_int, [P]),
    "nn_model_d_model": (c_int, [P]),
    "nn_model_n_heads": (c_int, [P]),
    "nn_model_n_kv_heads": (c_int, [P]),
    "nn_model_head_dim": (c_int, [P]),
    "nn_model_d_ff": (c_int, [P]),
    "nn_model_vocab_size": (c_int, [P]),
    "nn_model_max_positions": (c_int, [P]),
    "nn_model_n_experts": (c_int, [P]),
    "nn_model_bos": (c_int, [P]),
    "nn_model_eos": (c_int, [P]),
    "nn_model_type": (c_char_p, [P]),
    "nn_model_family": (c_char_p, [P]),
    "nn_model_source": (c_char_p, [P]),
    "nn_model_config_json": (c_char_p, [P]),
    "nn_hook_point_width": (c_size_t, [P, c_int]),
    "nn_hook_name_parse": (c_int, [c_char_p, c_int, POINTER(c_int), POINTER(c_int), E]),
    "nn_layers_parse": (c_int, [c_char_p, c_int, POINTER(POINTER(c_int)), POINTER(c_int), E]),
    "nn_hookset_create": (c_int, [POINTER(P), c_int, E]),
    "nn_hookset_destroy": (None, [P]),
    "nn_hookset_add": (c_int, [P, c_int, c_int, P, P, E]),
    "nn_context_init": (c_int, [POINTER(P), P, POINTER(StateParams), E]),
    "nn_context_free": (None, [P]),
    "nn_context_forward": (c_int, [P, POINTER(Batch), POINTER(ForwardParams), E]),
    "nn_context_last_state": (P, [P]),
    "nn_state_logits": (POINTER(c_float), [P]),
    "nn_tokenizer_load_for_model": (c_int, [c_char_p, c_char_p, c_int, c_bool, POINTER(P), E]),
    "nn_tokenizer_load": (c_int, [c_char_p, POINTER(P), E]),
    "nn_tokenizer_free": (None, [P]),
    "nn_tokenizer_encode": (c_int, [P, c_char_p, c_size_t, c_bool, POINTER(Ids), E]),
    "nn_tokenizer_decode": (c_int, [P, POINTER(c_int32), c_size_t, c_bool, POINTER(c_void_p), E]),
    "nn_tokenizer_vocab_size": (c_size_t, [P]),
    "nn_tokenizer_piece": (c_void_p, [P, c_int32, POINTER(c_size_t)]),
    "nn_tokenizer_bos": (c_int32, [P]),
    "nn_tokenizer_eos": (c_int32, [P]),
    "nn_tokenizer_is_special": (c_bool, [P, c_int32]),
    "nn_ids_free": (None, [POINTER(Ids)]),
    "nn_logit_lens_ctx": (c_int, [P, POINTER(Prompt), c_int, POINTER(LensParams),
                                  POINTER(LensResult), E]),
    "nn_lens_result_free": (None, [POINTER(LensResult)]),
    "nn_repeat_prompt": (c_void_p, [POINTER(c_char_p), c_int, c_char_p, c_char_p, c_char_p, E]),
    "nn_patchscope_default_params": (PatchscopeParams, []),
    "nn_patchscope_ctx": (c_int, [P, Prompt, Prompt, POINTER(PatchscopeParams),
                                  POINTER(PatchscopeResult), E]),
    "nn_patchscope_result_free": (None, [POINTER(PatchscopeResult)]),
    "nn_steer_add": (c_int, [P, P, POINTER(Steer), E]),
    "nn_contrast_vector_ctx": (c_int, [P, POINTER(Prompt), c_int, POINTER(Prompt), c_int, c_int,
                                       c_int32, POINTER(c_float), E]),
    "nn_first_tokens": (c_int, [P, POINTER(c_char_p), c_int, POINTER(Ids), E]),
    "nn_next_token_probs_ctx": (c_int, [P, POINTER(Prompt), c_int, P, POINTER(c_float), E]),
    "nn_skip_add": (c_int, [P, P, POINTER(c_int), c_int, POINTER(POINTER(c_float)),
                            POINTER(P), E]),
    "nn_skip_free": (None, [P]),
    "nn_generate_default_params": (GenerateParams, []),
    "nn_generate_ctx": (c_int, [P, POINTER(c_int32), c_int, POINTER(GenerateParams),
                                POINTER(c_int32), POINTER(c_int), E]),
    "nn_softmax": (None, [POINTER(c_float), c_size_t]),
    "nn_blas_sleep_when_idle": (c_bool, []),
}
_OPTIONAL = {  # present when the library was built with the component
    "nn_plot_png": (c_int, [POINTER(Plot), c_char_p, POINTER(PlotInfo), E]),
    "nn_plot_html": (c_int, [POINTER(Plot), c_char_p, POINTER(PlotInfo), E]),
    "nn_h5_open_read": (c_int, [c_char_p, POINTER(P), E]),
    "nn_h5_free": (None, [P]),
    "nn_h5_exists": (c_bool, [P, c_char_p]),
    "nn_h5_shape": (c_int, [P, c_char_p, POINTER(c_int), POINTER(c_int), POINTER(c_uint64),
                            E]),
    "nn_h5_read": (c_int, [P, c_char_p, c_void_p, c_size_t, E]),
    "nn_h5_get_attr_string": (c_void_p, [P, c_char_p, c_char_p, E]),
    "nn_h5_list": (c_int, [P, c_char_p, POINTER(POINTER(c_char_p)), POINTER(c_int), E]),
    "nn_h5_attr_names": (c_int, [P, c_char_p, POINTER(POINTER(c_char_p)), POINTER(c_int), E]),
    "nn_h5_get_attr_i64": (c_int, [P, c_char_p, c_char_p, POINTER(ctypes.c_int64), E]),
}


def _candidates():
    env = os.environ.get("NNTERP_LIBRARY")
    if env:
        return [env]
    here = pathlib.Path(__file__).resolve().parent
    out = [here / "libnnterp.so"]  # copied in by setup.py: the library the package was built with
    build = here / "_build_dir.txt"
    if build.exists():
        out.append(pathlib.Path(build.read_text().strip()) / "libnnterp.so")
    out.append(here.parent.parent / "build" / "libnnterp.so")  # a source checkout
    return [str(p) for p in out]


def _load():
    tried = []
    for path in _candidates():
        if not os.path.exists(path):
            tried.append(path)
            continue
        lib = ctypes.CDLL(path)
        for name, (res, args) in _SIGNATURES.items():
            f = getattr(lib, name)
            f.restype, f.argtypes = res, args
        for name, (res, args) in _OPTIONAL.items():
            f = getattr(lib, name, None)
            if f is not None:
                f.restype, f.argtypes = res, args
        for cname, cls in _CHECKED.items():
            theirs = lib.nn_abi_sizeof(cname.encode())
            if theirs != ctypes.sizeof(cls):
                raise ImportError(f"nnterp_c: {path}: struct {cname} is {theirs} bytes in the "
                                  f"library, {ctypes.sizeof(cls)} in this package: rebuild both")
        lib.path = path
        return lib
    raise ImportError("nnterp_c: libnnterp.so not found (build it with CMake, or set "
                      "NNTERP_LIBRARY); looked at: " + ", ".join(tried))


lib = _load()


def has(name):
    return getattr(lib, name, None) is not None


def take_string(ptr):
    """A char * the engine allocated, as str; the C string is freed."""
    if not ptr:
        return None
    try:
        return ctypes.string_at(ptr).decode("utf-8", "replace")
    finally:
        lib.nn_free(ptr)
