#!/usr/bin/env python3
"""SAELens's encode + decode on the rows bench_sae dumped, one thread: what a user would run.

Usage (the venv with sae-lens, see tools/make_sae_fixtures.py):
    /work/venv-sae/bin/python bench/sae_torch.py SAE_DIR X.f32 [--reps 3]
"""
import json
import statistics
import sys
import time

import numpy as np
import torch
from sae_lens import SAE

torch.set_num_threads(1)
sae_dir, x_path = sys.argv[1], sys.argv[2]
reps = int(sys.argv[sys.argv.index("--reps") + 1]) if "--reps" in sys.argv else 3
sae = SAE.load_from_disk(sae_dir, device="cpu")
sae.eval()
x = torch.from_numpy(np.fromfile(x_path, dtype=np.float32).reshape(-1, sae.cfg.d_in))
times = []
with torch.no_grad():
    for r in range(reps + 1):
        t0 = time.perf_counter()
        f = sae.encode(x)
        y = sae.decode(f)
        t = time.perf_counter() - t0
        if r:
            times.append(t)
print(json.dumps({"tokens": x.shape[0], "d_sae": sae.cfg.d_sae, "saelens_s": statistics.median(times),
                  "torch": torch.__version__, "l0_mean": float((f != 0).sum(1).float().mean())}))
