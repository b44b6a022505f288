#!/usr/bin/env bash
# The tokenizer benchmark: nnterp's encoder against the reference implementations reachable here,
# on the same corpus, the same machine, in one run, each pinned to one core.
#   GPT-2:   nnterp vs gpt-3-encoder and @huggingface/tokenizers (transformers.js's tokenizer)
#            under node;
#   Llama 2: nnterp vs SentencePiece (Debian's python3-sentencepiece), line by line and batched.
# Builds bench_tokenizer, makes the corpus once (bench/.cache, gitignored), installs the node
# packages once (bench/node_modules from bench/package-lock.json), runs every side, checks on a
# sample of lines that nnterp's ids equal each reference's, and writes docs/benchmarks-tokenizer.md.
#
# Usage: bench/tokenizer.sh
# Environment (optional): BENCH_BUILD_DIR (default bench/.cache/build), BENCH_TOK_MB (corpus size
# in MB, 15), BENCH_TOK_REPS (timed passes of nnterp, 5), BENCH_TOK_REF_REPS (timed passes of each
# reference, 3), BENCH_TOK_SAMPLE (every how many lines the id check takes one, 20), BENCH_CPU
# (0, the core taskset pins to).
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${BENCH_BUILD_DIR:-bench/.cache/build}
MB=${BENCH_TOK_MB:-15}
REPS=${BENCH_TOK_REPS:-5}
REF_REPS=${BENCH_TOK_REF_REPS:-3}
SAMPLE=${BENCH_TOK_SAMPLE:-20}
CPU=${BENCH_CPU:-0}
PY=/usr/bin/python3 # Debian's python, with python3-sentencepiece
TOK=../shared/tokenizers
CORPUS=bench/.cache/tokcorpus-${MB}mb-seed0.txt
OUT=docs/benchmarks-tokenizer.md
die() { echo "bench/tokenizer.sh: $*" >&2; exit 1; }

for f in gpt2/tokenizer.json gpt2/tokenizer_config.json llama2/tokenizer.json llama2/tokenizer.model; do
  [ -f "$TOK/$f" ] || die "missing $TOK/$f: the shared tokenizer files are expected in" \
    "../shared/tokenizers beside the repository (shared/ of the project)"
done
command -v taskset >/dev/null || die "taskset (util-linux) is required"
for c in node npm; do command -v "$c" >/dev/null || die "$c is required (node 20 or later)"; done
"$PY" -c "import sentencepiece" 2>/dev/null ||
  die "$PY lacks sentencepiece: apt-get install -y python3-sentencepiece (tools/setup.sh)"

started=$(date +%s)
BENCH_LOAD_START=$(cut -d" " -f1-3 /proc/loadavg)
echo "== building bench_tokenizer in $BUILD" >&2
mkdir -p "$BUILD"
if grep -q 'add_executable(bench_tokenizer' CMakeLists.txt; then
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD" --target bench_tokenizer -j "$(nproc)" >/dev/null
  BENCH_CC=$(sed -n 's/^CMAKE_C_COMPILER:[^=]*=//p' "$BUILD/CMakeCache.txt" | head -n1)
  BUILT_BY="CMake Release build (-O3 -DNDEBUG)"
