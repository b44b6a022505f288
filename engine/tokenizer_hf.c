/* Loading Hugging Face tokenizer.json (and tokenizer_config.json beside it) into the tokenizer:
 * the vocabulary, merges, added tokens, normalizers, pre-tokenizers, post-processor, decoders. */
#include "tokenizer_internal.h"

/* ---- Loading tokenizer.json -------------------------------------------------------------------
 */

/* Compiles a pattern with its \p{..} classes classifying characters as Unicode 16.0 does (the
 * tokenizers library's Oniguruma), whatever the Unicode version of the linked PCRE2 (unicode.h). */
static int compile_regex(const char *pattern, size_t len, const char *path, const char *where,
                         pcre2_code **out, nn_err *err)
{
    int code;
    PCRE2_SIZE at;
    char *fixed = NULL;
    size_t fixed_len = 0;
    *out = NULL;
    if (nn_unicode_fix_regex(pattern, len, &fixed, &fixed_len, err))
        return nn_err_prefix(err, "%s: %s: regex /%s/", path, where, pattern);
    *out = pcre2_compile((PCRE2_SPTR)fixed, fixed_len, PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK,
                         &code, &at, NULL);
    nn_free(fixed);
    if (!*out) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        return nn_fail(err, "%s: %s: regex /%s/ does not compile: %s", path, where, pattern,
                       (char *)msg);
    }
    pcre2_jit_compile(*out, PCRE2_JIT_COMPLETE); /* optional speed-up; falls back when absent */
    return NN_OK;
}

/* A {"String": s} or {"Regex": r} pattern: String sets a, Regex compiles re. */
static int parse_pattern(const cJSON *obj, const char *path, const char *where, step *s,
                         nn_err *err)
{
    const cJSON *pat = nn_json_get(obj, "pattern");
    const cJSON *str = nn_json_get(pat, "String"), *re = nn_json_get(pat, "Regex");
    if (cJSON_IsString(str)) {
        s->a_len = strlen(str->valuestring);
        return (s->a = nn_strdup(str->valuestring, err)) ? NN_OK : NN_ERR;
    }
    if (cJSON_IsString(re))
        return compile_regex(re->valuestring, strlen(re->valuestring), path, where, &s->re, err);
    return nn_fail(err, "%s: %s: field 'pattern' must be {\"String\": ...} or {\"Regex\": ...}",
                   path, where);
}

static int dup_field(const cJSON *obj, const char *key, const char *path, const char *where,
                     char **out, size_t *len, nn_err *err)
{
    const cJSON *v = nn_json_get(obj, key);
    if (!cJSON_IsString(v))
        return nn_fail(err, "%s: %s: field '%s' missing or not a string", path, where, key);
    *len = strlen(v->valuestring);
    return (*out = nn_strdup(v->valuestring, err)) ? NN_OK : NN_ERR;
}

static const char *type_of(const cJSON *obj)
{
    const cJSON *t = nn_json_get(obj, "type");
    return cJSON_IsString(t) ? t->valuestring : NULL;
}

/* Flattens a component or a Sequence of components into steps; parse_one fills each. */
typedef int (*parse_fn)(const cJSON *obj, const char *type, const char *path, step *s, nn_err *err);

static int parse_chain(const cJSON *obj, const char *list_key, const char *what, const char *path,
                       parse_fn parse_one, step **out, size_t *n, nn_err *err)
{
    if (!obj || cJSON_IsNull(obj))
        return NN_OK;
    const char *type = type_of(obj);
    if (!type)
        return nn_fail(err, "%s: %s: field 'type' missing", path, what);
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = nn_json_get(obj, list_key), *item;
        if (!cJSON_IsArray(list))
            return nn_fail(err, "%s: %s Sequence: field '%s' missing or not a list", path, what,
                           list_key);
        cJSON_ArrayForEach (item, list)
            if (parse_chain(item, list_key, what, path, parse_one, out, n, err))
                return NN_ERR;
        return NN_OK;
    }
    step *grown = nn_realloc(*out, (*n + 1) * sizeof *grown, err);
    if (!grown)
        return NN_ERR;
    *out = grown;
    memset(&grown[*n], 0, sizeof *grown);
    (*n)++;
    return parse_one(obj, type, path, &grown[*n - 1], err);
}

