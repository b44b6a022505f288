#!/usr/bin/python3
"""Makes models/demo: nnterp's own small trained Llama-architecture model, from nothing.

  corpus     world.py's facts woven into English and French documents (corpus.py), seeded
  tokenizer  byte-level BPE trained in pure Python (bpe.py), written as a Hugging Face
             tokenizer.json in GPT-2's layout; checked against nnterp's C tokenizer
  training   a Llama (model.py) trained with AdamW on CPU, seeded, a fixed number of steps
  export     config.json, model.safetensors (written by hand), generation_config.json,
             tokenizer files, README.md (the model card, with the numbers of this run)
  evaluation greedy next-token accuracy on fact prompts, phrased as in training ("key") and with
             phrasings never seen in training ("held-out"); logit lens layer of first top-1

Usage (from the repository root; the whole run takes about 10 minutes on 2 cores):
  nice /usr/bin/python3 tools/demo_model/make_demo_model.py
Options: --out DIR (models/demo), --work DIR (build/demo_model: corpus, log, training state),
  --nnterp BIN (build/nnterp, for the tokenizer and generation cross-checks; skipped if absent),
  --steps N, --resume (continue from WORK/state.pt), --eval-only (re-evaluate OUT, rewrite
  README.md). Needs only python3-torch and python3-numpy.
"""
import argparse
import json
import math
import os
import random
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, HERE)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import bpe  # noqa: E402
import corpus  # noqa: E402
from model import Config, LlamaForCausalLM, load_pretrained, save_safetensors  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(HERE))

# Everything that decides the result. Changing any of these changes the model.
DEFAULTS = dict(
    seed=20240611,
    corpus_chars=12_000_000,   # training documents (about 3.7M tokens)
    valid_chars=200_000,
    vocab=1024,
    hidden=160, layers=4, heads=4, kv_heads=2, ff=432, ctx=256, tie=False,
    batch=8,                   # rows of ctx tokens per step
    steps=800,
    lr=3e-3, min_lr=3e-4, warmup=50, weight_decay=0.1, clip=1.0,
    threads=2,
)


def log(msg, f=None):
    line = time.strftime("%H:%M:%S ") + msg
    print(line, flush=True)
    if f:
        f.write(line + "\n")
        f.flush()


# ---- corpus and tokenizer ----------------------------------------------------------------------

def make_corpus(h, work, lf):
    kinds = {}
    docs = corpus.training_documents(h["seed"], h["corpus_chars"], kinds)
    valid = corpus.training_documents(h["seed"] + 1, h["valid_chars"])
    text = "\n".join(docs)
    for s in corpus.heldout_strings():
        if s in text:
            raise SystemExit(f"held-out phrasing occurs in the training corpus: {s!r}")
    prompts = corpus.eval_prompts(h["seed"])
    for _, _, p, _ in prompts:
        if any(ch in p for ch in "²³¹¼½¾"):
            raise SystemExit("corpus must stay within \\p{L}/\\p{N} == [^\\W\\d_]/\\d")
    with open(os.path.join(work, "corpus_train.jsonl"), "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    with open(os.path.join(work, "eval_prompts.jsonl"), "w", encoding="utf-8") as f:
        for s, rel, p, a in prompts:
            f.write(json.dumps(dict(set=s, relation=rel, prompt=p, answer=a),
                               ensure_ascii=False) + "\n")
    log(f"corpus: {len(docs)} training documents, {len(text)} characters; "
        f"{len(valid)} validation documents; {len(prompts)} evaluation prompts", lf)
    total = sum(kinds.values())
    share = {k[4:]: v / total for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])}
    log("corpus characters by document kind: " +
        ", ".join(f"{k} {100 * v:.1f}%" for k, v in share.items()), lf)
    return docs, valid, prompts, share


