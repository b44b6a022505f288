#include "strmap.h"

#include <string.h>

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h ^ (h >> 29);
}

void nn_strmap_free(nn_strmap *m)
{
    if (!m)
        return;
    nn_free(m->slots);
    nn_free(m->key_off);
    nn_free(m->key_len);
    nn_free(m->value);
    nn_free(m->arena);
    memset(m, 0, sizeof *m);
}

void nn_strmap_clear(nn_strmap *m)
{
    if (m->slots)
        memset(m->slots, 0, m->cap * sizeof *m->slots);
    m->count = 0;
    m->arena_len = 0;
}

static size_t find_slot(const nn_strmap *m, const char *key, size_t len, bool *found)
{
    size_t mask = m->cap - 1, i = (size_t)hash_bytes(key, len) & mask;
    for (;;) {
        uint32_t e = m->slots[i];
        if (e == 0) {
            *found = false;
            return i;
        }
        e--;
        if (m->key_len[e] == len && memcmp(m->arena + m->key_off[e], key, len) == 0) {
            *found = true;
            return i;
        }
        i = (i + 1) & mask;
    }
}

static int rehash(nn_strmap *m, size_t cap, nn_err *err)
{
    uint32_t *slots = nn_calloc(cap, sizeof *slots, err);
    if (!slots)
        return NN_ERR;
    nn_free(m->slots);
    m->slots = slots;
    m->cap = cap;
    for (size_t e = 0; e < m->count; e++) {
        bool found;
        size_t i = find_slot(m, m->arena + m->key_off[e], m->key_len[e], &found);
        m->slots[i] = (uint32_t)(e + 1);
    }
    return NN_OK;
}

int nn_strmap_put(nn_strmap *m, const char *key, size_t len, int32_t value, nn_err *err)
{
    if (len > UINT32_MAX)
        return nn_fail(err, "string key too long");
    if ((m->count + 1) * 2 > m->cap && rehash(m, m->cap ? m->cap * 2 : 64, err))
        return NN_ERR;
    bool found;
    size_t i = find_slot(m, key, len, &found);
    if (found) {
        m->value[m->slots[i] - 1] = value;
        return NN_OK;
    }
    if (m->count == m->entries_cap) {
        size_t cap = m->entries_cap ? m->entries_cap * 2 : 64;
        size_t *off = nn_realloc(m->key_off, cap * sizeof *off, err);
        if (!off)
            return NN_ERR;
        m->key_off = off;
        uint32_t *kl = nn_realloc(m->key_len, cap * sizeof *kl, err);
        if (!kl)
            return NN_ERR;
        m->key_len = kl;
        int32_t *v = nn_realloc(m->value, cap * sizeof *v, err);
        if (!v)
            return NN_ERR;
        m->value = v;
        m->entries_cap = cap;
    }
    if (!m->arena || m->arena_len + len > m->arena_cap) { /* allocated even for empty keys */
        size_t cap = m->arena_cap ? m->arena_cap * 2 : 4096;
        while (cap < m->arena_len + len)
            cap *= 2;
        char *a = nn_realloc(m->arena, cap, err);
        if (!a)
            return NN_ERR;
        m->arena = a;
        m->arena_cap = cap;
    }
    memcpy(m->arena + m->arena_len, key, len);
    m->key_off[m->count] = m->arena_len;
    m->key_len[m->count] = (uint32_t)len;
    m->value[m->count] = value;
    m->arena_len += len;
    m->count++;
    m->slots[i] = (uint32_t)m->count;
    return NN_OK;
}

bool nn_strmap_get(const nn_strmap *m, const char *key, size_t len, int32_t *value)
{
    if (!m->cap)
        return false;
    bool found;
    size_t i = find_slot(m, key, len, &found);
    if (found)
        *value = m->value[m->slots[i] - 1];
    return found;
}

static uint64_t pair_key(int32_t a, int32_t b)
{
    return ((uint64_t)(uint32_t)(a + 1) << 32) | (uint32_t)(b + 1);
}

static size_t pair_slot(const nn_pairmap *m, uint64_t key)
{
    /* Fibonacci hashing: the product's top bits mix every bit of both ids (low bits would
     * ignore most of the first id and make misses probe long runs). */
    uint64_t h = key * 0x9E3779B97F4A7C15ULL;
    size_t mask = m->cap - 1,
           i = (size_t)(h >> (64 - __builtin_ctzll((unsigned long long)m->cap))) & mask;
    while (m->keys[i] && m->keys[i] != key)
        i = (i + 1) & mask;
    return i;
}

void nn_pairmap_free(nn_pairmap *m)
{
    if (!m)
        return;
    nn_free(m->keys);
    nn_free(m->rank);
    nn_free(m->merged);
    memset(m, 0, sizeof *m);
}

int nn_pairmap_put(nn_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t merged, nn_err *err)
{
    if ((m->count + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 1024;
        nn_pairmap grown = {.cap = cap};
        if (!(grown.keys = nn_calloc(cap, sizeof *grown.keys, err)) ||
            !(grown.rank = nn_calloc(cap, sizeof *grown.rank, err)) ||
            !(grown.merged = nn_calloc(cap, sizeof *grown.merged, err))) {
            nn_pairmap_free(&grown);
            return NN_ERR;
        }
        for (size_t i = 0; i < m->cap; i++)
            if (m->keys[i]) {
                size_t j = pair_slot(&grown, m->keys[i]);
                grown.keys[j] = m->keys[i];
                grown.rank[j] = m->rank[i];
                grown.merged[j] = m->merged[i];
            }
        grown.count = m->count;
        nn_pairmap_free(m);
        *m = grown;
    }
    uint64_t key = pair_key(a, b);
    size_t i = pair_slot(m, key);
    if (!m->keys[i]) {
        m->keys[i] = key;
        m->count++;
    } else if (m->rank[i] <= rank) {
        return NN_OK; /* a repeated merge keeps its first (highest-priority) rank */
    }
    m->rank[i] = rank;
    m->merged[i] = merged;
    return NN_OK;
}

bool nn_pairmap_get(const nn_pairmap *m, int32_t a, int32_t b, int32_t *rank, int32_t *merged)
{
    if (!m->cap)
        return false;
    size_t i = pair_slot(m, pair_key(a, b));
    if (!m->keys[i])
        return false;
    *rank = m->rank[i];
    *merged = m->merged[i];
    return true;
}