static int parse_normalizer(const cJSON *o, const char *type, const char *path, step *s,
                            nn_err *err)
{
    if (!strcmp(type, "Prepend")) {
        s->kind = NORM_PREPEND;
        return dup_field(o, "prepend", path, "normalizer Prepend", &s->a, &s->a_len, err);
    }
    if (!strcmp(type, "Replace")) {
        s->kind = NORM_REPLACE;
        if (parse_pattern(o, path, "normalizer Replace", s, err))
            return NN_ERR;
        return dup_field(o, "content", path, "normalizer Replace", &s->b, &s->b_len, err);
    }
    static const struct {
        const char *name;
        int kind;
    } forms[] = {{"NFC", NORM_NFC}, {"NFD", NORM_NFD}, {"NFKC", NORM_NFKC}, {"NFKD", NORM_NFKD}};
    for (size_t i = 0; i < 4; i++)
        if (!strcmp(type, forms[i].name)) {
            s->kind = forms[i].kind;
            return NN_OK;
        }
    return nn_fail(
        err,
        "%s: normalizer type '%s' is not supported (Sequence, Prepend, Replace, NFC, NFD, "
        "NFKC, NFKD)",
        path, type);
}

static const char *GPT2_PATTERN =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static int parse_behavior(const cJSON *o, const char *path, int *out, nn_err *err)
{
    const char *b = NULL;
    if (nn_json_string(o, "behavior", true, path, &b, err))
        return NN_ERR;
    static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext",
                                  "Contiguous"};
    for (int i = 0; i < 5; i++)
        if (!strcmp(b, names[i])) {
            *out = i;
            return NN_OK;
        }
    return nn_fail(err,
                   "%s: pre_tokenizer Split: behavior '%s' is not one of Removed, Isolated, "
                   "MergedWithPrevious, MergedWithNext, Contiguous",
                   path, b);
}

static int parse_prepend_scheme(const cJSON *o, const char *path, int *out, nn_err *err)
{
    const char *scheme = NULL;
    bool add_prefix_space;
    if (nn_json_string(o, "prepend_scheme", false, path, &scheme, err) ||
        nn_json_bool(o, "add_prefix_space", false, true, path, &add_prefix_space, err))
        return NN_ERR;
    if (!scheme)
        *out = add_prefix_space ? PREPEND_ALWAYS : PREPEND_NEVER;
    else if (!strcmp(scheme, "always"))
        *out = PREPEND_ALWAYS;
    else if (!strcmp(scheme, "first"))
        *out = PREPEND_FIRST;
    else if (!strcmp(scheme, "never"))
        *out = PREPEND_NEVER;
    else
        return nn_fail(err, "%s: Metaspace: prepend_scheme '%s' is not always, first or never",
                       path, scheme);
    return NN_OK;
}