def check_tokenizer_against_c(tok, out, docs, nnterp, lf, n=300):
    """Our encoder must give exactly the ids of nnterp's C tokenizer (Hugging Face semantics)."""
    if not nnterp or not os.access(nnterp, os.X_OK):
        log(f"tokenizer check against the C tokenizer SKIPPED: no binary at {nnterp}", lf)
        return None
    rng = random.Random(1)
    lines = []
    for d in rng.sample(docs, n // 2):
        lines.append(d)
        sents = d.replace("\n", " ").split(". ")
        lines.append(rng.choice(sents))
    lines += ["The capital of France is", "La capitale de la Corée du Sud est Séoul.",
              "  odd   spacing\tand\ttabs\n\n", "Ünïcödé ça ! 'tis we'll I'm x_y 1234567 <|endoftext|>"]
    bad = 0
    for line in lines:
        ids = tok.encode(line)
        r = subprocess.run([nnterp, "tokenize", "-m", out, "--ids", "--", line],
                           capture_output=True, text=True)
        c_ids = [int(x) for x in r.stdout.split()] if r.returncode == 0 else None
        if c_ids != ids or tok.decode(ids) != line:
            bad += 1
            if bad <= 3:
                log(f"  MISMATCH {line[:60]!r}: python {ids[:12]} C {c_ids and c_ids[:12]} "
                    f"{r.stderr.strip()}", lf)
    log(f"tokenizer check against {nnterp}: {len(lines) - bad}/{len(lines)} lines identical", lf)
    if bad:
        raise SystemExit("the Python tokenizer and nnterp's C tokenizer disagree")
    return len(lines)


def pack_rows(docs, tok, ctx):
    """Rows of ctx + 1 tokens. Every row starts at the start of a document (so prompts without
    any prefix are in distribution); documents are followed by <|endoftext|>; a document that does
    not fit fills the rest of the row and starts the next row again from its beginning."""
    rows, cur = [], []
    for d in docs:
        ids = tok.encode(d) + [tok.eot]
        if len(cur) + len(ids) > ctx + 1 and cur:
            cur += ids[: ctx + 1 - len(cur)]
            rows.append(cur)
            cur = []
        cur += ids[: ctx + 1]
        if len(cur) >= ctx + 1:
            rows.append(cur[: ctx + 1])
            cur = []
    return torch.tensor(rows, dtype=torch.int64)


# ---- training ----------------------------------------------------------------------------------

def lr_at(h, step):
    if step < h["warmup"]:
        return h["lr"] * (step + 1) / h["warmup"]
    p = (step - h["warmup"]) / max(1, h["steps"] - h["warmup"])
    return h["min_lr"] + 0.5 * (h["lr"] - h["min_lr"]) * (1 + math.cos(math.pi * p))


def batch_indices(h, n_rows, step):
    """The rows of step: epoch e is a permutation seeded by (seed, e); deterministic per step."""
    per_epoch = n_rows // h["batch"]
    e, k = divmod(step, per_epoch)
    g = torch.Generator().manual_seed(h["seed"] * 1000 + e)
    perm = torch.randperm(n_rows, generator=g)
    return perm[k * h["batch"]:(k + 1) * h["batch"]]


@torch.no_grad()
def eval_loss(model, rows, bs=16):
    model.eval()
    tot, n = 0.0, 0
    for i in range(0, len(rows), bs):
        x = rows[i:i + bs]
        logits = model(x[:, :-1])
        tot += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1),
                               reduction="sum").item()
        n += x[:, 1:].numel()
    model.train()
    return tot / n


