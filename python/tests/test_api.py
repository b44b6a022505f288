"""nnterp_c against the engine's command line, bit for bit, and nnterp's invariants through it."""
import json
import subprocess

import numpy as np
import pytest

import nnterp_c as nc
from conftest import CLI, DEMO, SHARED, TINY, cli, cli_env, tiny

PROMPTS = ["The capital of France is", "Hello there", "One two three four five six"]


# ---- the model view ---------------------------------------------------------------------------

def test_attributes_match_config(demo):
    cfg = json.loads((DEMO / "config.json").read_text())
    assert demo.num_layers == cfg["num_hidden_layers"]
    assert demo.hidden_size == cfg["hidden_size"]
    assert demo.num_heads == cfg["num_attention_heads"]
    assert demo.vocab_size == cfg["vocab_size"]
    assert demo.config == cfg
    cmake = (DEMO.parent.parent / "CMakeLists.txt").read_text()
    assert f"project(nnterp VERSION {nc.__version__} " in cmake
    assert ".so" in nc.library_path


def test_tokenizer_matches_cli(demo):
    for text in PROMPTS + ["naïve café ☕ 東京"]:
        ids = demo.tokenizer.encode(text)
        assert cli("tokenize", "-m", DEMO, "--ids", text).split() == [str(i) for i in ids]
        assert demo.tokenizer(text)["input_ids"] == ids
        assert demo.tokenizer.decode(ids, skip_special_tokens=True).strip() == text
    assert demo.tokenizer.convert_ids_to_tokens(demo.tokenizer.encode(" France")) == ["ĠFrance"]
    assert demo.tokenizer([PROMPTS[0], PROMPTS[1]])["input_ids"][1] == \
        demo.tokenizer.encode(PROMPTS[1])


# ---- trace ------------------------------------------------------------------------------------

ALL_POINTS = "token_embeddings,layers_input,attentions_input,attention_probabilities," \
             "attentions_output,mlps_input,mlps_output,layers_output,ln_final,logits," \
             "next_token_probs"


def _trace_both(tmp_path, model_path, prompts_ids, points=ALL_POINTS):
    out = tmp_path / "t.h5"
    args = ["trace", "-m", model_path, "--save", points, "-o", out]
    for ids in prompts_ids:
        args += ["--ids", " ".join(map(str, ids))]
    cli(*args)
    model = nc.StandardizedTransformer(model_path)
    names = [p for p in points.split(",")]
    return model, nc.open_store(out), model.trace(prompts_ids, save=names)


@pytest.mark.parametrize("arch", TINY)
def test_trace_equals_cli_bitwise(tmp_path, arch):
    path = tiny(arch)
    prompts = [[1, 5, 9, 2, 7], [3, 4], [8, 6, 5, 4, 3, 2, 1, 0, 11]]
    model, store, r = _trace_both(tmp_path, path, prompts)
    assert np.array_equal(store.offsets, r.offsets)
    compared = 0
    for ds in store.datasets:
        if not ds.startswith("activations/"):
            continue
        parts = ds.split("/")[1:]
        if parts[0] == "attention_probabilities":
            got = r[f"attention_probabilities.{parts[1]}"][int(parts[2])]
        elif len(parts) == 2:
            got = r[f"{parts[0]}.{parts[1]}"]
        else:
            got = r[parts[0]]
        assert np.array_equal(store[ds], got), ds
        compared += 1
    assert compared >= 8 * model.num_layers
    # the last-position logits trace returns are the logits rows at each prompt's last token
    last = store["activations/logits"][r.offsets[1:] - 1]
    assert np.array_equal(r.logits, last)


def test_trace_invariants(demo):
    r = demo.trace(PROMPTS, save=["layers_input", "layers_output", "next_token_probs", "logits",
                                  ("mlps_output", [0, -1])])
    L, d, V = demo.num_layers, demo.hidden_size, demo.vocab_size
    n = int(r.offsets[-1])
    for i in range(L - 1):
        assert np.array_equal(r[f"layers_output.{i}"], r[f"layers_input.{i + 1}"])
    assert r["layers_output.0"].shape == (n, d)
    assert r["logits"].shape == (n, V) and r["next_token_probs"].shape == (len(PROMPTS), V)
    assert np.allclose(r["next_token_probs"].sum(-1), 1, atol=1e-5)
    assert np.array_equal(r.next_token_probs, r["next_token_probs"])
    assert f"mlps_output.{L - 1}" in r and "mlps_output.1" not in r
    per = r.per_prompt("layers_output.2")
    assert [len(p) for p in per] == [len(demo.tokenizer.encode(p)) for p in PROMPTS]
    assert per[1].base is not None  # a view of the packed array, not a copy
    # each prompt alone gives the same bits as inside the packed batch
    for i, p in enumerate(PROMPTS):
        alone = demo.trace(p, save=["layers_output.3"])
        assert np.array_equal(alone["layers_output.3"], per_prompt(r, "layers_output.3", i))