static int parse_pre_tokenizer(const cJSON *o, const char *type, const char *path, step *s,
                               nn_err *err)
{
    if (!strcmp(type, "ByteLevel")) {
        s->kind = PRE_BYTELEVEL;
        if (nn_json_bool(o, "add_prefix_space", false, true, path, &s->flag, err) ||
            nn_json_bool(o, "use_regex", false, true, path, &s->use_regex, err))
            return NN_ERR;
        if (s->use_regex)
            return compile_regex(GPT2_PATTERN, strlen(GPT2_PATTERN), path, "ByteLevel", &s->re,
                                 err);
        return NN_OK;
    }
    if (!strcmp(type, "Split")) {
        s->kind = PRE_SPLIT;
        if (parse_pattern(o, path, "pre_tokenizer Split", s, err) ||
            parse_behavior(o, path, &s->behavior, err) ||
            nn_json_bool(o, "invert", false, false, path, &s->invert, err))
            return NN_ERR;
        return NN_OK;
    }
    if (!strcmp(type, "Digits")) {
        s->kind = PRE_DIGITS;
        return nn_json_bool(o, "individual_digits", false, false, path, &s->flag, err);
    }
    if (!strcmp(type, "Metaspace")) {
        s->kind = PRE_METASPACE;
        if (dup_field(o, "replacement", path, "pre_tokenizer Metaspace", &s->a, &s->a_len, err) ||
            parse_prepend_scheme(o, path, &s->prepend_scheme, err) ||
            nn_json_bool(o, "split", false, true, path, &s->flag, err))
            return NN_ERR;
        return NN_OK;
    }
    if (!strcmp(type, "Whitespace")) {
        s->kind = PRE_WHITESPACE;
        const char *p = "\\w+|[^\\w\\s]+";
        return compile_regex(p, strlen(p), path, "Whitespace", &s->re, err);
    }
    if (!strcmp(type, "WhitespaceSplit")) {
        s->kind = PRE_WHITESPACE_SPLIT;
        const char *p = "\\S+";
        return compile_regex(p, strlen(p), path, "WhitespaceSplit", &s->re, err);
    }
    return nn_fail(err,
                   "%s: pre_tokenizer type '%s' is not supported (Sequence, ByteLevel, Split, "
                   "Digits, Metaspace, Whitespace, WhitespaceSplit)",
                   path, type);
}

static int parse_decoder(const cJSON *o, const char *type, const char *path, step *s, nn_err *err)
{
    if (!strcmp(type, "Replace")) {
        s->kind = DEC_REPLACE;
        if (parse_pattern(o, path, "decoder Replace", s, err))
            return NN_ERR;
        if (s->re)
            return nn_fail(err, "%s: decoder Replace with a Regex pattern is not supported", path);
        return dup_field(o, "content", path, "decoder Replace", &s->b, &s->b_len, err);
    }
    if (!strcmp(type, "ByteFallback")) {
        s->kind = DEC_BYTEFALLBACK;
        return NN_OK;
    }
    if (!strcmp(type, "Fuse")) {
        s->kind = DEC_FUSE;
        return NN_OK;
    }
    if (!strcmp(type, "Strip")) {
        long start, stop;
        s->kind = DEC_STRIP;
        if (dup_field(o, "content", path, "decoder Strip", &s->a, &s->a_len, err) ||
            nn_json_int(o, "start", false, 0, 0, 1 << 20, path, &start, err) ||
            nn_json_int(o, "stop", false, 0, 0, 1 << 20, path, &stop, err))
            return NN_ERR;
        s->start = (int)start;
        s->stop = (int)stop;
        return NN_OK;
    }
    if (!strcmp(type, "ByteLevel")) {
        s->kind = DEC_BYTELEVEL;
        return NN_OK;
    }
    if (!strcmp(type, "Metaspace")) {
        s->kind = DEC_METASPACE;
        if (dup_field(o, "replacement", path, "decoder Metaspace", &s->a, &s->a_len, err))
            return NN_ERR;
        return parse_prepend_scheme(o, path, &s->prepend_scheme, err);
    }
    return nn_fail(err,
                   "%s: decoder type '%s' is not supported (Sequence, Replace, ByteFallback, Fuse, "
                   "Strip, ByteLevel, Metaspace)",
                   path, type);
}