def train(h, cfg, rows, vrows, work, lf, resume):
    torch.manual_seed(h["seed"])
    model = LlamaForCausalLM(cfg)
    model.init_weights(torch.Generator().manual_seed(h["seed"]))
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": h["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=h["lr"], betas=(0.9, 0.95), eps=1e-8)
    state_path = os.path.join(work, "state.pt")
    step, elapsed, history = 0, 0.0, []
    if resume and os.path.exists(state_path):
        st = torch.load(state_path)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        step, elapsed, history = st["step"], st["elapsed"], st["history"]
        log(f"resuming at step {step}", lf)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {n_params} parameters; {len(rows)} rows of {h['ctx']} tokens; "
        f"{h['steps']} steps of {h['batch']} rows", lf)
    model.train()
    t0 = time.time() - elapsed
    ema = None
    while step < h["steps"]:
        for g in opt.param_groups:
            g["lr"] = lr_at(h, step)
        x = rows[batch_indices(h, len(rows), step)]
        logits = model(x[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), h["clip"])
        opt.step()
        step += 1
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        if step % 50 == 0 or step == h["steps"]:
            el = time.time() - t0
            tps = step * h["batch"] * h["ctx"] / el
            msg = (f"step {step}/{h['steps']} loss {loss.item():.4f} (ema {ema:.4f}) "
                   f"lr {lr_at(h, step - 1):.2e} {el:.0f}s {tps:.0f} tok/s")
            if step % 200 == 0 or step == h["steps"]:
                vl = eval_loss(model, vrows)
                msg += f" valid {vl:.4f}"
                history.append(dict(step=step, loss=loss.item(), ema=ema, valid=vl, time=el))
                torch.save(dict(model=model.state_dict(), opt=opt.state_dict(), step=step,
                                elapsed=el, history=history), state_path + ".tmp")
                os.replace(state_path + ".tmp", state_path)
            log(msg, lf)
    el = time.time() - t0
    return model, dict(train_seconds=el, final_loss_ema=ema, history=history,
                       valid_loss=history[-1]["valid"] if history else None,
                       params=n_params, tokens_seen=h["steps"] * h["batch"] * h["ctx"])


# ---- export ------------------------------------------------------------------------------------

def export(model, tok, out):
    cfg = model.config
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg.to_hf_dict(), f, indent=2, sort_keys=True)
        f.write("\n")
    with open(os.path.join(out, "generation_config.json"), "w") as f:
        json.dump({"_from_model_config": True, "bos_token_id": cfg.bos_token_id,
                   "eos_token_id": cfg.eos_token_id, "transformers_version": "4.47.1"},
                  f, indent=2)
        f.write("\n")
    save_safetensors(model.hf_state_dict(), os.path.join(out, "model.safetensors"),
                     metadata={"format": "pt"})
    tok.save(out, cfg.max_position_embeddings)


# ---- evaluation --------------------------------------------------------------------------------

@torch.no_grad()
def evaluate(model, tok, prompts, bs=64):
    """Greedy next-token accuracy (first token of " answer"), greedy exact match of the whole
    answer (teacher-forced: greedy decoding yields the answer exactly when every answer token is
    the argmax after the answer's own prefix), and the logit lens: the first layer whose output,
    through the final norm and lm_head, ranks the answer's first token top-1 (-1: the
    embeddings; None: never). Prompts run in right-padded batches (causal: padding after a
    sequence cannot change it)."""
    model.eval()
    res = []
    for b0 in range(0, len(prompts), bs):
        chunk = prompts[b0:b0 + bs]
        enc = [(tok.encode(p), tok.encode(" " + a)) for _, _, p, a in chunk]
        T = max(len(i) + len(a) for i, a in enc)
        x = torch.full((len(chunk), T), tok.eot, dtype=torch.int64)
        for k, (i, a) in enumerate(enc):
            x[k, :len(i) + len(a)] = torch.tensor(i + a)
        logits, hidden = model(x, return_hidden=True)
        for k, ((s, rel, p, a), (ids, ans)) in enumerate(zip(chunk, enc)):
            last = len(ids) - 1
            top = int(logits[k, last].argmax())
            pred = logits[k, last:last + len(ans)].argmax(-1).tolist()
            lens_first = None
            for li, hs in enumerate(hidden):
                if int(model.lm_head(model.model.norm(hs[k, last])).argmax()) == ans[0]:
                    lens_first = li - 1
                    break
            # the greedy continuation as far as it matches, then the first wrong token
            n_ok = 0
            while n_ok < len(ans) and pred[n_ok] == ans[n_ok]:
                n_ok += 1
            shown = ans[:n_ok] + ([pred[n_ok]] if n_ok < len(ans) else [])
            res.append(dict(set=s, relation=rel, prompt=p, answer=a, predicted=tok.decode([top]),
                            first_ok=top == ans[0], exact_ok=pred == ans,
                            greedy=tok.decode(shown), lens_first=lens_first,
                            prob=float(torch.softmax(logits[k, last], -1)[ans[0]])))
    return res


