/* An open-addressing hash map from byte strings to int32 values. Keys are copied into the map's
 * own arena. Used for vocabularies (piece -> id) and the tokenizer's word cache. */
#ifndef NN_STRMAP_H
#define NN_STRMAP_H

#include "nn_base.h"

typedef struct nn_strmap {
    uint32_t *slots; /* [cap]: entry index + 1, 0 = empty */
    size_t cap, count;
    size_t *key_off; /* [count] offset of each key in arena */
    uint32_t *key_len;
    int32_t *value;
    size_t entries_cap;
    char *arena;
    size_t arena_len, arena_cap;
} nn_strmap;

void nn_strmap_free(nn_strmap *m);
/* Inserts or overwrites. */
int nn_strmap_put(nn_strmap *m, const char *key, size_t len, int32_t value, nn_err *err);
/* Returns true and sets *value when found. */
bool nn_strmap_get(const nn_strmap *m, const char *key, size_t len, int32_t *value);
void nn_strmap_clear(nn_strmap *m);

/* A hash map from (int32, int32) pairs to two int32 values (BPE merges: rank, merged id). */
typedef struct nn_pairmap {
    uint64_t *keys; /* 0 = empty; key = ((a+1) << 32) | (b+1) */
    int32_t *rank, *merged;
    size_t cap, count;
} nn_pairmap;

void nn_pairmap_free(nn_pairmap *m);
int nn_pairmap_put(nn_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t merged, nn_err *err);
bool nn_pairmap_get(const nn_pairmap *m, int32_t a, int32_t b, int32_t *rank, int32_t *merged);

#endif