/* Template / Bert / Roberta processors, possibly in a Sequence, into prefix/suffix ids. */
static int parse_post_processor(nn_tokenizer *t, const cJSON *pp, const char *path, nn_err *err)
{
    if (!pp || cJSON_IsNull(pp))
        return NN_OK;
    const char *type = type_of(pp);
    if (!type)
        return nn_fail(err, "%s: post_processor: field 'type' missing", path);
    if (!strcmp(type, "Sequence")) {
        const cJSON *item;
        cJSON_ArrayForEach (item, nn_json_get(pp, "processors"))
            if (parse_post_processor(t, item, path, err))
                return NN_ERR;
        return NN_OK;
    }
    if (!strcmp(type, "ByteLevel"))
        return NN_OK; /* adjusts offsets only */
    if (!strcmp(type, "TemplateProcessing")) {
        const cJSON *single = nn_json_get(pp, "single"), *item;
        const cJSON *specials = nn_json_get(pp, "special_tokens");
        if (!cJSON_IsArray(single))
            return nn_fail(err, "%s: post_processor TemplateProcessing: field 'single' missing",
                           path);
        bool after = false;
        cJSON_ArrayForEach (item, single) {
            const cJSON *sp = nn_json_get(item, "SpecialToken");
            if (nn_json_get(item, "Sequence")) {
                after = true;
                continue;
            }
            const cJSON *name = nn_json_get(sp, "id");
            if (!cJSON_IsString(name))
                return nn_fail(
                    err, "%s: post_processor: template item is neither Sequence nor SpecialToken",
                    path);
            const cJSON *ids = nn_json_get(nn_json_get(specials, name->valuestring), "ids"), *id;
            if (!cJSON_IsArray(ids))
                return nn_fail(err, "%s: post_processor: special token '%s' has no ids", path,
                               name->valuestring);
            cJSON_ArrayForEach (id, ids) {
                int *n = after ? &t->n_suffix : &t->n_prefix;
                int32_t *dst = after ? t->suffix : t->prefix;
                if (!cJSON_IsNumber(id) || id->valuedouble < 0 ||
                    id->valuedouble >= (double)t->n_vocab)
                    return nn_fail(
                        err,
                        "%s: post_processor: special token '%s' has an id outside the vocabulary",
                        path, name->valuestring);
                if (*n == 8)
                    return nn_fail(err, "%s: post_processor: more than 8 template tokens", path);
                dst[(*n)++] = (int32_t)id->valuedouble;
            }
        }
        return NN_OK;
    }
    if (!strcmp(type, "BertProcessing") || !strcmp(type, "RobertaProcessing")) {
        const cJSON *cls = nn_json_get(pp, "cls"), *sep = nn_json_get(pp, "sep");
        if (!cJSON_IsArray(cls) || !cJSON_IsArray(sep) || cJSON_GetArraySize(cls) != 2 ||
            cJSON_GetArraySize(sep) != 2)
            return nn_fail(err, "%s: post_processor %s: fields 'cls' and 'sep' must be [token, id]",
                           path, type);
        const cJSON *c = cJSON_GetArrayItem(cls, 1), *s = cJSON_GetArrayItem(sep, 1);
        if (!cJSON_IsNumber(c) || !cJSON_IsNumber(s) || !(c->valuedouble >= 0) ||
            !(s->valuedouble >= 0) || c->valuedouble >= (double)t->n_vocab ||
            s->valuedouble >= (double)t->n_vocab)
            return nn_fail(err,
                           "%s: post_processor %s: the cls or sep id is outside the vocabulary",
                           path, type);
        if (t->n_prefix == 8 || t->n_suffix == 8)
            return nn_fail(err, "%s: post_processor: more than 8 template tokens", path);
        t->prefix[t->n_prefix++] = (int32_t)c->valuedouble;
        t->suffix[t->n_suffix++] = (int32_t)s->valuedouble;
        return NN_OK;
    }
    return nn_fail(err,
                   "%s: post_processor type '%s' is not supported (TemplateProcessing, ByteLevel, "
                   "BertProcessing, RobertaProcessing, Sequence)",
                   path, type);
}

/* Finds the id of a token named in tokenizer_config.json ("bos_token": "<s>" or {"content": ..}).
 */
