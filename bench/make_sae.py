#!/usr/bin/env python3
"""A random SAELens TopK SAE (k 64) on the GPT-2-small shape for bench/sae.sh.

Usage: /work/venv-sae/bin/python bench/make_sae.py OUT_DIR D_SAE [HOOK]
"""
import sys

import torch
from sae_lens import SAE

out, d_sae = sys.argv[1], int(sys.argv[2])
hook = sys.argv[3] if len(sys.argv) > 3 else "blocks.6.hook_resid_post"
torch.manual_seed(0)
sae = SAE.from_dict({"architecture": "topk", "d_in": 768, "d_sae": d_sae, "k": 64, "dtype": "float32",
                     "device": "cpu", "apply_b_dec_to_input": True, "normalize_activations": "none",
                     "metadata": {"hook_name": hook}})
with torch.no_grad():
    for name, p in sae.named_parameters():
        p.copy_(torch.randn_like(p) * (0.036 if name.startswith("W") else 0.01))
sae.save_model(out)
