import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(os.environ.get("NNTERP_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[2]))
SHARED = pathlib.Path(os.environ.get("NNTERP_SHARED", ROOT.parent / "shared"))
CLI = os.environ.get("NNTERP_CLI", str(ROOT / "build" / "nnterp"))
DEMO = ROOT / "models" / "demo"
# Families of the shared tiny checkpoints the bit-for-bit comparisons run on (no tokenizers: ids).
TINY = ["gpt2", "llama_gqa", "gemma2", "mixtral", "bloom", "gpt_neox", "qwen2_moe"]


def tiny(arch):
    p = SHARED / "reference" / "tiny" / arch / "model-f32"
    if not p.exists():
        pytest.skip(f"{p} is absent (shared test data)")
    return p


def cli_env():
    """The environment for the nnterp command: without the sanitizer runtime that the ASan run
    preloads into the interpreter (the sanitized command links its own)."""
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    return env


def cli(*args, **kw):
    """Runs the nnterp command; its stdout. A failure fails the test with its stderr."""
    r = subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, env=cli_env(),
                       **kw)
    assert r.returncode == 0, f"nnterp {' '.join(map(str, args))}: {r.stderr}"
    return r.stdout


@pytest.fixture(scope="session")
def demo():
    import nnterp_c
    return nnterp_c.StandardizedTransformer(DEMO)