static int config_token(const nn_tokenizer *t, const cJSON *cfg, const char *key)
{
    const cJSON *v = nn_json_get(cfg, key);
    if (cJSON_IsObject(v))
        v = nn_json_get(v, "content");
    if (!cJSON_IsString(v))
        return -1;
    return nn_tokenizer_find(t, v->valuestring, strlen(v->valuestring));
}

static int load_config(nn_tokenizer *t, const char *path, nn_err *err)
{
    if (!path || !nn_path_is_file(path))
        return NN_OK;
    cJSON *cfg = nn_json_parse_file(path, 16u << 20, err);
    if (!cfg)
        return NN_ERR;
    int32_t bos = config_token(t, cfg, "bos_token"), eos = config_token(t, cfg, "eos_token");
    if (bos >= 0)
        t->bos_id = bos;
    if (eos >= 0)
        t->eos_id = eos;
    /* clean_up_tokenization_spaces (true for Llama 3.x) is ignored: transformers 5 skips that
     * clean-up for BPE tokenizers ("destructive for BPE": "b || !c" would decode as "b ||!c"), as
     * the tokenizers library's decode does. */
    /* transformers' Llama/Gemma fast tokenizers rebuild the template from these flags. */
    const cJSON *ab = nn_json_get(cfg, "add_bos_token"), *ae = nn_json_get(cfg, "add_eos_token");
    if (cJSON_IsBool(ab) || cJSON_IsBool(ae)) {
        t->n_prefix = t->n_suffix = 0;
        if (cJSON_IsTrue(ab) && t->bos_id >= 0)
            t->prefix[t->n_prefix++] = t->bos_id;
        if (cJSON_IsTrue(ae) && t->eos_id >= 0)
            t->suffix[t->n_suffix++] = t->eos_id;
    }
    cJSON_Delete(cfg);
    return NN_OK;
}

/* Buckets the added tokens by first byte (a stable counting sort). */
static int index_added(nn_tokenizer *t, nn_err *err)
{
    memset(t->added_start, 0, sizeof t->added_start);
    if (!t->n_added)
        return NN_OK;
    if (!(t->added_order = nn_malloc(t->n_added * sizeof *t->added_order, err)))
        return NN_ERR;
    for (size_t k = 0; k < t->n_added; k++)
        t->added_start[(unsigned char)t->added[k].content[0] + 1]++;
    for (int b = 0; b < 256; b++)
        t->added_start[b + 1] += t->added_start[b];
    uint32_t fill[256];
    memcpy(fill, t->added_start, sizeof fill);
    for (size_t k = 0; k < t->n_added; k++)
        t->added_order[fill[(unsigned char)t->added[k].content[0]]++] = (uint32_t)k;
    return NN_OK;
}