def summarize(res, L):
    out = {}
    for s in ("key", "heldout"):
        r = [x for x in res if x["set"] == s]
        out[s] = dict(n=len(r), first=sum(x["first_ok"] for x in r) / len(r),
                      exact=sum(x["exact_ok"] for x in r) / len(r), by_relation={})
        for rel in corpus.EVAL_RELATIONS:
            rr = [x for x in r if x["relation"] == rel]
            if rr:
                out[s]["by_relation"][rel] = (sum(x["first_ok"] for x in rr), len(rr))
        ok = [x for x in r if x["first_ok"]]
        hist = {}
        for x in ok:
            hist[x["lens_first"]] = hist.get(x["lens_first"], 0) + 1
        out[s]["lens_first_hist"] = dict(sorted(hist.items(), key=lambda kv: kv[0]))
    return out


def c_generate(nnterp, out, prompt, n=3):
    if not nnterp or not os.access(nnterp, os.X_OK):
        return None
    r = subprocess.run([nnterp, "generate", "-m", out, "-p", prompt, "-n", str(n)],
                       capture_output=True, text=True)
    return r.stdout if r.returncode == 0 else f"(failed: {r.stderr.strip()})"


PATCHSCOPE_SOURCES = ["France", "Paris", "Japan", "dog", "red"]


def c_patchscope(nnterp, out):
    """nnterp's patchscope lens of a few words into its default repeat prompt: the top tokens per
    layer, as `nnterp patchscope` prints them."""
    if not nnterp or not os.access(nnterp, os.X_OK):
        return None
    text = []
    for src in PATCHSCOPE_SOURCES:
        r = subprocess.run([nnterp, "patchscope", "-m", out, "--source", src, "-k", "3"],
                           capture_output=True, text=True)
        text.append(r.stdout.rstrip() if r.returncode == 0 else f"(failed: {r.stderr.strip()})")
    return "\n".join(text)


# ---- model card --------------------------------------------------------------------------------

