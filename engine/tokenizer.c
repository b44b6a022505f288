/* Hugging Face tokenizer.json and llama2.c tokenizer.bin (see tokenizer.h). The Hugging Face
 * pipeline is reproduced from the tokenizers library's semantics: AddedVocabulary splitting,
 * normalizers, pre-tokenizers, the BPE model (with byte fallback, unk fusing, ignore_merges),
 * post-processors and decoders. This file holds the public API: the vocabulary, loading (which
 * picks the kind by path), encode/decode dispatched on the kind's row (tok_kind), and streaming;
 * the modules are the other engine/tokenizer_*.c files (map in tokenizer_internal.h). */
#include "tokenizer_internal.h"

static void free_steps(step *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        nn_free(s[i].a);
        nn_free(s[i].b);
        if (s[i].re)
            pcre2_code_free(s[i].re);
    }
    nn_free(s);
}

void nn_tokenizer_free(nn_tokenizer *t)
{
    if (!t)
        return;
    nn_free(t->arena);
    nn_free(t->piece_off);
    nn_free(t->piece_len);
    nn_free(t->special);
    nn_free(t->scores);
    nn_strmap_free(&t->vocab);
    nn_pairmap_free(&t->merges);
    for (size_t i = 0; i < t->n_added; i++)
        nn_free(t->added[i].content);
    nn_free(t->added);
    nn_free(t->added_order);
    free_steps(t->norm, t->n_norm);
    free_steps(t->pre, t->n_pre);
    free_steps(t->dec, t->n_dec);
    nn_strmap_free(&t->cache);
    nn_free(t->cache_entries);
    nn_free(t->cache_ids);
    nn_free(t->sym_id);
    nn_free(t->sym_prev);
    nn_free(t->sym_next);
    nn_free(t->heap);
    nn_free(t);
}

size_t nn_tokenizer_vocab_size(const nn_tokenizer *t)
{
    return t->n_vocab;
}

const char *nn_tokenizer_piece(const nn_tokenizer *t, int32_t id, size_t *len)
{
    if (id < 0 || (size_t)id >= t->n_vocab || t->piece_off[id] == SIZE_MAX)
        return NULL;
    if (len)
        *len = t->piece_len[id];
    return t->arena + t->piece_off[id];
}

int32_t nn_tokenizer_bos(const nn_tokenizer *t)
{
    return t->bos_id;
}
int32_t nn_tokenizer_eos(const nn_tokenizer *t)
{
    return t->eos_id;
}

bool nn_tokenizer_is_special(const nn_tokenizer *t, int32_t id)
{
    return id >= 0 && (size_t)id < t->n_vocab && t->special[id];
}

int32_t nn_tokenizer_find(const nn_tokenizer *t, const char *piece, size_t len)
{
    int32_t id;
    return nn_strmap_get(&t->vocab, piece, len, &id) ? id : -1;
}

int nn_ids_push(nn_ids *v, int32_t id, nn_err *err)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        int32_t *p = nn_realloc(v->ids, cap * sizeof *p, err);
        if (!p)
            return NN_ERR;
        v->ids = p;
        v->cap = cap;
    }
    v->ids[v->n++] = id;
    return NN_OK;
}

void nn_ids_free(nn_ids *v)
{
    nn_free(v->ids);
    memset(v, 0, sizeof *v);
}

int tok_set_piece(nn_tokenizer *t, buf *arena, int32_t id, const char *s, size_t len, nn_err *err)
{
    t->piece_off[id] = arena->len;
    t->piece_len[id] = (uint32_t)len;
    if (buf_add(arena, s, len, err) || buf_add(arena, "", 1, err))
        return NN_ERR;
    return NN_OK;
}

/* GPT-2's reversible byte <-> printable code point map. */
static void init_byte_level(nn_tokenizer *t)
{
    int n = 0;
    for (int i = 0; i < 324; i++)
        t->cp_to_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        t->byte_to_cp[b] = printable ? (uint32_t)b : (uint32_t)(256 + n++);
        t->cp_to_byte[t->byte_to_cp[b]] = (int16_t)b;
    }
}