int tok_load_hf(nn_tokenizer *t, const char *path, const char *config_path, nn_err *err)
{
    cJSON *root = nn_json_parse_file(path, 512u << 20, err);
    if (!root)
        return NN_ERR;
    int rc = NN_ERR;
    buf arena = {0};
    const cJSON *model = nn_json_get(root, "model");
    const char *mtype = type_of(model);
    if (!cJSON_IsObject(model)) {
        nn_fail(err, "%s: field 'model' missing or not an object", path);
        goto done;
    }
    if (!mtype || strcmp(mtype, "BPE") != 0) {
        nn_fail(err, "%s: model type '%s' is not supported (BPE)", path, mtype ? mtype : "(none)");
        goto done;
    }
    const cJSON *vocab = nn_json_get(model, "vocab"), *merges = nn_json_get(model, "merges");
    const cJSON *added = nn_json_get(root, "added_tokens"), *e;
    if (!cJSON_IsObject(vocab) || !cJSON_IsArray(merges)) {
        nn_fail(err, "%s: model.vocab must be an object and model.merges a list", path);
        goto done;
    }
    const char *prefix = NULL, *suffix = NULL;
    if (nn_json_string(model, "continuing_subword_prefix", false, path, &prefix, err) ||
        nn_json_string(model, "end_of_word_suffix", false, path, &suffix, err))
        goto done;
    if ((prefix && *prefix) || (suffix && *suffix)) {
        nn_fail(err, "%s: model.continuing_subword_prefix / end_of_word_suffix are not supported",
                path);
        goto done;
    }
    const cJSON *dropout = nn_json_get(model, "dropout");
    if (dropout && !cJSON_IsNull(dropout) && dropout->valuedouble != 0.0) {
        nn_fail(err, "%s: model.dropout is not supported (inference is deterministic)", path);
        goto done;
    }
    if (nn_json_bool(model, "byte_fallback", false, false, path, &t->byte_fallback, err) ||
        nn_json_bool(model, "fuse_unk", false, false, path, &t->fuse_unk, err) ||
        nn_json_bool(model, "ignore_merges", false, false, path, &t->ignore_merges, err))
        goto done;
    /* Vocabulary size: the largest id in vocab and added_tokens. */
    size_t n = 0;
    cJSON_ArrayForEach (e, vocab) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > 1e8 ||
            e->valuedouble != (double)(int32_t)e->valuedouble) {
            nn_fail(err, "%s: model.vocab['%s'] is not a token id", path, e->string);
            goto done;
        }
        if ((size_t)e->valuedouble + 1 > n)
            n = (size_t)e->valuedouble + 1;
    }
    if (added && !cJSON_IsArray(added)) {
        nn_fail(err, "%s: field 'added_tokens' must be a list", path);
        goto done;
    }
    cJSON_ArrayForEach (e, added) {
        long id;
        if (nn_json_int(e, "id", true, 0, 0, 100000000, path, &id, err))
            goto done;
        if ((size_t)id + 1 > n)
            n = (size_t)id + 1;
    }
    t->n_vocab = n;
    if (!(t->piece_off = nn_malloc((n ? n : 1) * sizeof *t->piece_off, err)) ||
        !(t->piece_len = nn_calloc(n ? n : 1, sizeof *t->piece_len, err)) ||
        !(t->special = nn_calloc(n ? n : 1, sizeof *t->special, err)))
        goto done;
    for (size_t i = 0; i < n; i++)
        t->piece_off[i] = SIZE_MAX;
    cJSON_ArrayForEach (e, vocab) {
        size_t len = strlen(e->string);
        int32_t id = (int32_t)e->valuedouble;
        if (nn_utf8_validate(e->string, len) != len) {
            nn_fail(err, "%s: model.vocab key for id %d is not valid UTF-8", path, id);
            goto done;
        }
        if (tok_set_piece(t, &arena, id, e->string, len, err) ||
            nn_strmap_put(&t->vocab, e->string, len, id, err))
            goto done;
    }
    size_t n_added = (size_t)cJSON_GetArraySize(added), k = 0;
    if (n_added && !(t->added = nn_calloc(n_added, sizeof *t->added, err)))
        goto done;
    cJSON_ArrayForEach (e, added) {
        added_token *a = &t->added[k];
        const char *content = NULL;
        if (nn_json_string(e, "content", true, path, &content, err) ||
            nn_json_bool(e, "special", false, false, path, &a->special, err) ||
            nn_json_bool(e, "lstrip", false, false, path, &a->lstrip, err) ||
            nn_json_bool(e, "rstrip", false, false, path, &a->rstrip, err) ||
            nn_json_bool(e, "normalized", false, !a->special, path, &a->normalized, err) ||
            nn_json_bool(e, "single_word", false, false, path, &a->single_word, err)) {
            nn_err_prefix(err, "added_tokens[%zu]", k);
            goto done;
        }
        a->id = (int32_t)nn_json_get(e, "id")->valuedouble;
        a->len = strlen(content);
        if (!a->len) {
            nn_fail(err, "%s: added_tokens[%zu] has empty content", path, k);
            goto done;
        }
        if (nn_utf8_validate(content, a->len) != a->len) {
            nn_fail(err, "%s: added_tokens[%zu] content is not valid UTF-8", path, k);
            goto done;
        }
        if (!(a->content = nn_strdup(content, err)))
            goto done;
        t->n_added = ++k;
        t->special[a->id] = a->special;
        if (tok_set_piece(t, &arena, a->id, content, a->len, err) ||
            nn_strmap_put(&t->vocab, content, a->len, a->id, err))
            goto done;
    }
    if (index_added(t, err))
        goto done;
    /* Merges: "a b" strings or ["a", "b"] pairs; both halves and the result must be tokens. */
    int32_t rank = 0;
    cJSON_ArrayForEach (e, merges) {
        const char *a, *b;
        size_t la, lb;
        char pair_buf[1024];
        if (cJSON_IsString(e)) {
            const char *sp = strchr(e->valuestring, ' ');
            if (!sp) {
                nn_fail(err, "%s: model.merges[%d] = '%s' is not 'left right'", path, rank,
                        e->valuestring);
                goto done;
            }
            a = e->valuestring;
            la = (size_t)(sp - a);
            b = sp + 1;
            lb = strlen(b);
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 &&
                   cJSON_IsString(cJSON_GetArrayItem(e, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(e, 1))) {
            a = cJSON_GetArrayItem(e, 0)->valuestring;
            b = cJSON_GetArrayItem(e, 1)->valuestring;
            la = strlen(a);
            lb = strlen(b);
        } else {
            nn_fail(err, "%s: model.merges[%d] is neither 'left right' nor [left, right]", path,
                    rank);
            goto done;
        }
        int32_t ia, ib, im;
        if (la + lb >= sizeof pair_buf) {
            nn_fail(err, "%s: model.merges[%d] is too long", path, rank);
            goto done;
        }
        memcpy(pair_buf, a, la);
        memcpy(pair_buf + la, b, lb);
        if (!nn_strmap_get(&t->vocab, a, la, &ia) || !nn_strmap_get(&t->vocab, b, lb, &ib) ||
            !nn_strmap_get(&t->vocab, pair_buf, la + lb, &im)) {
            nn_fail(err, "%s: model.merges[%d] ('%.*s' + '%.*s') names a token not in model.vocab",
                    path, rank, (int)la, a, (int)lb, b);
            goto done;
        }
        if (nn_pairmap_put(&t->merges, ia, ib, rank, im, err))
            goto done;
        rank++;
    }
    t->unk_id = -1;
    const char *unk = NULL;
    if (nn_json_string(model, "unk_token", false, path, &unk, err))
        goto done;
    if (unk && (t->unk_id = nn_tokenizer_find(t, unk, strlen(unk))) < 0) {
        nn_fail(err, "%s: model.unk_token '%s' is not in the vocabulary", path, unk);
        goto done;
    }
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_ids[b] = nn_tokenizer_find(t, name, 6);
    }
    t->arena = arena.p;
    arena.p = NULL;
    if (parse_chain(nn_json_get(root, "normalizer"), "normalizers", "normalizer", path,
                    parse_normalizer, &t->norm, &t->n_norm, err) ||
        parse_chain(nn_json_get(root, "pre_tokenizer"), "pretokenizers", "pre_tokenizer", path,
                    parse_pre_tokenizer, &t->pre, &t->n_pre, err) ||
        parse_chain(nn_json_get(root, "decoder"), "decoders", "decoder", path, parse_decoder,
                    &t->dec, &t->n_dec, err) ||
        parse_post_processor(t, nn_json_get(root, "post_processor"), path, err))
        goto done;
    if (load_config(t, config_path, err))
        goto done;
    rc = NN_OK;
done:
    buf_free(&arena);
    cJSON_Delete(root);
    return rc;
}

const tok_kind tok_kind_hf = {"tokenizer.json", tok_encode_hf, tok_decode_hf};