else # until CMakeLists.txt has the target: the same sources and flags, by hand
  BENCH_CC=${CC:-gcc}
  # shellcheck disable=SC2046
  "$BENCH_CC" -std=c11 -O3 -DNDEBUG -Wall -Wextra -Werror -Wno-unused-parameter -D_DEFAULT_SOURCE \
    -Ibase -Iengine $(pkg-config --cflags libcjson openblas libpcre2-8 libutf8proc) \
    base/*.c engine/*.c bench/bench_tokenizer.c \
    $(pkg-config --libs libcjson openblas libpcre2-8 libutf8proc) -lm -o "$BUILD/bench_tokenizer"
  BUILT_BY="direct $BENCH_CC -O3 -DNDEBUG build, the Release flags (CMakeLists.txt has no bench_tokenizer target yet)"
fi
BENCH_CC="$BENCH_CC ($("$BENCH_CC" -dumpfullversion 2>/dev/null || echo '?'))"

if [ ! -s "$CORPUS" ] || [ tools/make_corpus.py -nt "$CORPUS" ]; then
  echo "== writing $CORPUS" >&2
  "$PY" tools/make_corpus.py --out "$CORPUS" --mb "$MB" --seed 0 --shared ../shared
fi

if [ ! -f bench/node_modules/.package-lock.json ] ||
   [ bench/package-lock.json -nt bench/node_modules/.package-lock.json ]; then
  echo "== npm ci in bench/" >&2
  (cd bench && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi

# One thread everywhere: the engine links OpenBLAS (unused here), whose pool would share the core.
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pin=(taskset -c "$CPU")
dump=(--dump-every "$SAMPLE" --dump-ids)
run() { # NAME OUTPUT-JSON COMMAND...
  local name=$1 out=$2
  shift 2
  echo "== $name: ${pin[*]} $*" >&2
  "${pin[@]}" "$@" >"$out"
}
run "nnterp GPT-2" "$tmp/nn_gpt2.json" "$BUILD/bench_tokenizer" "$TOK/gpt2" "$CORPUS" \
  --reps "$REPS" "${dump[@]}" "$tmp/nn_gpt2.ids"
run "nnterp Llama 2" "$tmp/nn_llama2.json" "$BUILD/bench_tokenizer" "$TOK/llama2" "$CORPUS" \
  --reps "$REPS" "${dump[@]}" "$tmp/nn_llama2.ids"
run "sentencepiece" "$tmp/sp.json" "$PY" bench/tokenizer_sentencepiece.py \
  "$TOK/llama2/tokenizer.model" "$CORPUS" --reps "$REF_REPS" "${dump[@]}" "$tmp/sp.ids"
run "gpt-3-encoder" "$tmp/g3e.json" node bench/tokenizer_node.mjs gpt-3-encoder "$TOK/gpt2" \
  "$CORPUS" --reps "$REF_REPS" "${dump[@]}" "$tmp/g3e.ids"
run "@huggingface/tokenizers GPT-2" "$tmp/hft.json" node bench/tokenizer_node.mjs hf-tokenizers \
  "$TOK/gpt2" "$CORPUS" --reps "$REF_REPS" "${dump[@]}" "$tmp/hft.ids"

# Machine facts for the report.
export BENCH_CPU_MODEL BENCH_DATE BENCH_KERNEL BENCH_CC BENCH_NPROC BENCH_PIN BENCH_SPM_DEB \
  BENCH_NODE BENCH_ELAPSED BUILT_BY BENCH_CORPUS BENCH_SAMPLE BENCH_TOK_MB BENCH_TOK_DIR \
  BENCH_LOAD_START BENCH_LOAD_END
BENCH_CPU_MODEL=$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n1)
BENCH_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
BENCH_KERNEL=$(uname -srm)
BENCH_NPROC=$(getconf _NPROCESSORS_ONLN)
BENCH_PIN="${pin[*]}"
BENCH_SPM_DEB=$(dpkg-query -W -f='${Package} ${Version}' python3-sentencepiece 2>/dev/null ||
  echo "python3-sentencepiece (version unknown)")
BENCH_NODE=$(node --version)
BENCH_ELAPSED=$(($(date +%s) - started))
BENCH_LOAD_END=$(cut -d" " -f1-3 /proc/loadavg)
BENCH_CORPUS=$CORPUS
BENCH_SAMPLE=$SAMPLE
BENCH_TOK_MB=$MB
BENCH_TOK_DIR=$TOK

"$PY" - "$tmp" "$OUT" <<'EOF'
import hashlib, json, os, sys

tmp, out = sys.argv[1:3]
e = os.environ
J = lambda n: json.load(open(os.path.join(tmp, n)))
nn_g, nn_l, sp, g3e, hft = J("nn_gpt2.json"), J("nn_llama2.json"), J("sp.json"), J("g3e.json"), J("hft.json")
corpus = e["BENCH_CORPUS"]
data = open(corpus, "rb").read()
sha = hashlib.sha256(data).hexdigest()[:16]
lines = data.split(b"\n")
for r in (nn_l, sp, g3e, hft):
    if r["bytes"] != nn_g["bytes"] or r["lines"] != nn_g["lines"]:
        sys.exit(f"bench/tokenizer.sh: the sides read different corpora ({r['bytes']} vs {nn_g['bytes']} bytes)")


def ids(name):
    d = {}
    for row in open(os.path.join(tmp, name)):
        k, _, v = row.rstrip("\n").partition("\t")
        d[int(k)] = v
    return d


def pieces(name):
    """id -> the bytes the token stands for, from the tokenizer.json nnterp read."""
    tj = json.load(open(os.path.join(e["BENCH_TOK_DIR"], name, "tokenizer.json")))
    vocab = dict(tj["model"]["vocab"])
    for t in tj.get("added_tokens", []):
        vocab[t["content"]] = t["id"]
    if name == "gpt2":  # byte-level: GPT-2's bytes_to_unicode, inverted
        bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
        cs, n = bs[:], 0
        for b in range(256):
            if b not in bs:
                bs.append(b)
                cs.append(256 + n)
                n += 1
        inv = {chr(c): b for b, c in zip(bs, cs)}
        conv = lambda p: bytes(inv[c] for c in p if c in inv)
    else:  # SentencePiece-style: U+2581 for spaces, <0xNN> byte fallback
        conv = lambda p: (bytes([int(p[3:5], 16)]) if len(p) == 6 and p.startswith("<0x")
                          else p.replace("\u2581", " ").encode())
    return {i: conv(p) for p, i in vocab.items()}


PIECES = {}


def where(name, i, a, b):
    """The text around the first token where the two sides part, as a hint of why."""
    if name not in PIECES:
        PIECES[name] = pieces(name)
    a, b = a.split(), b.split()
    k = 0
    while k < min(len(a), len(b)) and a[k] == b[k]:
        k += 1
    off = sum(len(PIECES[name].get(int(x), b"")) for x in a[:k])
    if name != "gpt2":
        off = max(0, off - 1)  # the space the Llama 2 normalizer puts in front
    raw = lines[i]
    lo = max(0, off - 12)
    while lo > 0 and (raw[lo] & 0xC0) == 0x80:
        lo -= 1
    return f"line {i}, token {k}: `{ascii(raw[lo:off + 12].decode('utf-8', 'replace'))}`"


def agree(name, a, b):
    A, B = ids(a), ids(b)
    same = [k for k in A if A.get(k) == B.get(k)]
    diff = sorted(k for k in A if A.get(k) != B.get(k))
    return len(same), len(A), [where(name, k, A[k], B.get(k, "")) for k in diff[:3]], len(diff)


checks = [("GPT-2", "nnterp vs gpt-3-encoder", *agree("gpt2", "nn_gpt2.ids", "g3e.ids")),
          ("GPT-2", "nnterp vs @huggingface/tokenizers", *agree("gpt2", "nn_gpt2.ids", "hft.ids")),
          ("Llama 2", "nnterp vs sentencepiece", *agree("llama2", "nn_llama2.ids", "sp.ids"))]

mb = nn_g["bytes"] / 1e6
f1 = lambda x: f"{x / 1e6:.2f} M" if x >= 1e6 else f"{x / 1e3:.0f} k"
rows = []


def row(tok, name, r, ref=None):
    """ref: nnterp's result, for the ratio columns (None on nnterp's own row)."""
    ratio = lambda k: "—" if ref is None else f"**{ref[k] / r[k]:.2f}×**"
    rows.append(f"| {tok} | {name} | {f1(r['tokens_per_s'])} | {r['mb_per_s']:.2f} | "
                f"{r['mb_per_s_cpu']:.2f} | {r['mb_per_s_cold']:.2f} | {r['tokens']:,} | "
                f"{ratio('mb_per_s')} | {ratio('mb_per_s_cpu')} |")


sp_pl, sp_b = sp["modes"]["per_line"], sp["modes"]["batch"]
row("GPT-2", "**nnterp** (`bench/bench_tokenizer.c`)", nn_g)
row("GPT-2", f"gpt-3-encoder {g3e['version']} (node {g3e['node']})", g3e, nn_g)
row("GPT-2", f"@huggingface/tokenizers {hft['version']} (node {hft['node']})", hft, nn_g)
row("Llama 2", "**nnterp** (`bench/bench_tokenizer.c`)", nn_l)
row("Llama 2", f"sentencepiece {sp['version']}, `sp.encode(line)` per line", sp_pl, nn_l)
row("Llama 2", f"sentencepiece {sp['version']}, `sp.encode(lines)` batched", sp_b, nn_l)

runs = lambda r: ", ".join(f"{x:.2f}" for x in r["runs"])
check_rows = "\n".join(
    f"| {t} | {name} | {s} / {n} ({100 * s / n:.2f} %) | "
    + ("; ".join(d) + (" …" if nd > 3 else "") if d else "—") + " |"
    for t, name, s, n, d, nd in checks)

md = f"""# Tokenizer benchmark

Generated by `bench/tokenizer.sh` — rerun that one command to reproduce; it rewrites this file.

Encoding speed of nnterp's tokenizer (`engine/tokenizer.c`) against the reference encoders
reachable on this machine, same corpus, same machine, one run, each process pinned with
`{e['BENCH_PIN']}` and single-threaded.

## Figures

Corpus: `{corpus}` — {mb:.1f} MB (10⁶ bytes of text, newlines excluded), {nn_g['lines']:,}
documents, one per line, written by `tools/make_corpus.py --mb {e['BENCH_TOK_MB']} --seed 0`
(sha256 {sha}…): mostly English-like prose (common words with Zipf frequencies plus a tail of rare
made-up words and names, numbers, quotes, contractions), with code-like lines and lines that
splice in the shared tokenizer test texts (accents, CJK, emoji, RTL and Indic scripts, control
characters, URLs, odd whitespace). {nn_g['bytes'] / nn_g['tokens']:.2f} bytes per GPT-2 token,
{nn_l['bytes'] / nn_l['tokens']:.2f} per Llama 2 token.

Each line is encoded on its own, without special tokens (BOS/EOS), the way a dataset of prompts
is tokenized. Every side first makes one pass reported apart ("cold": it fills the word caches and,
under node, warms the JIT), then times {nn_g['reps']} passes (nnterp) or {sp['reps']} passes (the
references); the warm figures are the medians. MB/s counts input bytes, so the ratio column,
nnterp's MB/s ÷ the reference's, compares the same work even where the token counts differ by a
few. Each pass is timed twice: by the wall clock (the tokens/s, MB/s and cold columns) and by
the CPU time of the process (the "MB/s, CPU time" column), which other work sharing the machine
does not inflate; when the two columns differ much, the machine was busy (see the load average
below) and the CPU-time ratio is the steadier comparison.

| tokenizer | implementation | tokens/s | MB/s | MB/s, CPU time | MB/s cold | tokens | nnterp faster by (wall) | (CPU time) |
|---|---|---:|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

Cold-pass ratios (first pass over the corpus, nnterp ÷ reference): gpt-3-encoder
{nn_g['mb_per_s_cold'] / g3e['mb_per_s_cold']:.2f}×, @huggingface/tokenizers
{nn_g['mb_per_s_cold'] / hft['mb_per_s_cold']:.2f}×, sentencepiece per line
{nn_l['mb_per_s_cold'] / sp_pl['mb_per_s_cold']:.2f}×, batched {nn_l['mb_per_s_cold'] / sp_b['mb_per_s_cold']:.2f}×.

Timed passes (seconds): nnterp GPT-2 {runs(nn_g)}; nnterp Llama 2 {runs(nn_l)}; gpt-3-encoder
{runs(g3e)}; @huggingface/tokenizers {runs(hft)}; sentencepiece per line {runs(sp_pl)}, batched
{runs(sp_b)}. Loading the tokenizer (not timed above): nnterp GPT-2 {nn_g['seconds_load']:.3f} s,
Llama 2 {nn_l['seconds_load']:.3f} s.

What each side does:

- nnterp: `nn_tokenizer_encode(tok, line, len, false, &ids)` from the Hugging Face
  `tokenizer.json` in `../shared/tokenizers/{{gpt2,llama2}}`, reusing one id buffer.
- gpt-3-encoder: the npm package's `encode(line)` (plain JavaScript, its own copy of GPT-2's
  vocabulary and merges, a per-word cache).
- @huggingface/tokenizers: `new Tokenizer(tokenizer.json, tokenizer_config.json)` then
  `encode(line, {{add_special_tokens: false}}).ids`. This is the tokenizer of transformers.js:
  `@huggingface/transformers` 4.x bundles this very package and version for its `AutoTokenizer`;
  installing transformers.js itself would bring ~470 MB of ONNX runtimes and image libraries
  that a tokenizer never uses, so the benchmark installs the tokenizer package alone.
- sentencepiece: `SentencePieceProcessor(model_file=tokenizer.model)`; per line is a Python loop
  of `sp.encode(line)`, batched is one `sp.encode(lines, num_threads=1)` whose loop runs in C++.
  Lines are decoded to `str` before timing on both paths.

## Same ids

Every {e['BENCH_SAMPLE']}th line of the corpus, encoded by both sides after the timing and
compared id for id:

| tokenizer | pair | lines identical | first differing lines (text where the ids part) |
|---|---|---:|---|
{check_rows}

nnterp follows the Hugging Face `tokenizers` library (Rust), which its own tests check id for id.
The JavaScript encoders run GPT-2's pre-tokenizer regex as a JavaScript `RegExp`, whose `\\s`
also matches U+FEFF (the byte order mark), which the Rust regex does not count as whitespace: a
line holding " \\ufeff" splits differently there (the "BOM at start" test text spliced into the
corpus). On the shared test texts (`tests_no_bos.jsonl`), SentencePiece and the Hugging Face
Llama 2 `tokenizer.json` differ only on literal special-token text (`<s>`, `</s>`), which the
corpus leaves out.

## Machine

- CPU: {e['BENCH_CPU_MODEL']} ({e['BENCH_NPROC']} logical CPUs visible); every process pinned
  with `{e['BENCH_PIN']}`, run one after another
- Kernel: {e['BENCH_KERNEL']}
- nnterp: {e['BUILT_BY']}, compiler {e['BENCH_CC']}
- SentencePiece: Debian {e['BENCH_SPM_DEB']} (module version {sp['version']}), Python
  {sys.version.split()[0]}
- Node: {e['BENCH_NODE']}; npm packages (pinned in `bench/package-lock.json`): gpt-3-encoder
  {g3e['version']}, @huggingface/tokenizers {hft['version']}
- Date: {e['BENCH_DATE']}; the whole script took {e['BENCH_ELAPSED']} s; load average (1, 5,
  15 min) {e['BENCH_LOAD_START']} at the start, {e['BENCH_LOAD_END']} at the end — other work on
  the machine shares its 2 CPUs and makes the figures noisier the higher that is
- Command: `bench/tokenizer.sh`

The issue suggested a 50 MB corpus; the default here is {e['BENCH_TOK_MB']} MB, with {sp['reps']} timed
passes of each reference after its cold one, so that the whole run (build, corpus, five
processes, the JavaScript encoders at 0.5–1.5 MB/s making four passes each) stays within about
five minutes on this 2-CPU machine. `BENCH_TOK_MB=50 bench/tokenizer.sh` runs the larger corpus
(about 3.3 times as long).
"""
open(out, "w").write(md)
print(f"GPT-2: nnterp {nn_g['mb_per_s']:.2f} MB/s, gpt-3-encoder {g3e['mb_per_s']:.2f}, "
      f"@huggingface/tokenizers {hft['mb_per_s']:.2f}; Llama 2: nnterp {nn_l['mb_per_s']:.2f} MB/s, "
      f"sentencepiece {sp_pl['mb_per_s']:.2f} per line / {sp_b['mb_per_s']:.2f} batched -> {out}")
for t, name, s, n, d, nd in checks:
    print(f"ids {t} {name}: {s}/{n} lines identical")
EOF
