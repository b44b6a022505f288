#!/usr/bin/env python3
"""Seeds for the fuzz targets made from the real files of the shared test data (too large to
check in whole): usage make_seeds.py SHARED OUTDIR. Writes OUTDIR/<target>/<name>. Each seed is
kept small (a few KB to a few tens of KB) so that mutations stay fast; the small synthetic seeds
checked in under tests/fuzz/corpus/<target>/ complement them."""
import glob, json, os, struct, sys

shared, out = sys.argv[1], sys.argv[2]
repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def put(target, name, data):
    os.makedirs(os.path.join(out, target), exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(out, target, name), "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


# safetensors: every tiny reference checkpoint's real header, (a) with its first bytes of data
# (the header is whole, the file truncated) and (b) rebuilt into a valid image with every tensor
# shrunk to at most 4 elements (real names, dtypes and metadata; small data).
SIZES = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
for path in sorted(glob.glob(f"{shared}/reference/tiny/*/model-*/*.safetensors")):
    parts = path.split("/")
    name = f"{parts[-3]}_{parts[-2]}_{os.path.basename(path).split('.')[0]}"
    img = read(path)
    (hlen,) = struct.unpack("<Q", img[:8])
    put("safetensors", name + "_truncated", img[: 8 + hlen + 256])
    header = json.loads(img[8 : 8 + hlen])
    shrunk, data = {}, b""
    for k, v in header.items():
        if k == "__metadata__":
            shrunk[k] = v
            continue
        shape = [min(d, 2) for d in v["shape"][:2]]
        n = 1
        for d in shape:
            n *= d
        raw = img[8 + hlen + v["data_offsets"][0] :][: n * SIZES[v["dtype"]]]
        shrunk[k] = {"dtype": v["dtype"], "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(shrunk, separators=(",", ":")).encode()
    put("safetensors", name + "_shrunk", struct.pack("<Q", len(h)) + h + data)

for path in sorted(glob.glob(f"{shared}/reference/tiny/*/model-f32-sharded/model.safetensors.index.json")):
    put("st_index", path.split("/")[-3], read(path))

for path in sorted(glob.glob(f"{shared}/reference/tiny/*/model-f32/config.json")):
    put("config", path.split("/")[-3], read(path))
for path in sorted(glob.glob(f"{shared}/models/*/hf/config.json")):
    put("config", path.split("/")[-3], read(path))


# tokenizer.json: stories260K whole; GPT-2 and Llama 2 cut to their first tokens (the merges
# that only name kept tokens, every added token and the whole pipeline).
def trimmed(path, keep):
    tok = json.load(open(path, encoding="utf-8"))
    model = tok["model"]
    vocab = {k: v for k, v in model["vocab"].items() if v < keep}
    merges = []
    for m in model["merges"]:
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        if a in vocab and b in vocab and a + b in vocab:
            merges.append(m)
    model["vocab"], model["merges"] = vocab, merges
    tok["added_tokens"] = [t for t in tok.get("added_tokens", []) if t["id"] < keep + 100000]
    return json.dumps(tok, ensure_ascii=False)


tdir = f"{shared}/tokenizers"
if os.path.isdir(tdir):
    put("tokenizer_json", "stories260K", read(f"{tdir}/stories260K/tokenizer.json"))
    put("tokenizer_json", "gpt2_trimmed", trimmed(f"{tdir}/gpt2/tokenizer.json", 600))
    put("tokenizer_json", "llama2_trimmed", trimmed(f"{tdir}/llama2/tokenizer.json", 700))
    # encode: the texts of the Hugging Face test vectors, one seed each (first byte: tokenizer).
    k = 0
    for sel, file in [(0, "gpt2/tests.jsonl"), (1, "llama2/tests_bos.jsonl"), (2, "llama2/tests_tokenizer_bin.jsonl")]:
        for line in open(f"{tdir}/{file}", encoding="utf-8"):
            text = json.loads(line)["text"].encode()
            if len(text) <= 2048 and k % 3 == sel:
                put("tokenizer_encode", f"vector{k:04d}", bytes([sel + 4 * (k % 4)]) + text)
            k += 1
    put("llama2c_tokenizer", "tok512", read(f"{tdir}/stories260K/tok512.bin"))
    # Llama 2's tokenizer.bin: its first 700 records (a well-formed prefix of the real file).
    img = read(f"{tdir}/llama2/tokenizer.bin")
    off = 4
    for _ in range(700):
        (n,) = struct.unpack("<i", img[off + 4 : off + 8])
        off += 8 + n
    put("llama2c_tokenizer", "llama2_prefix", img[:off])

put("job", "quickstart", read(f"{repo}/examples/quickstart.json"))
put("dataset", "facts", b"\x00" + read(f"{repo}/examples/facts.jsonl"))
# jinja: the real chat templates of the shared data, and those of the shared tokenizers' configs.
for path in sorted(glob.glob(f"{shared}/chat/templates/*.jinja")):
    put("jinja", os.path.basename(path), read(path))
for path in sorted(glob.glob(f"{shared}/tokenizers/modern/*/tokenizer_config.json")):
    template = json.load(open(path, encoding="utf-8")).get("chat_template")
    if isinstance(template, str):
        put("jinja", os.path.basename(os.path.dirname(path)) + ".jinja", template)
put("jinja", "demo_chat_template.jinja", read(f"{repo}/examples/chat_template.jinja"))
