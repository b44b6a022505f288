// The node references for bench/tokenizer.sh, timed like bench_tokenizer.c.
//
// Usage: node bench/tokenizer_node.mjs IMPL TOKENIZER_DIR CORPUS_FILE [--reps R]
//                                      [--dump-ids OUT [--dump-every K]]
//
// IMPL:
//   gpt-3-encoder    the npm package gpt-3-encoder: GPT-2's BPE in plain JavaScript with its own
//                    copy of GPT-2's vocabulary (TOKENIZER_DIR is not read); GPT-2 only.
//   hf-tokenizers    @huggingface/tokenizers (Tokenizers.js), the tokenizer code of
//                    @huggingface/transformers (transformers.js) — transformers.js 4.x bundles
//                    this very package, so this is what its AutoTokenizer runs, without the
//                    ~470 MB of ONNX runtimes it installs. Built offline from TOKENIZER_DIR's
//                    tokenizer.json and tokenizer_config.json.
//
// Each line of the corpus (without its '\n') is encoded on its own without special tokens. The
// lines are split and decoded to JS strings before timing. One untimed pass ("cold": JIT warm-up
// and the encoders' word caches), then R timed passes; the JSON on stdout gives the median.
// --dump-ids writes every K-th line's ids ("LINENO<TAB>ids") as bench_tokenizer does, encoding
// those lines once more after the timing.
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(import.meta.url);

function usage(msg) {
  if (msg) console.error(`tokenizer_node.mjs: ${msg}`);
  console.error(
    "usage: node bench/tokenizer_node.mjs gpt-3-encoder|hf-tokenizers TOKENIZER_DIR CORPUS " +
      "[--reps R] [--dump-ids OUT [--dump-every K]]",
  );
  process.exit(2);
}

const pos = [];
let reps = 5, dumpPath = null, dumpEvery = 1000;
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === "--reps") reps = parseInt(argv[++i], 10);
  else if (a === "--dump-ids") dumpPath = argv[++i];
  else if (a === "--dump-every") dumpEvery = parseInt(argv[++i], 10);
  else if (a.startsWith("--")) usage(`unknown option ${a}`);
  else pos.push(a);
}
if (pos.length !== 3 || !(reps >= 1) || !(dumpEvery >= 1)) usage();
const [impl, tokDir, corpus] = pos;

function version(pkg) {
  // Not require.resolve(`${pkg}/package.json`): a package's "exports" may hide that path.
  let dir = path.dirname(require.resolve(pkg));
  for (; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    try {
      const j = JSON.parse(readFileSync(path.join(dir, "package.json"), "utf8"));
      if (j.name === pkg) return j.version;
    } catch {
      // keep climbing
    }
  }
  return "unknown";
}

let encode, pkg;
if (impl === "gpt-3-encoder") {
  pkg = "gpt-3-encoder";
  encode = require("gpt-3-encoder").encode; // returns an array of ids
} else if (impl === "hf-tokenizers") {
  pkg = "@huggingface/tokenizers";
  const { Tokenizer } = await import("@huggingface/tokenizers");
  const json = JSON.parse(readFileSync(path.join(tokDir, "tokenizer.json"), "utf8"));
  let config = {};
  try {
    config = JSON.parse(readFileSync(path.join(tokDir, "tokenizer_config.json"), "utf8"));
  } catch {
    // tokenizer_config.json is optional
  }
  const tok = new Tokenizer(json, config);
  const opts = { add_special_tokens: false };
  encode = (text) => tok.encode(text, opts).ids;
} else {
  usage(`unknown IMPL ${impl}`);
}

const data = readFileSync(corpus);
const lines = [];
let bytes = 0;
for (let start = 0; start < data.length; ) {
  let end = data.indexOf(10, start);
  if (end < 0) end = data.length;
  lines.push(data.toString("utf8", start, end));
  bytes += end - start;
  start = end + 1;
}

function pass() {
  let tokens = 0;
  for (let i = 0; i < lines.length; i++) tokens += encode(lines[i]).length;
  return tokens;
}

// CPU time of the process (all its threads, the GC's included), beside the wall clock.
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };
let c0 = cpu();
let t0 = process.hrtime.bigint();
const tokens = pass();
const cold = Number(process.hrtime.bigint() - t0) / 1e9;
const cpuCold = cpu() - c0;
const runs = [], cpuRuns = [];
for (let r = 0; r < reps; r++) {
  c0 = cpu();
  t0 = process.hrtime.bigint();
  const n = pass();
  runs.push(Number(process.hrtime.bigint() - t0) / 1e9);
  cpuRuns.push(cpu() - c0);
  if (n !== tokens) {
    console.error(`tokenizer_node.mjs: pass ${r + 1} gave ${n} tokens, the first ${tokens}`);
    process.exit(1);
  }
}
if (dumpPath) { // encoded once more, after the timing
  const out = [];
  for (let i = 0; i < lines.length; i += dumpEvery) {
    out.push(`${i}\t${encode(lines[i]).join(" ")}\n`);
  }
  writeFileSync(dumpPath, out.join(""));
}
function median(x) {
  const s = [...x].sort((a, b) => a - b), n = s.length;
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}
const med = median(runs), cpuMed = median(cpuRuns);
console.log(
  JSON.stringify({
    implementation: impl, package: pkg, version: version(pkg), node: process.version,
    lines: lines.length, tokens, bytes, reps, seconds_cold: cold, seconds_median: med, runs,
    tokens_per_s: tokens / med, mb_per_s: bytes / med / 1e6,
    tokens_per_s_cold: tokens / cold, mb_per_s_cold: bytes / cold / 1e6,
    cpu_seconds_cold: cpuCold, cpu_seconds_median: cpuMed, mb_per_s_cpu: bytes / cpuMed / 1e6,
  }),
);