def per_prompt(r, name, i):
    return r.per_prompt(name)[i]


def test_hook_views_are_live_and_writable(demo):
    seen = {}

    def look(view, info):
        seen["shape"], seen["offsets"], seen["layer"] = view.shape, info.offsets, info.layer
        assert view.flags.writeable and view.dtype == np.float32
    demo.trace(PROMPTS, hooks={"layers_output.1": look})
    n = len(demo.tokenizer.encode(PROMPTS[0]))
    assert seen["shape"][1] == demo.hidden_size and seen["offsets"][1] == n
    assert seen["layer"] == 1

    def zero(view):
        view[:] = 0
    r = demo.trace(PROMPTS, hooks={"layers_output.1": zero}, save=["layers_output.1",
                                                                   "layers_input.2"])
    assert not r["layers_output.1"].any() and not r["layers_input.2"].any()
    r2 = demo.trace(PROMPTS, hooks={"layers_output.1": lambda v: np.zeros_like(v)})
    r3 = demo.trace(PROMPTS, hooks={"layers_output.1": zero})
    assert np.array_equal(r2.logits, r3.logits)


def test_hook_stop(demo):
    calls = []
    r = demo.trace(PROMPTS, save=["layers_output"],
                   hooks={"layers_output.1": lambda v: nc.STOP,
                          "layers_output.2": lambda v: calls.append(1)})
    assert r.stopped and r.logits is None and not calls
    assert sorted(r.keys()) == ["layers_output.0", "layers_output.1"]


def test_python_hook_edit_equals_c_steering(demo):
    rng = np.random.default_rng(0)
    v = rng.standard_normal(demo.hidden_size).astype(np.float32)
    factor = np.float32(3.5)
    steered = demo.trace(PROMPTS, interventions=[nc.steer(demo, [1, 2], v, float(factor))])

    def add(view):
        view += factor * v
    edited = demo.trace(PROMPTS, hooks={"layers_output.1": add, "layers_output.2": add})
    plain = demo.trace(PROMPTS)
    assert np.array_equal(steered.logits, edited.logits)
    assert not np.array_equal(plain.logits, edited.logits)
    # and the same through next_token_probs (the toolkit's own pass)
    p = nc.next_token_probs(demo, PROMPTS, [nc.steer(demo, [1, 2], v, float(factor))])
    assert np.array_equal(p, edited.next_token_probs)


# ---- operations against the job runner ------------------------------------------------------

