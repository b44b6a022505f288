/* Hugging Face tokenizer.json and llama2.c tokenizer.bin (see tokenizer.h). The Hugging Face
 * pipeline is reproduced from the tokenizers library's semantics: AddedVocabulary splitting,
 * normalizers, pre-tokenizers, the BPE model (with byte fallback, unk fusing, ignore_merges),
 * post-processors and decoders. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer.h"

#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "nn_json.h"
#include "strmap.h"
#include "unicode.h"

/* ---- Small string utilities -------------------------------------------------------------------
 */

typedef struct buf {
    char *p;
    size_t len, cap;
} buf;

static int buf_reserve(buf *b, size_t extra, nn_err *err)
{
    if (b->len + extra + 1 <= b->cap)
        return NN_OK;
    size_t cap = b->cap ? b->cap * 2 : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *p = nn_realloc(b->p, cap, err);
    if (!p)
        return NN_ERR;
    b->p = p;
    b->cap = cap;
    return NN_OK;
}

static int buf_add(buf *b, const void *s, size_t n, nn_err *err)
{
    if (buf_reserve(b, n, err))
        return NN_ERR;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return NN_OK;
}

static void buf_free(buf *b)
{
    nn_free(b->p);
    memset(b, 0, sizeof *b);
}

static uint32_t utf8_decode(const char *s, int n)
{
    const unsigned char *u = (const unsigned char *)s;
    if (n == 1)
        return u[0];
    uint32_t cp = u[0] & (0x7F >> n);
    for (int i = 1; i < n; i++)
        cp = (cp << 6) | (u[i] & 0x3F);
    return cp;
}