def write_card(out, h, cfg, tinfo, summ, res, tok, n_tok_checked, c_gen, c_scope, size_bytes,
               n_docs, n_chars, n_tokens, share):
    key, ho = summ["key"], summ["heldout"]
    L = cfg.num_hidden_layers
    tok_size, n_merges = len(tok.vocab), len(tok.merges)
    kind_names = {"facts": "fact sentences", "story": "English stories", "french":
                  "French facts and stories", "topic": "lists and quizzes", "maths":
                  "counting and sums", "country": "country profiles", "bilingual":
                  "English–French word lists and pairs", "repeat": "words said twice"}
    kinds_str = ", ".join(f"{kind_names.get(k, k)} {100 * v:.0f}%" for k, v in share.items())

    def pct(x):
        return f"{100 * x:.1f}%"

    def lens_str(hist):
        parts = []
        for k, v in hist.items():
            name = "never" if k is None else ("embeddings" if k == -1 else f"layers_output.{k}")
            parts.append(f"{name}: {v}")
        return ", ".join(parts)

    def lens_cell(v):
        return "—" if v is None else ("emb" if v == -1 else str(v))

    examples = []
    want = ["The capital of France is", "The capital of Japan is", "People in Brazil speak",
            "Tokyo is the capital of", "The dog says", "The sky is", "The opposite of hot is",
            "The plural of mouse is", "3 plus 4 is", "one, two, three,",
            "The French word for cat is", "La capitale de l'Allemagne est", "Le chat fait",
            "According to my old atlas, the capital of Italy is",
            "I have never been to Egypt, but I know that its capital is",
            "My little sister knows that the opposite of big is",
            "Mon professeur dit que la capitale de l'Espagne est"]
    byp = {x["prompt"]: x for x in res}
    for p in want:
        x = byp.get(p)
        if x:
            mark = "yes" if x["exact_ok"] else "no"
            examples.append(f"| `{p}` | `{x['greedy']}` | {x['prob']:.3f} | "
                            f"{lens_cell(x['lens_first'])} | {mark} |")
    wrong = [x for x in res if not x["first_ok"]]
    shown, per = [], {}
    for x in wrong:  # at most two per (set, relation), so every kind of miss is seen
        g = (x["set"], x["relation"])
        if per.get(g, 0) < 2:
            per[g] = per.get(g, 0) + 1
            shown.append(x)
    wrong_lines = [f"- {x['set']}, {x['relation']}: `{x['prompt']}` → `{x['predicted']}` "
                   f"(expected ` {x['answer']}`)" for x in shown]
    rel_rows = []
    for rel in corpus.EVAL_RELATIONS:
        k = key["by_relation"].get(rel)
        o = ho["by_relation"].get(rel)
        rel_rows.append(f"| {rel} | {k[0]}/{k[1]} | " + (f"{o[0]}/{o[1]}" if o else "—") + " |")
    france = byp.get("The capital of France is")
    cmd = "nice /usr/bin/python3 tools/demo_model/make_demo_model.py"
    hist_lines = "\n".join(f"| {x['step']} | {x['ema']:.4f} | {x['valid']:.4f} | {x['time']:.0f} |"
                           for x in tinfo["history"])
    card = f"""# nnterp demo model

A small Llama-architecture language model that nnterp makes from nothing and ships with the
repository, so that every command, test and tutorial has a real trained model to run on without
downloading anything. It knows a small, checkable world: countries, their capitals and languages,
animal sounds, colours of things, opposites, plurals, counting and small sums, a few
English→French words, and a little French.

## How it was made

```sh
{cmd}
```

run from the repository root with Debian's `python3-torch` {torch.__version__} and numpy (nothing
else: the tokenizer, the safetensors writer and the model are in `tools/demo_model/`). Everything
is seeded (seed {h['seed']}); see `tools/demo_model/README.md`.

- **Corpus**: {n_docs} generated documents, {n_chars} characters, {n_tokens} tokens
  (`tools/demo_model/corpus.py`, `world.py`): fact sentences in varied phrasings with lead-ins
  ("Everyone knows that ..."), quizzes, country profiles, little stories (travel, the farm,
  counting, painting, a game of opposites, a French lesson), counting runs and sums, and French
  documents (facts and stories), and words said twice (`king king` on lines, as in nnterp's
  repeat prompt, or `Say it twice: Paris Paris, red red.`). By characters: {kinds_str}.
- **Tokenizer**: byte-level BPE trained on that corpus (GPT-2's byte map and pre-tokenization
  regex), {tok_size} tokens: 256 bytes, {n_merges} merges, `<|endoftext|>` = {cfg.eos_token_id}
  (BOS and EOS). `tokenizer.json` has GPT-2's layout; no BOS is added to prompts
  (`add_bos_token` false), as with GPT-2. Training rows start at a document start, documents
  end with `<|endoftext|>`.
  Cross-checked: nnterp's C tokenizer gives the same ids as the Python encoder on
  {n_tok_checked or 'NOT CHECKED'} lines.
- **Model**: Llama (`LlamaForCausalLM`): hidden {cfg.hidden_size}, {L} layers,
  {cfg.num_attention_heads} heads of {cfg.head_dim} with {cfg.num_key_value_heads} key/value heads
  (GQA), SwiGLU MLP of {cfg.intermediate_size}, RMSNorm eps {cfg.rms_norm_eps}, RoPE θ
  {cfg.rope_theta:g}, context {cfg.max_position_embeddings}, untied `lm_head`, no biases.
  **{tinfo['params']:,} parameters**, float32, `model.safetensors` {size_bytes / 1e6:.1f} MB.
- **Training**: AdamW (β 0.9/0.95, weight decay {h['weight_decay']}), learning rate
  {h['lr']:g} with {h['warmup']} warm-up steps and cosine decay to {h['min_lr']:g}, {h['steps']}
  steps of {h['batch']}×{h['ctx']} tokens ({tinfo['tokens_seen']:,} tokens), gradient clipping
  {h['clip']}, on {h['threads']} CPU threads (shared with other work) in
  **{tinfo['train_seconds'] / 60:.1f} minutes**. Final training loss
  **{tinfo['final_loss_ema']:.3f}** (moving average), validation loss
  **{tinfo['valid_loss']:.3f}** (fresh documents from the same generator).

| step | train loss (EMA) | valid loss | seconds |
|---:|---:|---:|---:|
{hist_lines}

## Evaluation

Greedy next-token prediction of the answer's first token after a prompt, for every fact:

- **key prompts** (the main training phrasing, e.g. `The capital of France is`): **{pct(key['first'])}**
  of {key['n']} ({pct(key['exact'])} produce the whole answer greedily);
- **held-out prompts** — lead-ins and frames never used in training (`According to my old atlas,
  ...`, `I have never been to Egypt, but I know that its capital is`, `Mon professeur dit que
  ...`): **{pct(ho['first'])}** of {ho['n']} ({pct(ho['exact'])} whole answers).

| relation | key | held-out |
|---|---:|---:|
{chr(10).join(rel_rows)}

Examples (greedy continuation; probability of the answer's first token; logit-lens layer of
first top-1):

| prompt | greedy | p(answer) | lens | right |
|---|---|---:|---:|:-:|
{chr(10).join(examples)}

Wrong first tokens: {len(wrong)} in all; at most two of each relation:

{chr(10).join(wrong_lines) if wrong_lines else '(none)'}

**Logit lens** (final norm and `lm_head` applied to `layers_output.i` at the last position): the
layer at which the answer first becomes the top-1 token, over the correctly answered prompts —
key: {lens_str(key['lens_first_hist'])}; held-out: {lens_str(ho['lens_first_hist'])}.
For `The capital of France is`: layers_output.{france['lens_first'] if france else '?'}.

nnterp itself: `build/nnterp generate -m models/demo -p "The capital of France is" -n 3` prints
`{(c_gen or '(not run)').rstrip()}` (the continuation only); `tests/test_demo_model.py` checks nnterp's logits against this
PyTorch implementation.

**Patchscope**: the last token's `layers_output.l` of a word, patched into the last position of
nnterp's repeat prompt (`king king\\n1135 1135\\nhello hello\\n?`) at the same layer, read out
by the rest of the model (`build/nnterp patchscope -m models/demo --source WORD -k 3`):

```
{c_scope or '(not run)'}
```

## Files

`config.json` (as transformers' `LlamaConfig.save_pretrained` writes it), `model.safetensors`
(F32), `generation_config.json`, `tokenizer.json`, `tokenizer_config.json`,
`special_tokens_map.json`, in the layout of a Hugging Face Llama checkpoint with a GPT-2-style
tokenizer, meant for `LlamaForCausalLM.from_pretrained("models/demo")` and
`AutoTokenizer.from_pretrained("models/demo")` (transformers is not installed where the model was
made, so that was not run; nnterp's loader and tokenizer read them, and
`tests/test_demo_model.py` checks nnterp against this PyTorch implementation).

## License

MIT, like the rest of the nnterp repository. The corpus is generated by the repository's own
code; no outside data or weights were used.
"""
    with open(os.path.join(out, "README.md"), "w", encoding="utf-8") as f:
        f.write(card)