static bool has_suffix(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

int nn_tokenizer_load(const char *path, nn_tokenizer **out, nn_err *err)
{
    *out = NULL;
    nn_tokenizer *t = nn_calloc(1, sizeof *t, err);
    if (!t)
        return NN_ERR;
    t->kind = &tok_kind_hf;
    t->bos_id = t->eos_id = t->unk_id = -1;
    init_byte_level(t);
    int rc;
    char *json = NULL, *config = NULL;
    if (nn_path_is_dir(path)) {
        json = nn_path_join(path, "tokenizer.json", err);
        config = json ? nn_path_join(path, "tokenizer_config.json", err) : NULL;
        if (!config)
            rc = NN_ERR;
        else if (!nn_path_is_file(json))
            rc = nn_fail(err, "%s: no tokenizer.json", path);
        else
            rc = tok_load_hf(t, json, config, err);
    } else if (has_suffix(path, ".json")) {
        /* tokenizer_config.json beside it, when present */
        const char *slash = strrchr(path, '/');
        size_t dir = slash ? (size_t)(slash - path) : 0;
        config = nn_malloc(dir + 32, err);
        if (!config) {
            rc = NN_ERR;
        } else {
            memcpy(config, path, dir);
            strcpy(config + dir, dir ? "/tokenizer_config.json" : "tokenizer_config.json");
            rc = tok_load_hf(t, path, config, err);
        }
    } else {
        t->kind = &tok_kind_llama2c;
        rc = tok_load_llama2c(t, path, err);
    }
    nn_free(json);
    nn_free(config);
    if (rc) {
        nn_tokenizer_free(t);
        return NN_ERR;
    }
    *out = t;
    return NN_OK;
}

int nn_tokenizer_load_for_model(const char *model_path, const char *tokenizer_path, int vocab,
                                bool required, nn_tokenizer **out, nn_err *err)
{
    *out = NULL;
    if (tokenizer_path)
        return nn_tokenizer_load(tokenizer_path, out, err);
    char candidate[4096];
    if (strlen(model_path) + 32 > sizeof candidate) /* room for the longest name tried below */
        return nn_fail(err, "%.64s...: the model path is longer than %zu bytes", model_path,
                       sizeof candidate - 32);
    if (nn_path_is_dir(model_path)) {
        snprintf(candidate, sizeof candidate, "%s/tokenizer.json", model_path);
        if (nn_path_is_file(candidate))
            return nn_tokenizer_load(model_path, out, err);
        return required ? nn_fail(err, "%s: no tokenizer.json (name a tokenizer file)", model_path)
                        : NN_OK;
    }
    /* llama2.c: tokenizer.bin beside the checkpoint, or tok<vocab>.bin as llama2.c's training
     * scripts name a custom vocabulary's */
    const char *slash = strrchr(model_path, '/');
    int dir = slash ? (int)(slash - model_path) + 1 : 0;
    snprintf(candidate, sizeof candidate, "%.*stokenizer.bin", dir, model_path);
    if (!nn_path_is_file(candidate))
        snprintf(candidate, sizeof candidate, "%.*stok%d.bin", dir, model_path, vocab);
    if (nn_path_is_file(candidate))
        return nn_tokenizer_load(candidate, out, err);
    return required ? nn_fail(err,
                              "%s: no tokenizer.bin or tok%d.bin beside this llama2.c checkpoint "
                              "(name a tokenizer file)",
                              model_path, vocab)
                    : NN_OK;
}

/* ---- Encoding and decoding: validate, then the kind's row ---------------------------------------
 */

int nn_tokenizer_encode(nn_tokenizer *t, const char *text, size_t len, bool add_special,
                        nn_ids *out, nn_err *err)
{
    size_t bad = nn_utf8_validate(text, len);
    if (bad != len)
        return nn_fail(err, "text is not valid UTF-8 (byte %zu: 0x%02X)", bad,
                       (unsigned char)text[bad]);
    return t->kind->encode(t, text, len, add_special, out, err);
}

int nn_tokenizer_decode(const nn_tokenizer *t, const int32_t *ids, size_t n, bool skip_special,
                        char **out, nn_err *err)
{
    *out = NULL;
    for (size_t i = 0; i < n; i++)
        if (!nn_tokenizer_piece(t, ids[i], NULL))
            return nn_fail(err, "token id %d is outside the vocabulary (%zu tokens)", ids[i],
                           t->n_vocab);
    buf result = {0};
    if (t->kind->decode(t, ids, n, skip_special, &result, err)) {
        buf_free(&result);
        return NN_ERR;
    }
    *out = result.p;
    return NN_OK;
}

/* ---- Streaming --------------------------------------------------------------------------------
 */

void nn_detokenizer_init(nn_detokenizer *d, const nn_tokenizer *t, bool skip_special)
{
    memset(d, 0, sizeof *d);
    d->tok = t;
    d->skip_special = skip_special;
}

void nn_detokenizer_free(nn_detokenizer *d)
{
    nn_ids_free(&d->ids);
}

int nn_detokenizer_prime(nn_detokenizer *d, const int32_t *prompt, size_t n, nn_err *err)
{
    for (size_t i = 0; i < n; i++)
        if (nn_ids_push(&d->ids, prompt[i], err))
            return NN_ERR;
    d->read_offset = d->ids.n;
    /* a few tokens of context, so a window never starts inside a byte-fallback character */
    d->prefix_offset = d->ids.n > 4 ? d->ids.n - 4 : 0;
    return NN_OK;
}

/* Text generation inference's method: decode a window that keeps one settled token before the new
 * ones (so context-dependent decoders, like a stripped leading space, see the same left context),
 * and emit the difference once it does not end in an incomplete character. */
int nn_detokenizer_push(nn_detokenizer *d, int32_t id, char **out, nn_err *err)
{
    *out = NULL;
    if (nn_ids_push(&d->ids, id, err))
        return NN_ERR;
    char *before = NULL, *after = NULL;
    if (nn_tokenizer_decode(d->tok, d->ids.ids + d->prefix_offset,
                            d->read_offset - d->prefix_offset, d->skip_special, &before, err) ||
        nn_tokenizer_decode(d->tok, d->ids.ids + d->prefix_offset, d->ids.n - d->prefix_offset,
                            d->skip_special, &after, err)) {
        nn_free(before);
        return NN_ERR;
    }
    size_t lb = strlen(before), la = strlen(after);
    bool incomplete = la >= 3 && memcmp(after + la - 3, "\xEF\xBF\xBD", 3) == 0;
    if (la > lb && !incomplete && memcmp(after, before, lb) == 0) {
        memmove(after, after + lb, la - lb + 1);
        *out = after;
        d->prefix_offset = d->read_offset;
        d->read_offset = d->ids.n;
    } else {
        after[0] = '\0';
        *out = after;
    }
    nn_free(before);
    return NN_OK;
}
