import sys, h5py
full, sub = h5py.File(sys.argv[1]), h5py.File(sys.argv[2])
fo, so = full["prompts/token_offsets"][:], sub["prompts/token_offsets"][:]
first = int(sys.argv[3])  # the sub-store's prompt 0 is the full store's prompt `first`
n = len(so) - 1
bad = []
for name in ("layers_output/0", "layers_output/10", "layers_output/20", "layers_output/31"):
    a = full["activations/" + name][fo[first]:fo[first + n]]
    b = sub["activations/" + name][:]
    if a.tobytes() != b.tobytes():
        bad.append(name)
for name in ("top_ids", "top_probs"):
    if full["logit_lens/" + name][first:first + n].tobytes() != sub["logit_lens/" + name][:].tobytes():
        bad.append("logit_lens/" + name)
print(f"prompts {first}..{first + n - 1} ({so[-1]} tokens): 1 stage vs 2 stages:",
      "bitwise identical" if not bad else f"DIFFER {bad}")