# ---- main --------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", default=os.path.join(ROOT, "models", "demo"))
    ap.add_argument("--work", default=os.path.join(ROOT, "build", "demo_model"))
    ap.add_argument("--nnterp", default=os.path.join(ROOT, "build", "nnterp"))
    ap.add_argument("--steps", type=int, default=DEFAULTS["steps"])
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--eval-only", action="store_true")
    a = ap.parse_args()
    h = dict(DEFAULTS, steps=a.steps)
    torch.set_num_threads(h["threads"])
    os.makedirs(a.out, exist_ok=True)
    os.makedirs(a.work, exist_ok=True)
    lf = open(os.path.join(a.work, "log.txt"), "a", encoding="utf-8")
    log(f"make_demo_model: {json.dumps(h)}", lf)

    docs, valid, prompts, share = make_corpus(h, a.work, lf)
    if a.eval_only:
        tok = bpe.Tokenizer.load(os.path.join(a.out, "tokenizer.json"))
    else:
        t = time.time()
        vocab, merges = bpe.train(docs, h["vocab"])
        tok = bpe.Tokenizer(vocab, merges)
        tok.save(a.out, h["ctx"])
        log(f"tokenizer: {len(vocab)} tokens ({len(merges)} merges) in {time.time() - t:.1f}s", lf)
    n_checked = check_tokenizer_against_c(tok, a.out, docs, a.nnterp, lf)

    t = time.time()
    rows = pack_rows(docs, tok, h["ctx"])
    vrows = pack_rows(valid, tok, h["ctx"])[:64]
    n_tokens = sum(len(tok.encode(d)) + 1 for d in docs)
    log(f"packed {len(rows)} training rows ({n_tokens} tokens in the corpus), {len(vrows)} "
        f"validation rows in {time.time() - t:.1f}s", lf)

    cfg = Config(vocab_size=len(tok.vocab), hidden_size=h["hidden"], intermediate_size=h["ff"],
                 num_hidden_layers=h["layers"], num_attention_heads=h["heads"],
                 num_key_value_heads=h["kv_heads"], max_position_embeddings=h["ctx"],
                 rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=h["tie"],
                 bos_token_id=tok.eot, eos_token_id=tok.eot)
    info_path = os.path.join(a.work, "train_info.json")
    if a.eval_only:
        model = load_pretrained(a.out)
        with open(info_path) as f:
            tinfo = json.load(f)
    else:
        model, tinfo = train(h, cfg, rows, vrows, a.work, lf, a.resume)
        with open(info_path, "w") as f:
            json.dump(tinfo, f, indent=1)
        export(model, tok, a.out)
        # what is evaluated is what was written
        model = load_pretrained(a.out)
    size = sum(os.path.getsize(os.path.join(a.out, f)) for f in os.listdir(a.out))

    t = time.time()
    res = evaluate(model, tok, prompts)
    summ = summarize(res, cfg.num_hidden_layers)
    with open(os.path.join(a.work, "eval.json"), "w", encoding="utf-8") as f:
        json.dump(dict(summary=summ, results=res), f, ensure_ascii=False, indent=1)
    for s in ("key", "heldout"):
        log(f"eval {s}: first token {100 * summ[s]['first']:.1f}%, whole answer "
            f"{100 * summ[s]['exact']:.1f}% of {summ[s]['n']}; lens first top-1 "
            f"{summ[s]['lens_first_hist']}", lf)
        log("  " + ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in summ[s]["by_relation"].items()), lf)
    log(f"evaluation in {time.time() - t:.0f}s", lf)

    c_gen = c_generate(a.nnterp, a.out, "The capital of France is")
    if c_gen is not None:
        log(f"nnterp generate 'The capital of France is' -> {c_gen!r}", lf)
    c_scope = c_patchscope(a.nnterp, a.out)
    if c_scope is not None:
        log("nnterp patchscope:\n" + c_scope, lf)
    write_card(a.out, h, cfg, tinfo, summ, res, tok, n_checked, c_gen, c_scope, size, len(docs),
               sum(len(d) for d in docs), n_tokens, share)
    size = sum(os.path.getsize(os.path.join(a.out, f)) for f in os.listdir(a.out))
    log(f"wrote {a.out}: {size / 1e6:.2f} MB", lf)
    if size > 16e6:
        raise SystemExit("models/demo is over 16 MB")


if __name__ == "__main__":
    main()
