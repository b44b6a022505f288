/* Internal to the tokenizer: what engine/tokenizer*.c share (never included outside them).
 * tokenizer.c holds the public API and the shared vocabulary, tokenizer_hf.c loads tokenizer.json,
 * tokenizer_encode.c the Hugging Face encode pipeline, tokenizer_bpe.c the BPE model,
 * tokenizer_decode.c the decoders, tokenizer_llama2c.c llama2.c's tokenizer.bin. */
#ifndef NN_TOKENIZER_INTERNAL_H
#define NN_TOKENIZER_INTERNAL_H

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

static inline int buf_reserve(buf *b, size_t extra, nn_err *err)
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

static inline int buf_add(buf *b, const void *s, size_t n, nn_err *err)
{
    if (buf_reserve(b, n, err))
        return NN_ERR;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return NN_OK;
}

static inline void buf_free(buf *b)
{
    nn_free(b->p);
    memset(b, 0, sizeof *b);
}

static inline uint32_t utf8_decode(const char *s, int n)
{
    const unsigned char *u = (const unsigned char *)s;
    if (n == 1)
        return u[0];
    uint32_t cp = u[0] & (0x7F >> n);
    for (int i = 1; i < n; i++)
        cp = (cp << 6) | (u[i] & 0x3F);
    return cp;
}

/* ---- The tokenizer ----------------------------------------------------------------------------
 */

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

/* What differs between the tokenizer kinds, one row each: tok_kind_hf (tokenizer_hf.c) and
 * tok_kind_llama2c (tokenizer_llama2c.c). nn_tokenizer_encode/_decode validate, then call these. */
typedef struct tok_kind {
    const char *name;
    int (*encode)(nn_tokenizer *t, const char *text, size_t len, bool add_special, nn_ids *out,
                  nn_err *err);
    /* appends the text to out (which it leaves NUL-terminated, even when empty) */
    int (*decode)(const nn_tokenizer *t, const int32_t *ids, size_t n, bool skip_special, buf *out,
                  nn_err *err);
} tok_kind;

extern const tok_kind tok_kind_hf, tok_kind_llama2c;

struct nn_tokenizer {
    const tok_kind *kind;
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

typedef struct span {
    size_t a, b;
} span;

typedef struct spans {
    span *v;
    size_t n, cap;
} spans;

/* tokenizer.c: records piece `id` as s[0 .. len) in the arena */
int tok_set_piece(nn_tokenizer *t, buf *arena, int32_t id, const char *s, size_t len, nn_err *err);
/* tokenizer_hf.c */
int tok_load_hf(nn_tokenizer *t, const char *path, const char *config_path, nn_err *err);
/* tokenizer_encode.c: the pattern matching that normalizers, pre-tokenizers and decoders share */
int tok_literal_matches(const char *pat, size_t plen, const char *s, size_t len, spans *out,
                        nn_err *err);
int tok_replace_all(const char *s, size_t len, const spans *m, const char *with, size_t wlen,
                    buf *out, nn_err *err);
int tok_encode_hf(nn_tokenizer *t, const char *text, size_t len, bool add_special, nn_ids *out,
                  nn_err *err);
/* tokenizer_bpe.c */
int tok_bpe_word(nn_tokenizer *t, const char *w, size_t len, nn_ids *out, nn_err *err);
/* tokenizer_decode.c */
int tok_add_lossy(buf *b, const char *s, size_t n, nn_err *err);
int tok_byte_token(const buf *b);
int tok_decode_hf(const nn_tokenizer *t, const int32_t *ids, size_t n, bool skip_special, buf *out,
                  nn_err *err);
/* tokenizer_llama2c.c */
int tok_load_llama2c(nn_tokenizer *t, const char *path, nn_err *err);

#endif