@pytest.fixture(scope="module")
def job_store(tmp_path_factory):
    d = tmp_path_factory.mktemp("job")
    rows = [{"text": t, "targets": {"answer": a, "other": o}} for t, a, o in [
        ("The capital of France is", "Paris", ["Berlin", "Rome"]),
        ("The capital of Germany is", "Berlin", ["Paris", "Rome"]),
        ("Bonjour, je m'appelle", "Marie", ["John"])]]
    (d / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    v = np.random.default_rng(1).standard_normal(160).astype(np.float32)
    np.save(d / "v.npy", v)
    job = {"model": str(DEMO), "dataset": {"path": str(d / "p.jsonl")},
           "operations": [
               {"op": "collect", "hooks": ["layers_output", "mlps_output"], "layers": "all"},
               {"op": "logit_lens", "top_k": 5, "layers": "all", "targets": True},
               {"op": "target_probs"},
               {"op": "patchscope_lens", "layers": "all", "top_k": 5},
               {"op": "steer", "vector": str(d / "v.npy"), "layers": [1, 2], "factor": 4.0,
                "generate": 6, "top_k": 5},
               {"op": "generate", "max_new_tokens": 7}],
           "output": str(d / "s.h5")}
    (d / "job.json").write_text(json.dumps(job))
    subprocess.run([CLI, "run", str(d / "job.json")], check=True, capture_output=True,
                   env=cli_env())
    return nc.open_store(d / "s.h5"), [r["text"] for r in rows], rows, v


def _topk(p, k):
    idx = np.argsort(-p, axis=-1, kind="stable")[..., :k]
    return idx, np.take_along_axis(p, idx, -1)


def test_store_reads_like_h5py(job_store):
    h5py = pytest.importorskip("h5py")
    store, *_ = job_store
    with h5py.File(store.path) as f:
        for ds in store.datasets:
            a = f[ds][()]
            if a.dtype.kind == "V":  # bfloat16 as stored: compare bits
                continue
            assert np.array_equal(np.asarray(a, dtype=store[ds].dtype), store[ds]), ds
        assert store.attrs["format"] == f.attrs["format"]
    assert store.attrs["model_config"]["model_type"] == "llama"


def test_collect_equals_trace(demo, job_store):
    store, texts, *_ = job_store
    r = demo.trace(texts, save=["layers_output", "mlps_output"])
    assert np.array_equal(store.tokens, np.concatenate([demo.tokenizer.encode(t) for t in texts]))
    for l in range(demo.num_layers):
        assert np.array_equal(store[f"activations/layers_output/{l}"], r[f"layers_output.{l}"])
        assert np.array_equal(store[f"activations/mlps_output/{l}"], r[f"mlps_output.{l}"])
    per = store.per_prompt("activations/layers_output/1")
    assert np.array_equal(per[2], r.per_prompt("layers_output.1")[2])


def test_logit_lens_equals_job(demo, job_store):
    store, texts, rows, _ = job_store
    p = nc.logit_lens(demo, texts)
    assert p.shape == (3, demo.num_layers, demo.vocab_size)
    ids, probs = _topk(p, 5)
    assert np.array_equal(store["logit_lens/top_ids"], ids)
    assert np.array_equal(store["logit_lens/top_probs"], probs)
    # invariants: the lens at the last layer is the model's next-token distribution
    assert np.array_equal(p[:, -1], demo.trace(texts).next_token_probs)
    assert np.allclose(p.sum(-1), 1, atol=1e-5)
    p2, inv = nc.logit_lens(demo, texts, return_inv_logits=True)
    assert np.array_equal(p2, p) and inv.shape == p.shape and not np.array_equal(inv, p)
    lay = nc.logit_lens(demo, texts, layers=[-1])
    assert np.array_equal(lay[:, 0], p[:, -1])


def test_run_prompts_equals_job(demo, job_store):
    store, texts, rows, _ = job_store
    prompts = [nc.Prompt.from_strings(r["text"], r["targets"], demo.tokenizer) for r in rows]
    got = nc.run_prompts(demo, prompts, batch_size=2)
    names = json.loads(store.attrs["target_names"]) if "target_names" in store.attrs else \
        ["answer", "other"]
    want = store["target_probs/probs"]
    for t, name in enumerate(names):
        assert np.array_equal(got[name], want[:, t]), name
    assert nc.get_first_tokens(["Paris"], demo.tokenizer) == prompts[0].target_tokens["answer"]


def test_patchscope_equals_job(demo, job_store):
    store, texts, *_ = job_store
    p = nc.patchscope_lens(demo, texts)
    assert p.shape == (3, demo.num_layers, demo.vocab_size)
    ids, probs = _topk(p, 5)
    assert np.array_equal(store["patchscope_lens/top_ids"], ids)
    assert np.array_equal(store["patchscope_lens/top_probs"], probs)
    target = nc.repeat_prompt()
    assert target == nc.TargetPrompt("king king\n1135 1135\nhello hello\n?", -1)
    assert np.array_equal(store["patchscope_lens/target_ids"],
                          demo.tokenizer.encode(target.prompt))
    # given latents: the source's own last-token activations give the same distributions
    lat = nc.get_token_activations(demo, texts)
    assert np.array_equal(nc.patchscope_lens(demo, latents=lat), p)


def test_identity_patchscope(demo):
    # patching a prompt's own last-token activation into itself changes nothing
    t = nc.TargetPrompt(PROMPTS[0], -1)
    p = nc.patchscope_lens(demo, [PROMPTS[0]], t)
    base = demo.trace(PROMPTS[0]).next_token_probs[0]
    for l in range(demo.num_layers):
        assert np.array_equal(p[0, l], base)


def test_steer_and_generate_equal_job(demo, job_store):
    store, texts, _, v = job_store
    st = nc.steer(demo, [1, 2], v, 4.0)
    probs = nc.next_token_probs(demo, texts, [st])
    ids, top = _topk(probs, 5)
    assert np.array_equal(store["steer/top_ids"], ids)
    assert np.array_equal(store["steer/top_probs"], top)
    for i, t in enumerate(texts):
        _, g = nc.generate(demo, t, 6, interventions=[st], return_ids=True)
        want = store["steer/tokens"][i]
        assert np.array_equal(g, want[want >= 0])
        _, g = nc.generate(demo, t, 7, return_ids=True)
        want = store["generate/tokens"][i]
        assert np.array_equal(g, want[want >= 0])


def test_generate_equals_cli(demo):
    text = nc.generate(demo, PROMPTS[0], 12)
    out = cli("generate", "-m", DEMO, "-p", PROMPTS[0], "-n", 12)
    assert text in out
    # a Python hook applies to every forward call of generation, as steering does
    v = nc.contrast_vector(demo, ["Bonjour, je suis"], ["Hello, I am"], 2)

    def add(view):
        view += np.float32(4.0) * v
    assert nc.generate(demo, PROMPTS[0], 8, hooks={"layers_output.2": add}) == \
        nc.generate(demo, PROMPTS[0], 8, interventions=[nc.steer(demo, 2, v, 4.0)])


def test_steer_contrast_equals_cli(demo, tmp_path):
    a, b = "Bonjour, je suis", "Hello, I am"
    out = cli("steer", "-m", DEMO, "-p", PROMPTS[0], "--contrast", a, b, "--layers", "2",
              "--factor", "4", "-n", 8)
    text = nc.generate(demo, PROMPTS[0], 8,
                       interventions=[nc.steer(demo, 2, factor=4.0, contrast=([a], [b]))])
    assert text.strip() and text.strip() in out


def test_skip_layers(demo):
    skipped = demo.trace(PROMPTS, interventions=[nc.skip_layers(demo, [1])],
                         save=["layers_input.1", "layers_output.1"])
    assert np.array_equal(skipped["layers_input.1"], skipped["layers_output.1"])

    def identity(view, info):  # the same skip written as a Python hook on the block's output
        return grab["x"]
    grab = {}
    demo.trace(PROMPTS, hooks={"layers_input.1": lambda v: grab.__setitem__("x", v.copy())})
    by_hook = demo.trace(PROMPTS, hooks={"layers_output.1": identity})
    assert np.array_equal(skipped.logits, by_hook.logits)


def test_token_activations(demo):
    a = nc.get_token_activations(demo, PROMPTS, layers=[0, 2])
    assert a.shape == (2, 3, demo.hidden_size)
    r = demo.trace(PROMPTS, save=["layers_output.2"])
    assert np.array_equal(a[1, 1], r.per_prompt("layers_output.2")[1][-1])
    b = nc.collect_token_activations_batched(demo, PROMPTS, batch_size=2, layers=[0, 2])
    assert np.array_equal(a, b)
    first = nc.get_token_activations(demo, PROMPTS, layers=[2], idx=0)
    assert np.array_equal(first[0, 2], r.per_prompt("layers_output.2")[2][0])
    with pytest.raises(IndexError):
        nc.get_token_activations(demo, PROMPTS, idx=50)


def test_context_reuse_is_stable(demo):
    # the model's context keeps its state between calls: repeated calls give the same bits
    first = nc.logit_lens(demo, PROMPTS)
    for _ in range(3):
        demo.trace(["x " * 40])  # grows the context's state
        assert np.array_equal(nc.logit_lens(demo, PROMPTS), first)


# ---- pictures ---------------------------------------------------------------------------------

def test_plot_topk_tokens(demo, tmp_path):
    p = nc.logit_lens(demo, PROMPTS[:2])
    fig = nc.plot_topk_tokens(p, demo.tokenizer, k=4, title="lens", file=tmp_path / "l.png")
    assert fig._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in fig._repr_html_() and "Paris" in fig.html
    assert (tmp_path / "l.png").read_bytes() == fig.png
    Image = pytest.importorskip("PIL.Image")
    im = Image.open(tmp_path / "l.png")
    assert im.size == (fig.width, fig.height)
    fig.save(tmp_path / "l.html")
    assert (tmp_path / "l.html").read_text() == fig.html
    one = nc.plot_topk_tokens(p[0], demo.tokenizer, k=3)
    assert one.width < fig.width
    with pytest.raises(ValueError):
        nc.plot_topk_tokens(p, demo.tokenizer, k=0)
    with pytest.raises(ValueError):
        fig.save(tmp_path / "l.gif")


# ---- bad input ------------------------------------------------------------------------------

def test_bad_input_raises(demo, tmp_path):
    with pytest.raises(nc.NnterpError, match="no such file"):
        nc.StandardizedTransformer(tmp_path / "missing")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{ not json")
    with pytest.raises(nc.NnterpError, match="config.json"):
        nc.StandardizedTransformer(tmp_path / "broken")
    with pytest.raises(nc.NnterpError, match="layers_outptu"):
        demo.trace("x", hooks={"layers_outptu.1": lambda v: None})
    with pytest.raises(nc.NnterpError, match="out of range"):
        demo.trace("x", save=["layers_output.99"])
    with pytest.raises(IndexError, match="out of range"):
        nc.logit_lens(demo, "x", layers=[7])
    with pytest.raises(IndexError):
        nc.steer(demo, [-9], np.zeros(demo.hidden_size))
    with pytest.raises(ValueError, match="shape"):
        demo.trace("x y", hooks={"layers_output.1": lambda v: np.zeros((1, 3))})
    with pytest.raises(ValueError, match="hidden size"):
        nc.steer(demo, [1], np.zeros(5))
    with pytest.raises(ZeroDivisionError):
        demo.trace("x", hooks={"mlps_output.0": lambda v: 1 / 0})
    with pytest.raises(nc.NnterpError, match="vocabulary"):
        demo.trace([[1, 2, demo.vocab_size + 5]])
    with pytest.raises(ValueError):
        demo.trace([[]])
    with pytest.raises(TypeError):
        demo.trace(3.5)
    with pytest.raises(TypeError):
        demo.trace("x", hooks={"layers_output.1": "not callable"})
    with pytest.raises(nc.NnterpError, match="running a pass"):
        demo.trace("x", hooks={"layers_output.1": lambda v: demo.trace("y")})
    with pytest.raises(nc.NnterpError, match="context"):
        demo.trace(["a " * 600])  # longer than the demo's context
    with pytest.raises(nc.NnterpError):
        nc.open_store(tmp_path / "nothing.h5")
    # the model still works after every failure
    assert np.array_equal(nc.logit_lens(demo, PROMPTS), nc.logit_lens(demo, PROMPTS))


def test_llama2c_and_stories(tmp_path):
    p = SHARED / "models" / "stories260K" / "stories260K.bin"
    if not p.exists():
        pytest.skip(f"{p} is absent")
    m = nc.StandardizedTransformer(p)
    assert m.tokenizer is not None and m.config["model_type"] in ("llama", "llama2c")
    text = nc.generate(m, "Once upon a time", 20)
    out = cli("generate", "-m", p, "-p", "Once upon a time", "-n", 20)
    assert text.strip() in out


def test_patchscope_generate_equals_cli(demo):
    out = cli("patchscope", "-m", DEMO, "--source", "Paris", "--generate", 5, "--layers", "0,3")
    got = nc.patchscope_generate(demo, ["Paris"], nc.repeat_prompt(), max_length=5, layers=[0, 3])
    want = {int(line.split()[1]): line.split(" -> ", 1)[1] for line in out.splitlines()
            if line.strip().startswith("layer")}
    assert sorted(got) == [0, 3]
    for layer, texts in got.items():
        # the command quotes the text with a newline written as \n
        assert want[layer] == "'" + texts[0].replace("\n", "\\n") + "'"


def test_closed_model_raises():
    m = nc.StandardizedTransformer(DEMO)
    st = nc.steer(m, [1], np.zeros(m.hidden_size))
    m.close()
    m.close()  # twice is fine
    for call in (lambda: m.trace("x"), lambda: nc.logit_lens(m, "x"),
                 lambda: nc.patchscope_lens(m, ["x"]), lambda: nc.generate(m, "x", 2),
                 lambda: nc.next_token_probs(m, "x", [st]), lambda: nc.steer(m, [1], st.vector)):
        with pytest.raises(nc.NnterpError, match="closed"):
            call()
    assert m.tokenizer.encode("x")  # the tokenizer is its own object and keeps working
