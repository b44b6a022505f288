/* The BPE model on one word: merges by rank with a heap, byte fallback, unk fusing, ignore_merges,
 * and a word -> ids cache. */
#include "tokenizer_internal.h"

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
int tok_bpe_word(nn_tokenizer *t, const char *w, size_t len, nn_ids *out, nn_err *err)
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
