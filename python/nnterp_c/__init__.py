"""nnterp_c: nnterp's API over the nnterp C engine (libnnterp.so), through ctypes and numpy.

Named so that it installs beside the Python library nnterp. See docs/python.md.
"""
from ._core import STOP, HookInfo, NnterpError, StandardizedTransformer, Tokenizer, TraceResult
from ._lib import lib as _clib
from ._ops import (Prompt, SkipLayers, Steer, TargetPrompt, collect_token_activations_batched,
                   contrast_vector, generate, get_first_tokens, get_token_activations, logit_lens,
                   next_token_probs, patchscope_generate, patchscope_lens, repeat_prompt,
                   run_prompts, skip_layers, steer)
from ._plot import TopkPlot, plot_topk_tokens
from ._store import Store, open_store

__version__ = _clib.nn_version_string().decode()


def blas_sleep_when_idle():
    """What the nnterp command does at start-up (pool.h): OpenBLAS's threads sleep soon after a
    GEMM instead of spinning beside the engine's own threads. Call once, before heavy work."""
    return bool(_clib.nn_blas_sleep_when_idle())

library_path = _clib.path

__all__ = ["StandardizedTransformer", "Tokenizer", "TraceResult", "HookInfo", "NnterpError", "STOP",
           "logit_lens", "TargetPrompt", "repeat_prompt", "patchscope_lens", "patchscope_generate",
           "steer", "Steer", "contrast_vector", "skip_layers", "SkipLayers",
           "get_token_activations", "collect_token_activations_batched", "Prompt",
           "get_first_tokens", "next_token_probs", "run_prompts", "generate", "plot_topk_tokens",
           "TopkPlot", "open_store", "Store", "library_path", "blas_sleep_when_idle"]