static int utf8_encode(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Appends bytes as UTF-8, replacing each maximal invalid subsequence with U+FFFD (Rust's
 * String::from_utf8_lossy, which Hugging Face's decoders use). */
static int add_lossy(buf *b, const char *s, size_t n, nn_err *err)
{
    size_t i = 0;
    while (i < n) {
        int k = nn_utf8_char_len((const unsigned char *)s + i, n - i);
        if (k) {
            if (buf_add(b, s + i, (size_t)k, err))
                return NN_ERR;
            i += (size_t)k;
            continue;
        }
        /* Skip the longest prefix that could still begin a valid sequence. */
        const unsigned char *u = (const unsigned char *)s + i;
        size_t skip = 1;
        int need = (u[0] & 0xE0) == 0xC0   ? 2
                   : (u[0] & 0xF0) == 0xE0 ? 3
                   : (u[0] & 0xF8) == 0xF0 ? 4
                                           : 1;
        if (need > 1 && u[0] >= 0xC2 && u[0] <= 0xF4) {
            while (skip < (size_t)need && i + skip < n && (u[skip] & 0xC0) == 0x80) {
                /* second-byte ranges that make a sequence impossible end the subpart */
                if (skip == 1 && ((u[0] == 0xE0 && u[1] < 0xA0) || (u[0] == 0xED && u[1] > 0x9F) ||
                                  (u[0] == 0xF0 && u[1] < 0x90) || (u[0] == 0xF4 && u[1] > 0x8F)))
                    break;
                skip++;
            }
        }
        if (buf_add(b, "\xEF\xBF\xBD", 3, err))
            return NN_ERR;
        i += skip;
    }
    return NN_OK;
}

/* ---- The tokenizer ----------------------------------------------------------------------------
 */

enum { KIND_HF, KIND_LLAMA2C };
enum { NORM_PREPEND, NORM_REPLACE, NORM_NFC, NORM_NFD, NORM_NFKC, NORM_NFKD };
enum { PRE_BYTELEVEL, PRE_SPLIT, PRE_DIGITS, PRE_METASPACE, PRE_WHITESPACE, PRE_WHITESPACE_SPLIT };
enum { SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_MERGED_PREV, SPLIT_MERGED_NEXT, SPLIT_CONTIGUOUS };
enum { DEC_REPLACE, DEC_BYTEFALLBACK, DEC_FUSE, DEC_STRIP, DEC_BYTELEVEL, DEC_METASPACE };
enum { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER };

typedef struct step {
    int kind;
    char *a, *b; /* Prepend: a; Replace: a -> b; Metaspace: a = replacement */
    size_t a_len, b_len;
    pcre2_code *re; /* Replace/Split with a regex pattern */
    int behavior;
    bool invert, flag; /* flag: add_prefix_space / use_regex / individual_digits / split */
    bool use_regex;
    int prepend_scheme;
    int start, stop; /* Strip */
} step;

typedef struct added_token {
    char *content;
    size_t len;
    int32_t id;
    bool special, lstrip, rstrip, normalized, single_word;
} added_token;

typedef struct cache_entry {
    uint32_t off, n;
} cache_entry;

struct nn_tokenizer {
    int kind;
    char *arena; /* all pieces, NUL-separated */
    size_t *piece_off;
    uint32_t *piece_len;
    size_t n_vocab;
    bool *special;
    float *scores; /* llama2.c */
    nn_strmap vocab;
    nn_pairmap merges;
    added_token *added;
    size_t n_added;
    /* the added tokens by first byte, in their order: added_order[added_start[b] ..
     * added_start[b + 1]) (a text position is compared only with the tokens it can begin) */
    uint32_t *added_order;
    uint32_t added_start[257];
    step *norm, *pre, *dec;
    size_t n_norm, n_pre, n_dec;
    bool byte_fallback, fuse_unk, ignore_merges;
    int32_t unk_id, bos_id, eos_id;
    int32_t byte_ids[256];
    int32_t prefix[8], suffix[8];
    int n_prefix, n_suffix;
    uint32_t byte_to_cp[256];
    int16_t cp_to_byte[324]; /* byte-level code points are all below 324 */
    /* word -> ids cache */
    nn_strmap cache;
    cache_entry *cache_entries;
    size_t n_cache, cache_cap;
    int32_t *cache_ids;
    size_t cache_ids_len, cache_ids_cap;
    /* scratch for BPE */
    int32_t *sym_id, *sym_prev, *sym_next;
    size_t sym_cap;
    struct heap_item *heap;
    size_t heap_cap;
};

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

static int set_piece(nn_tokenizer *t, buf *arena, int32_t id, const char *s, size_t len,
                     nn_err *err)
{
    t->piece_off[id] = arena->len;
    t->piece_len[id] = (uint32_t)len;
    if (buf_add(arena, s, len, err) || buf_add(arena, "", 1, err))
        return NN_ERR;
    return NN_OK;
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

static int load_hf(nn_tokenizer *t, const char *path, const char *config_path, nn_err *err)
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
        if (set_piece(t, &arena, id, e->string, len, err) ||
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
        if (set_piece(t, &arena, a->id, content, a->len, err) ||
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

/* ---- llama2.c tokenizer.bin -------------------------------------------------------------------
 */

static int load_llama2c(nn_tokenizer *t, const char *path, nn_err *err)
{
    nn_mapped_file f;
    if (nn_file_map(path, &f, err))
        return NN_ERR;
    int rc = NN_ERR;
    buf arena = {0};
    size_t cap = 0, n = 0, off = 4;
    if (f.size < 4) {
        nn_fail(err, "%s: too short for a llama2.c tokenizer header", path);
        goto done;
    }
    int32_t max_len;
    memcpy(&max_len, f.data, 4);
    if (max_len <= 0 || max_len > 65536) {
        nn_fail(err, "%s: header field 'max_token_length' = %d is out of range", path, max_len);
        goto done;
    }
    while (off < f.size) {
        if (f.size - off < 8) {
            nn_fail(err, "%s: token %zu: truncated record header at byte %zu", path, n, off);
            goto done;
        }
        float score;
        int32_t len;
        memcpy(&score, f.data + off, 4);
        memcpy(&len, f.data + off + 4, 4);
        off += 8;
        if (len < 0 || len > max_len || (size_t)len > f.size - off) {
            nn_fail(
                err,
                "%s: token %zu: length %d is negative, above max_token_length %d, or past the end",
                path, n, len, max_len);
            goto done;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 1024;
            size_t *po = nn_realloc(t->piece_off, cap * sizeof *po, err);
            if (!po)
                goto done;
            t->piece_off = po;
            uint32_t *pl = nn_realloc(t->piece_len, cap * sizeof *pl, err);
            if (!pl)
                goto done;
            t->piece_len = pl;
            float *sc = nn_realloc(t->scores, cap * sizeof *sc, err);
            if (!sc)
                goto done;
            t->scores = sc;
        }
        t->scores[n] = score;
        if (set_piece(t, &arena, (int32_t)n, (const char *)f.data + off, (size_t)len, err))
            goto done;
        off += (size_t)len;
        n++;
    }
    t->n_vocab = n;
    if (n < 3) {
        nn_fail(err, "%s: %zu tokens; a llama2.c vocabulary has at least <unk>, <s>, </s>", path,
                n);
        goto done;
    }
    if (!(t->special = nn_calloc(n, sizeof *t->special, err)))
        goto done;
    t->arena = arena.p;
    arena.p = NULL;
    /* First occurrence wins for duplicate pieces, as a stable lookup would give. */
    for (size_t i = n; i-- > 0;)
        if (nn_strmap_put(&t->vocab, t->arena + t->piece_off[i], t->piece_len[i], (int32_t)i, err))
            goto done;
    t->special[0] = t->special[1] = t->special[2] = true;
    t->unk_id = 0;
    t->bos_id = 1;
    t->eos_id = 2;
    t->prefix[t->n_prefix++] = 1;
    rc = NN_OK;
done:
    buf_free(&arena);
    nn_file_unmap(&f);
    return rc;
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
            rc = load_hf(t, json, config, err);
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
            rc = load_hf(t, path, config, err);
        }
    } else {
        t->kind = KIND_LLAMA2C;
        rc = load_llama2c(t, path, err);
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

/* ---- Encoding ---------------------------------------------------------------------------------
 */

/* A list of words: word i is text.p[start[i] .. start[i+1]); first[i] marks a word that begins the
 * original text (Metaspace's prepend_scheme "first"). */
typedef struct words {
    buf text;
    size_t *start;
    bool *first;
    size_t n, cap;
} words;

static void words_free(words *w)
{
    buf_free(&w->text);
    nn_free(w->start);
    nn_free(w->first);
    memset(w, 0, sizeof *w);
}

static void words_reset(words *w)
{
    w->text.len = 0;
    w->n = 0;
}

static int words_add(words *w, const char *s, size_t len, bool first, nn_err *err)
{
    if (!len)
        return NN_OK; /* empty pieces are dropped, as Hugging Face does */
    if (w->n + 2 > w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 64;
        size_t *st = nn_realloc(w->start, cap * sizeof *st, err);
        if (!st)
            return NN_ERR;
        w->start = st;
        bool *f = nn_realloc(w->first, cap * sizeof *f, err);
        if (!f)
            return NN_ERR;
        w->first = f;
        w->cap = cap;
    }
    w->start[w->n] = w->text.len;
    w->first[w->n] = first;
    if (buf_add(&w->text, s, len, err))
        return NN_ERR;
    w->n++;
    w->start[w->n] = w->text.len;
    return NN_OK;
}

typedef struct span {
    size_t a, b;
} span;

typedef struct spans {
    span *v;
    size_t n, cap;
} spans;

static int spans_add(spans *s, size_t a, size_t b, nn_err *err)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        span *p = nn_realloc(s->v, cap * sizeof *p, err);
        if (!p)
            return NN_ERR;
        s->v = p;
        s->cap = cap;
    }
    s->v[s->n++] = (span){a, b};
    return NN_OK;
}

/* Non-empty regex matches of re in s. */
static int regex_matches(const pcre2_code *re, const char *s, size_t len, spans *out, nn_err *err)
{
    out->n = 0;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    if (!md)
        return nn_fail(err, "out of memory for regex match data");
    size_t off = 0;
    int rc = NN_OK;
    while (off <= len) {
        int m = pcre2_match(re, (PCRE2_SPTR)s, len, off, PCRE2_NO_UTF_CHECK, md, NULL);
        if (m == PCRE2_ERROR_NOMATCH)
            break;
        if (m < 0) {
            rc = nn_fail(err, "regex match failed (PCRE2 error %d)", m);
            break;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (ov[1] == ov[0]) { /* empty match: step one character */
            if (off >= len)
                break;
            int k = nn_utf8_char_len((const unsigned char *)s + off, len - off);
            off += k ? (size_t)k : 1;
            continue;
        }
        if (spans_add(out, ov[0], ov[1], err)) {
            rc = NN_ERR;
            break;
        }
        off = ov[1];
    }
    pcre2_match_data_free(md);
    return rc;
}

/* Literal (non-overlapping, left to right) matches of pat in s. */
static int literal_matches(const char *pat, size_t plen, const char *s, size_t len, spans *out,
                           nn_err *err)
{
    out->n = 0;
    if (!plen)
        return NN_OK;
    for (size_t i = 0; i + plen <= len;) {
        if (memcmp(s + i, pat, plen) == 0) {
            if (spans_add(out, i, i + plen, err))
                return NN_ERR;
            i += plen;
        } else {
            i++;
        }
    }
    return NN_OK;
}

/* Splits word s at the matches per Hugging Face's SplitDelimiterBehavior, appending to out. */
static int split_by(const char *s, size_t len, const spans *m, int behavior, bool invert,
                    bool first, words *out, nn_err *err)
{
    /* The whole word as alternating (piece, is_match) segments. */
    size_t n_seg = 0, prev = 0;
    span *seg = nn_malloc((2 * m->n + 2) * sizeof *seg, err);
    bool *is = nn_malloc((2 * m->n + 2) * sizeof *is, err);
    int rc = NN_ERR;
    if (!seg || !is)
        goto done;
    for (size_t i = 0; i < m->n; i++) {
        if (m->v[i].a > prev) {
            seg[n_seg] = (span){prev, m->v[i].a};
            is[n_seg++] = invert;
        }
        seg[n_seg] = m->v[i];
        is[n_seg++] = !invert;
        prev = m->v[i].b;
    }
    if (prev < len) {
        seg[n_seg] = (span){prev, len};
        is[n_seg++] = invert;
    }
    /* Merge per behavior into pieces. */
    size_t n_out = 0;
    bool previous_match = false;
    if (behavior == SPLIT_MERGED_NEXT) {
        /* Walk backwards: a match joins the piece after it. */
        size_t k = n_seg;
        span *rev = seg; /* reuse: build reversed pieces in place from the end */
        size_t w = n_seg;
        while (k-- > 0) {
            if (is[k] && !previous_match && w < n_seg)
                rev[w].a = seg[k].a;
            else
                rev[--w] = seg[k];
            previous_match = is[k];
        }
        for (size_t i = w; i < n_seg; i++)
            if (words_add(out, s + rev[i].a, rev[i].b - rev[i].a, first && rev[i].a == 0, err))
                goto done;
        rc = NN_OK;
        goto done;
    }
    for (size_t i = 0; i < n_seg; i++) {
        bool match = is[i];
        switch (behavior) {
        case SPLIT_REMOVED:
            if (!match)
                seg[n_out++] = seg[i];
            break;
        case SPLIT_ISOLATED:
            seg[n_out++] = seg[i];
            break;
        case SPLIT_MERGED_PREV:
            if (match && !previous_match && n_out)
                seg[n_out - 1].b = seg[i].b;
            else
                seg[n_out++] = seg[i];
            break;
        case SPLIT_CONTIGUOUS:
            if (match && previous_match && n_out)
                seg[n_out - 1].b = seg[i].b;
            else
                seg[n_out++] = seg[i];
            break;
        }
        previous_match = match;
    }
    for (size_t i = 0; i < n_out; i++)
        if (words_add(out, s + seg[i].a, seg[i].b - seg[i].a, first && seg[i].a == 0, err))
            goto done;
    rc = NN_OK;
done:
    nn_free(seg);
    nn_free(is);
    return rc;
}

/* Matches of characters satisfying a class (Digits). */
static int char_class_matches(const char *s, size_t len, spans *out, nn_err *err)
{
    out->n = 0;
    for (size_t i = 0; i < len;) {
        int k = nn_utf8_char_len((const unsigned char *)s + i, len - i);
        if (!k)
            k = 1;
        enum nn_ucat c = nn_unicode_category(utf8_decode(s + i, k));
        if ((c == NN_UCAT_ND || c == NN_UCAT_NL || c == NN_UCAT_NO) &&
            spans_add(out, i, i + (size_t)k, err))
            return NN_ERR;
        i += (size_t)k;
    }
    return NN_OK;
}

static int replace_all(const char *s, size_t len, const spans *m, const char *with, size_t wlen,
                       buf *out, nn_err *err)
{
    size_t prev = 0;
    for (size_t i = 0; i < m->n; i++) {
        if (buf_add(out, s + prev, m->v[i].a - prev, err) || buf_add(out, with, wlen, err))
            return NN_ERR;
        prev = m->v[i].b;
    }
    return buf_add(out, s + prev, len - prev, err);
}

static int normalize(const nn_tokenizer *t, const char *s, size_t len, buf *out, nn_err *err)
{
    buf cur = {0}, next = {0};
    spans m = {0};
    int rc = NN_ERR;
    if (buf_add(&cur, s, len, err))
        goto done;
    for (size_t i = 0; i < t->n_norm; i++) {
        const step *st = &t->norm[i];
        next.len = 0;
        switch (st->kind) {
        case NORM_PREPEND:
            if (cur.len &&
                (buf_add(&next, st->a, st->a_len, err) || buf_add(&next, cur.p, cur.len, err)))
                goto done;
            break;
        case NORM_REPLACE:
            if ((st->re ? regex_matches(st->re, cur.p, cur.len, &m, err)
                        : literal_matches(st->a, st->a_len, cur.p, cur.len, &m, err)) ||
                replace_all(cur.p, cur.len, &m, st->b, st->b_len, &next, err))
                goto done;
            break;
        default: {
            int opts = UTF8PROC_STABLE;
            if (st->kind == NORM_NFC || st->kind == NORM_NFKC)
                opts |= UTF8PROC_COMPOSE;
            else
                opts |= UTF8PROC_DECOMPOSE;
            if (st->kind == NORM_NFKC || st->kind == NORM_NFKD)
                opts |= UTF8PROC_COMPAT;
            utf8proc_uint8_t *mapped = NULL;
            utf8proc_ssize_t n = cur.len ? utf8proc_map((const utf8proc_uint8_t *)cur.p,
                                                        (utf8proc_ssize_t)cur.len, &mapped, opts)
                                         : 0;
            if (n < 0) {
                nn_fail(err, "Unicode normalization failed: %s", utf8proc_errmsg(n));
                goto done;
            }
            int a = buf_add(&next, mapped ? (const char *)mapped : "", (size_t)n, err);
            free(mapped); /* utf8proc allocates with malloc */
            if (a)
                goto done;
        }
        }
        if (st->kind == NORM_PREPEND && !cur.len)
            continue;
        buf tmp = cur;
        cur = next;
        next = tmp;
    }
    rc = buf_add(out, cur.p ? cur.p : "", cur.len, err);
done:
    buf_free(&cur);
    buf_free(&next);
    nn_free(m.v);
    return rc;
}

static int pre_tokenize_step(const nn_tokenizer *t, const step *st, const words *in, words *out,
                             spans *m, nn_err *err)
{
    words_reset(out);
    buf tmp = {0};
    int rc = NN_ERR;
    for (size_t i = 0; i < in->n; i++) {
        const char *s = in->text.p + in->start[i];
        size_t len = in->start[i + 1] - in->start[i];
        bool first = in->first[i];
        switch (st->kind) {
        case PRE_BYTELEVEL: {
            tmp.len = 0;
            if (st->flag && s[0] != ' ' && buf_add(&tmp, " ", 1, err))
                goto done;
            if (buf_add(&tmp, s, len, err))
                goto done;
            if (st->use_regex) {
                if (regex_matches(st->re, tmp.p, tmp.len, m, err))
                    goto done;
            } else {
                m->n = 0;
            }
            /* Isolated pieces, each byte mapped to its printable code point. */
            size_t n_pieces = st->use_regex ? m->n : 1, prev = 0;
            for (size_t p = 0; p <= n_pieces; p++) {
                size_t a, b;
                if (!st->use_regex) {
                    if (p == 1)
                        break;
                    a = 0;
                    b = tmp.len;
                } else if (p < m->n) {
                    if (m->v[p].a > prev) { /* gap before the match */
                        a = prev;
                        b = m->v[p].a;
                        p--;
                        prev = b;
                    } else {
                        a = m->v[p].a;
                        b = m->v[p].b;
                        prev = b;
                    }
                } else {
                    if (prev >= tmp.len)
                        break;
                    a = prev;
                    b = tmp.len;
                    prev = b;
                }
                char mapped[4 * 64];
                buf piece = {0};
                for (size_t k = a; k < b; k++) {
                    int n = utf8_encode(t->byte_to_cp[(unsigned char)tmp.p[k]], mapped);
                    if (buf_add(&piece, mapped, (size_t)n, err)) {
                        buf_free(&piece);
                        goto done;
                    }
                }
                int r = words_add(out, piece.p, piece.len, first && a == 0, err);
                buf_free(&piece);
                if (r)
                    goto done;
            }
            break;
        }
        case PRE_SPLIT:
            if ((st->re ? regex_matches(st->re, s, len, m, err)
                        : literal_matches(st->a, st->a_len, s, len, m, err)) ||
                split_by(s, len, m, st->behavior, st->invert, first, out, err))
                goto done;
            break;
        case PRE_DIGITS:
            if (char_class_matches(s, len, m, err) ||
                split_by(s, len, m, st->flag ? SPLIT_ISOLATED : SPLIT_CONTIGUOUS, false, first, out,
                         err))
                goto done;
            break;
        case PRE_WHITESPACE:
        case PRE_WHITESPACE_SPLIT:
            if (regex_matches(st->re, s, len, m, err) ||
                split_by(s, len, m, SPLIT_REMOVED, true, first, out, err))
                goto done;
            break;
        case PRE_METASPACE: {
            tmp.len = 0;
            bool prepend = (st->prepend_scheme == PREPEND_ALWAYS ||
                            (st->prepend_scheme == PREPEND_FIRST && first)) &&
                           !(len >= st->a_len && memcmp(s, st->a, st->a_len) == 0);
            /* spaces become the replacement; the prepend check looks at the original start */
            if (literal_matches(" ", 1, s, len, m, err))
                goto done;
            if (prepend && buf_add(&tmp, st->a, st->a_len, err))
                goto done;
            if (replace_all(s, len, m, st->a, st->a_len, &tmp, err))
                goto done;
            if (st->flag) {
                if (literal_matches(st->a, st->a_len, tmp.p, tmp.len, m, err) ||
                    split_by(tmp.p, tmp.len, m, SPLIT_MERGED_NEXT, false, first, out, err))
                    goto done;
            } else if (words_add(out, tmp.p, tmp.len, first, err)) {
                goto done;
            }
            break;
        }
        }
    }
    rc = NN_OK;
done:
    buf_free(&tmp);
    return rc;
}

typedef struct heap_item {
    int32_t rank, pos;
    int32_t left, right; /* the ids this merge was computed for (stale check) */
} heap_item;

static bool heap_less(const heap_item *a, const heap_item *b)
{
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(heap_item *h, size_t *n, heap_item x)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!heap_less(&x, &h[parent]))
            break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = x;
}

static heap_item heap_pop(heap_item *h, size_t *n)
{
    heap_item top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && heap_less(&h[c + 1], &h[c]))
            c++;
        if (!heap_less(&h[c], &last))
            break;
        h[i] = h[c];
        i = c;
    }
    if (*n)
        h[i] = last;
    return top;
}

static int ensure_scratch(nn_tokenizer *t, size_t n, nn_err *err)
{
    if (n <= t->sym_cap)
        return NN_OK;
    size_t cap = t->sym_cap ? t->sym_cap : 256;
    while (cap < n)
        cap *= 2;
    int32_t *a = nn_realloc(t->sym_id, cap * sizeof *a, err);
    if (!a)
        return NN_ERR;
    t->sym_id = a;
    if (!(a = nn_realloc(t->sym_prev, cap * sizeof *a, err)))
        return NN_ERR;
    t->sym_prev = a;
    if (!(a = nn_realloc(t->sym_next, cap * sizeof *a, err)))
        return NN_ERR;
    t->sym_next = a;
    heap_item *h = nn_realloc(t->heap, 2 * cap * sizeof *h, err);
    if (!h)
        return NN_ERR;
    t->heap = h;
    t->sym_cap = cap;
    return NN_OK;
}

static void push_pair(nn_tokenizer *t, size_t *n_heap, int32_t pos)
{
    int32_t next = t->sym_next[pos], rank, merged;
    if (next < 0 || !nn_pairmap_get(&t->merges, t->sym_id[pos], t->sym_id[next], &rank, &merged))
        return;
    heap_push(t->heap, n_heap, (heap_item){rank, pos, t->sym_id[pos], t->sym_id[next]});
}

#define CACHE_MAX_WORDS 100000
#define CACHE_MAX_WORD_BYTES 256

/* The BPE model on one pre-tokenized word. */
static int bpe_word(nn_tokenizer *t, const char *w, size_t len, nn_ids *out, nn_err *err)
{
    int32_t idx;
    if (len <= CACHE_MAX_WORD_BYTES && nn_strmap_get(&t->cache, w, len, &idx)) {
        cache_entry e = t->cache_entries[idx];
        for (uint32_t i = 0; i < e.n; i++)
            if (nn_ids_push(out, t->cache_ids[e.off + i], err))
                return NN_ERR;
        return NN_OK;
    }
    size_t first_out = out->n;
    int32_t whole;
    if (t->ignore_merges && nn_strmap_get(&t->vocab, w, len, &whole)) {
        if (nn_ids_push(out, whole, err))
            return NN_ERR;
        goto cache;
    }
    if (ensure_scratch(t, len + 1, err))
        return NN_ERR;
    size_t n = 0;
    bool last_unk = false;
    for (size_t i = 0; i < len;) {
        int k = nn_utf8_char_len((const unsigned char *)w + i, len - i);
        if (!k)
            k = 1;
        int32_t id;
        if (nn_strmap_get(&t->vocab, w + i, (size_t)k, &id)) {
            t->sym_id[n++] = id;
            last_unk = false;
        } else {
            bool bytes_ok = t->byte_fallback;
            for (int b = 0; bytes_ok && b < k; b++)
                bytes_ok = t->byte_ids[(unsigned char)w[i + (size_t)b]] >= 0;
            if (bytes_ok) {
                for (int b = 0; b < k; b++)
                    t->sym_id[n++] = t->byte_ids[(unsigned char)w[i + (size_t)b]];
                last_unk = false;
            } else if (t->unk_id >= 0) {
                if (!(t->fuse_unk && last_unk))
                    t->sym_id[n++] = t->unk_id;
                last_unk = true;
            }
            /* with no unk token the character is dropped, as Hugging Face does */
        }
        i += (size_t)k;
    }
    for (size_t i = 0; i < n; i++) {
        t->sym_prev[i] = (int32_t)i - 1;
        t->sym_next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    size_t n_heap = 0;
    for (size_t i = 0; i + 1 < n; i++)
        push_pair(t, &n_heap, (int32_t)i);
    while (n_heap) {
        heap_item top = heap_pop(t->heap, &n_heap);
        int32_t pos = top.pos, next = t->sym_next[pos];
        if (t->sym_id[pos] != top.left || next < 0 || t->sym_id[next] != top.right)
            continue; /* stale: one side was merged since */
        int32_t rank, merged;
        nn_pairmap_get(&t->merges, top.left, top.right, &rank, &merged);
        t->sym_id[pos] = merged;
        t->sym_id[next] = -1; /* removed */
        t->sym_next[pos] = t->sym_next[next];
        if (t->sym_next[next] >= 0)
            t->sym_prev[t->sym_next[next]] = pos;
        if (t->sym_prev[pos] >= 0)
            push_pair(t, &n_heap, t->sym_prev[pos]);
        push_pair(t, &n_heap, pos);
    }
    for (int32_t i = n ? 0 : -1; i >= 0; i = t->sym_next[i])
        if (nn_ids_push(out, t->sym_id[i], err))
            return NN_ERR;
cache:
    if (len > CACHE_MAX_WORD_BYTES)
        return NN_OK;
    if (t->n_cache >= CACHE_MAX_WORDS) {
        nn_strmap_clear(&t->cache);
        t->n_cache = 0;
        t->cache_ids_len = 0;
    }
    size_t count = out->n - first_out;
    if (t->n_cache == t->cache_cap) {
        size_t cap = t->cache_cap ? t->cache_cap * 2 : 1024;
        cache_entry *ce = nn_realloc(t->cache_entries, cap * sizeof *ce, err);
        if (!ce)
            return NN_ERR;
        t->cache_entries = ce;
        t->cache_cap = cap;
    }
    if (t->cache_ids_len + count > t->cache_ids_cap) {
        size_t cap = t->cache_ids_cap ? t->cache_ids_cap * 2 : 4096;
        while (cap < t->cache_ids_len + count)
            cap *= 2;
        int32_t *ci = nn_realloc(t->cache_ids, cap * sizeof *ci, err);
        if (!ci)
            return NN_ERR;
        t->cache_ids = ci;
        t->cache_ids_cap = cap;
    }
    if (count) /* a word may encode to no ids (characters dropped without an unk token) */
        memcpy(t->cache_ids + t->cache_ids_len, out->ids + first_out, count * sizeof(int32_t));
    t->cache_entries[t->n_cache] = (cache_entry){(uint32_t)t->cache_ids_len, (uint32_t)count};
    t->cache_ids_len += count;
    if (nn_strmap_put(&t->cache, w, len, (int32_t)t->n_cache, err))
        return NN_ERR;
    t->n_cache++;
    return NN_OK;
}

static bool is_word_char(const char *s, size_t len, size_t at, bool before)
{
    /* The character ending at `at` (before) or starting at `at`. */
    size_t i = at;
    if (before) {
        if (at == 0)
            return false;
        i = at - 1;
        while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80)
            i--;
    } else if (at >= len) {
        return false;
    }
    int k = nn_utf8_char_len((const unsigned char *)s + i, len - i);
    uint32_t cp = k ? utf8_decode(s + i, k) : (unsigned char)s[i];
    enum nn_ucat c = nn_unicode_category(cp);
    return cp == '_' || (c >= NN_UCAT_LL && c <= NN_UCAT_LU) || c == NN_UCAT_ND ||
           c == NN_UCAT_MN || c == NN_UCAT_MC;
}

static bool is_space_at(const char *s, size_t len, size_t i, size_t *k)
{
    int n = nn_utf8_char_len((const unsigned char *)s + i, len - i);
    if (!n)
        return false;
    uint32_t cp = utf8_decode(s + i, n);
    *k = (size_t)n;
    return cp == ' ' || (cp >= 9 && cp <= 13) || nn_unicode_category(cp) == NN_UCAT_ZS ||
           cp == 0x85 || cp == 0x2028 || cp == 0x2029;
}

typedef struct piece {
    size_t a, b;
    int32_t id; /* -1: text to tokenize */
} piece;

/* Splits s on the added tokens whose `normalized` flag equals normalized (leftmost-longest,
 * honouring single_word, lstrip, rstrip). */
static int split_added(const nn_tokenizer *t, const char *s, size_t len, bool normalized,
                       piece **out, size_t *n_out, nn_err *err)
{
    size_t cap = 16, n = 0, prev = 0;
    piece *p = nn_malloc(cap * sizeof *p, err);
    if (!p)
        return NN_ERR;
    bool any = false;
    for (size_t k = 0; k < t->n_added; k++)
        any |= t->added[k].normalized == normalized;
    for (size_t i = 0; any && i < len;) {
        const added_token *best = NULL;
        unsigned char first = (unsigned char)s[i];
        for (uint32_t j = t->added_start[first]; j < t->added_start[first + 1]; j++) {
            const added_token *a = &t->added[t->added_order[j]];
            if (a->normalized != normalized || a->len > len - i || (best && a->len <= best->len) ||
                memcmp(s + i, a->content, a->len) != 0)
                continue;
            if (a->single_word &&
                (is_word_char(s, len, i, true) || is_word_char(s, len, i + a->len, false)))
                continue;
            best = a;
        }
        if (!best) {
            i++;
            continue;
        }
        size_t start = i, end = i + best->len, k;
        if (best->lstrip)
            while (start > prev) {
                size_t j = start - 1;
                while (j > prev && ((unsigned char)s[j] & 0xC0) == 0x80)
                    j--;
                if (!is_space_at(s, len, j, &k))
                    break;
                start = j;
            }
        if (best->rstrip)
            while (end < len && is_space_at(s, len, end, &k))
                end += k;
        if (n + 2 > cap) {
            cap *= 2;
            piece *g = nn_realloc(p, cap * sizeof *g, err);
            if (!g) {
                nn_free(p);
                return NN_ERR;
            }
            p = g;
        }
        if (start > prev)
            p[n++] = (piece){prev, start, -1};
        p[n++] = (piece){start, end, best->id};
        prev = i = end;
    }
    if (prev < len || n == 0) {
        if (n + 1 > cap) {
            piece *g = nn_realloc(p, (cap + 1) * sizeof *g, err);
            if (!g) {
                nn_free(p);
                return NN_ERR;
            }
            p = g;
        }
        p[n++] = (piece){prev, len, -1};
    }
    *out = p;
    *n_out = n;
    return NN_OK;
}

static int encode_text(nn_tokenizer *t, const char *s, size_t len, bool at_start, nn_ids *out,
                       nn_err *err)
{
    buf norm = {0};
    words a = {0}, b = {0};
    spans m = {0};
    piece *pieces = NULL;
    size_t n_pieces = 0;
    int rc = NN_ERR;
    if (normalize(t, s, len, &norm, err) ||
        split_added(t, norm.p ? norm.p : "", norm.len, true, &pieces, &n_pieces, err))
        goto done;
    for (size_t p = 0; p < n_pieces; p++) {
        if (pieces[p].id >= 0) {
            if (nn_ids_push(out, pieces[p].id, err))
                goto done;
            continue;
        }
        words_reset(&a);
        if (words_add(&a, norm.p + pieces[p].a, pieces[p].b - pieces[p].a,
                      at_start && pieces[p].a == 0, err))
            goto done;
        words *cur = &a, *next = &b;
        for (size_t i = 0; i < t->n_pre; i++) {
            if (pre_tokenize_step(t, &t->pre[i], cur, next, &m, err))
                goto done;
            words *tmp = cur;
            cur = next;
            next = tmp;
        }
        for (size_t w = 0; w < cur->n; w++)
            if (bpe_word(t, cur->text.p + cur->start[w], cur->start[w + 1] - cur->start[w], out,
                         err))
                goto done;
    }
    rc = NN_OK;
done:
    buf_free(&norm);
    words_free(&a);
    words_free(&b);
    nn_free(m.v);
    nn_free(pieces);
    return rc;
}

/* llama2.c run.c's encode: a dummy-prefix space token, code points (or their bytes + 3), then
 * repeatedly the highest-scoring merge of two adjacent pieces (the leftmost on ties). */
static int encode_llama2c(const nn_tokenizer *t, const char *text, size_t len, bool add_special,
                          nn_ids *out, nn_err *err)
{
    len = strnlen(text, len); /* run.c reads a C string */
    if (add_special && nn_ids_push(out, 1, err))
        return NN_ERR;
    size_t first = out->n;
    if (len) {
        int32_t space = nn_tokenizer_find(t, " ", 1);
        if (space >= 0 && nn_ids_push(out, space, err))
            return NN_ERR;
    }
    for (size_t i = 0; i < len;) {
        size_t k = 1;
        while (k < 4 && i + k < len && ((unsigned char)text[i + k] & 0xC0) == 0x80)
            k++;
        int32_t id = nn_tokenizer_find(t, text + i, k);
        if (id >= 0) {
            if (nn_ids_push(out, id, err))
                return NN_ERR;
        } else {
            for (size_t b = 0; b < k; b++) {
                /* run.c's byte fallback: <0xXX> is token 3 + XX */
                int32_t byte_id = (int32_t)(unsigned char)text[i + b] + 3;
                if ((size_t)byte_id >= t->n_vocab)
                    return nn_fail(err,
                                   "byte 0x%02X at offset %zu has no token: byte fallback id %d "
                                   "is outside the vocabulary of %zu tokens",
                                   (unsigned char)text[i + b], i + b, byte_id, t->n_vocab);
                if (nn_ids_push(out, byte_id, err))
                    return NN_ERR;
            }
        }
        i += k;
    }
    char pair[2 * 65536 + 1];
    for (;;) {
        float best = -1e10f;
        size_t best_at = 0;
        int32_t best_id = -1;
        for (size_t i = first; i + 1 < out->n; i++) {
            size_t la = 0, lb = 0;
            const char *a = nn_tokenizer_piece(t, out->ids[i], &la);
            const char *b = nn_tokenizer_piece(t, out->ids[i + 1], &lb);
            memcpy(pair, a, la);
            memcpy(pair + la, b, lb);
            int32_t id = nn_tokenizer_find(t, pair, la + lb);
            if (id >= 0 && t->scores[id] > best) {
                best = t->scores[id];
                best_id = id;
                best_at = i;
            }
        }
        if (best_id < 0)
            break;
        out->ids[best_at] = best_id;
        memmove(out->ids + best_at + 1, out->ids + best_at + 2,
                (out->n - best_at - 2) * sizeof(int32_t));
        out->n--;
    }
    return NN_OK;
}

int nn_tokenizer_encode(nn_tokenizer *t, const char *text, size_t len, bool add_special,
                        nn_ids *out, nn_err *err)
{
    size_t bad = nn_utf8_validate(text, len);
    if (bad != len)
        return nn_fail(err, "text is not valid UTF-8 (byte %zu: 0x%02X)", bad,
                       (unsigned char)text[bad]);
    if (t->kind == KIND_LLAMA2C)
        return encode_llama2c(t, text, len, add_special, out, err);
    if (add_special)
        for (int i = 0; i < t->n_prefix; i++)
            if (nn_ids_push(out, t->prefix[i], err))
                return NN_ERR;
    piece *pieces = NULL;
    size_t n = 0;
    if (split_added(t, text, len, false, &pieces, &n, err))
        return NN_ERR;
    int rc = NN_OK;
    for (size_t p = 0; p < n && rc == NN_OK; p++) {
        if (pieces[p].id >= 0)
            rc = nn_ids_push(out, pieces[p].id, err);
        else if (pieces[p].b > pieces[p].a)
            rc = encode_text(t, text + pieces[p].a, pieces[p].b - pieces[p].a, pieces[p].a == 0,
                             out, err);
    }
    nn_free(pieces);
    if (rc == NN_OK && add_special)
        for (int i = 0; i < t->n_suffix && rc == NN_OK; i++)
            rc = nn_ids_push(out, t->suffix[i], err);
    return rc;
}

/* ---- Decoding ---------------------------------------------------------------------------------
 */

typedef struct strlist {
    buf *s;
    size_t n, cap;
} strlist;

static void strlist_free(strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        buf_free(&l->s[i]);
    nn_free(l->s);
    memset(l, 0, sizeof *l);
}

static int strlist_add(strlist *l, const char *s, size_t n, nn_err *err)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 32;
        buf *g = nn_realloc(l->s, cap * sizeof *g, err);
        if (!g)
            return NN_ERR;
        l->s = g;
        l->cap = cap;
    }
    memset(&l->s[l->n], 0, sizeof(buf));
    if (buf_add(&l->s[l->n], s, n, err))
        return NN_ERR;
    l->n++;
    return NN_OK;
}

static int byte_token(const buf *b)
{
    if (b->len != 6 || memcmp(b->p, "<0x", 3) != 0 || b->p[5] != '>')
        return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = b->p[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                       : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

static int flush_bytes(strlist *out, buf *bytes, nn_err *err)
{
    if (!bytes->len)
        return NN_OK;
    int rc = NN_OK;
    if (nn_utf8_validate(bytes->p, bytes->len) == bytes->len)
        rc = strlist_add(out, bytes->p, bytes->len, err);
    else
        for (size_t i = 0; i < bytes->len && rc == NN_OK; i++)
            rc = strlist_add(out, "\xEF\xBF\xBD", 3, err);
    bytes->len = 0;
    return rc;
}

static int decode_step(const nn_tokenizer *t, const step *st, strlist *in, strlist *out,
                       nn_err *err)
{
    spans m = {0};
    buf acc = {0};
    int rc = NN_ERR;
    switch (st->kind) {
    case DEC_REPLACE:
        for (size_t i = 0; i < in->n; i++) {
            acc.len = 0;
            if (literal_matches(st->a, st->a_len, in->s[i].p, in->s[i].len, &m, err) ||
                replace_all(in->s[i].p, in->s[i].len, &m, st->b, st->b_len, &acc, err) ||
                strlist_add(out, acc.p ? acc.p : "", acc.len, err))
                goto done;
        }
        break;
    case DEC_BYTEFALLBACK:
        for (size_t i = 0; i < in->n; i++) {
            int b = byte_token(&in->s[i]);
            if (b >= 0) {
                char c = (char)b;
                if (buf_add(&acc, &c, 1, err))
                    goto done;
                continue;
            }
            if (flush_bytes(out, &acc, err) || strlist_add(out, in->s[i].p, in->s[i].len, err))
                goto done;
        }
        if (flush_bytes(out, &acc, err))
            goto done;
        break;
    case DEC_FUSE:
        if (buf_add(&acc, "", 0, err))
            goto done;
        for (size_t i = 0; i < in->n; i++)
            if (buf_add(&acc, in->s[i].p, in->s[i].len, err))
                goto done;
        if (strlist_add(out, acc.p, acc.len, err))
            goto done;
        break;
    case DEC_STRIP:
        for (size_t i = 0; i < in->n; i++) {
            const char *s = in->s[i].p;
            size_t a = 0, b = in->s[i].len;
            for (int k = 0;
                 k < st->start && b - a >= st->a_len && memcmp(s + a, st->a, st->a_len) == 0; k++)
                a += st->a_len;
            for (int k = 0; k < st->stop && b - a >= st->a_len &&
                            memcmp(s + b - st->a_len, st->a, st->a_len) == 0;
                 k++)
                b -= st->a_len;
            if (strlist_add(out, s + a, b - a, err))
                goto done;
        }
        break;
    case DEC_BYTELEVEL:
        if (buf_add(&acc, "", 0, err))
            goto done;
        for (size_t i = 0; i < in->n; i++) {
            const char *s = in->s[i].p;
            size_t len = in->s[i].len, start = acc.len;
            bool all = true;
            for (size_t k = 0; k < len;) {
                int n = nn_utf8_char_len((const unsigned char *)s + k, len - k);
                uint32_t cp = n ? utf8_decode(s + k, n) : 0xFFFF;
                if (!n || cp >= 324 || t->cp_to_byte[cp] < 0) {
                    all = false;
                    break;
                }
                char c = (char)t->cp_to_byte[cp];
                if (buf_add(&acc, &c, 1, err))
                    goto done;
                k += (size_t)n;
            }
            if (!all) { /* a token outside the byte map is kept as its own UTF-8 */
                acc.len = start;
                if (buf_add(&acc, s, len, err))
                    goto done;
            }
        }
        {
            buf lossy = {0};
            int r = buf_add(&lossy, "", 0, err) || add_lossy(&lossy, acc.p, acc.len, err) ||
                    strlist_add(out, lossy.p, lossy.len, err);
            buf_free(&lossy);
            if (r)
                goto done;
        }
        break;
    case DEC_METASPACE:
        for (size_t i = 0; i < in->n; i++) {
            acc.len = 0;
            if (buf_add(&acc, "", 0, err))
                goto done;
            const char *s = in->s[i].p;
            size_t len = in->s[i].len;
            for (size_t k = 0; k < len;) {
                if (len - k >= st->a_len && memcmp(s + k, st->a, st->a_len) == 0) {
                    if (!(i == 0 && st->prepend_scheme != PREPEND_NEVER) &&
                        buf_add(&acc, " ", 1, err))
                        goto done;
                    k += st->a_len;
                } else {
                    if (buf_add(&acc, s + k, 1, err))
                        goto done;
                    k++;
                }
            }
            if (strlist_add(out, acc.p, acc.len, err))
                goto done;
        }
        break;
    }
    rc = NN_OK;
done:
    nn_free(m.v);
    buf_free(&acc);
    return rc;
}

static int decode_llama2c(const nn_tokenizer *t, const int32_t *ids, size_t n, buf *out,
                          nn_err *err)
{
    buf raw = {0};
    int rc = buf_add(&raw, "", 0, err);
    for (size_t i = 0; i < n && rc == NN_OK; i++) {
        if (ids[i] == 1 || ids[i] == 2)
            continue; /* run.c prints neither BOS nor EOS */
        size_t len = 0;
        const char *p = nn_tokenizer_piece(t, ids[i], &len);
        if (i > 0 && ids[i - 1] == 1 && len && p[0] == ' ') {
            p++;
            len--;
        }
        buf b = {.p = (char *)p, .len = len};
        int byte = byte_token(&b);
        if (byte >= 0) {
            char c = (char)byte;
            rc = buf_add(&raw, &c, 1, err);
        } else {
            rc = buf_add(&raw, p, len, err);
        }
    }
    if (rc == NN_OK)
        rc = buf_add(out, "", 0, err) || add_lossy(out, raw.p, raw.len, err);
    buf_free(&raw);
    return rc;
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
    int rc = NN_ERR;
    strlist a = {0}, b = {0};
    if (t->kind == KIND_LLAMA2C) {
        if (decode_llama2c(t, ids, n, &result, err))
            goto done;
        rc = NN_OK;
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        if (skip_special && t->special[ids[i]])
            continue;
        size_t len = 0;
        const char *p = nn_tokenizer_piece(t, ids[i], &len);
        if (strlist_add(&a, p, len, err))
            goto done;
    }
    strlist *cur = &a, *next = &b;
    for (size_t i = 0; i < t->n_dec; i++) {
        if (decode_step(t, &t->dec[i], cur, next, err))
            goto done;
        strlist *tmp = cur;
        strlist_free(cur);
        cur = next;
        next = tmp;
    }
    if (buf_add(&result, "", 0, err))
        goto done;
    for (size_t i = 0; i < cur->n; i++)
        if ((t->n_dec == 0 && i > 0 && buf_add(&result, " ", 1, err)) ||
            buf_add(&result, cur->s[i].p, cur->s[i].len, err))
            goto done;
    rc = NN_OK;
done:
    strlist_free(&a);
    strlist_free(&b);
    if (rc == NN_OK)
        *out = result.p;
    else
        buf_free(&result);
    return rc;
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
