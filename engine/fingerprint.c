#include "fingerprint.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn_json.h"

static inline uint64_t rotl(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

static const uint64_t K1 = 0x9E3779B185EBCA87ull, K2 = 0xC2B2AE3D27D4EB4Full;

static inline uint64_t mix(uint64_t acc, uint64_t w)
{
    return rotl(acc + w * K2, 31) * K1;
}

static inline uint64_t load64(const unsigned char *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

/* The hash's state over 32-byte blocks, so that a file can be hashed window by window. */
typedef struct hash_state {
    uint64_t a, b, c, d;
} hash_state;

static hash_state hash_begin(uint64_t seed)
{
    return (hash_state){seed + K1 + K2, seed + K2, seed, seed - K1};
}

static void hash_blocks(hash_state *s, const unsigned char *p, size_t n_blocks)
{
    for (size_t i = 0; i < n_blocks * 32; i += 32) {
        s->a = mix(s->a, load64(p + i));
        s->b = mix(s->b, load64(p + i + 8));
        s->c = mix(s->c, load64(p + i + 16));
        s->d = mix(s->d, load64(p + i + 24));
    }
}

/* The last n % 32 bytes (tail) and the total length n. */
static uint64_t hash_end(const hash_state *s, const unsigned char *tail, size_t n)
{
    uint64_t h = rotl(s->a, 1) + rotl(s->b, 7) + rotl(s->c, 12) + rotl(s->d, 18) + (uint64_t)n;
    size_t i = 0, rest = n % 32;
    for (; i + 8 <= rest; i += 8)
        h = mix(h, load64(tail + i));
    for (; i < rest; i++)
        h = mix(h, tail[i]);
    h ^= h >> 33;
    h *= K2;
    h ^= h >> 29;
    h *= K1;
    return h ^ (h >> 32);
}

uint64_t nn_hash64(const void *data, size_t n, uint64_t seed)
{
    const unsigned char *p = data;
    hash_state s = hash_begin(seed);
    hash_blocks(&s, p, n / 32);
    return hash_end(&s, p ? p + n / 32 * 32 : p, n);
}

int nn_file_fingerprint(const char *path, char *out, size_t cap, nn_err *err)
{
    nn_mapped_file file;
    if (nn_file_map(path, &file, err))
        return NN_ERR;
    /* Window by window, each dropped from the resident set once hashed: rank 0 hashes every
     * shard of the checkpoint, and with the whole mapping resident its peak RSS grew by the
     * largest shard (4.4 GB on the 8B-shaped checkpoint), far above its pipeline stage's share. */
    enum { WINDOW = 64 << 20 }; /* a multiple of 32 bytes and of the page size */
    hash_state s = hash_begin(0);
    size_t blocks = file.size / 32;
    for (size_t off = 0; off < blocks * 32; off += WINDOW) {
        size_t len = blocks * 32 - off < WINDOW ? blocks * 32 - off : WINDOW;
        hash_blocks(&s, file.data + off, len / 32);
        nn_file_release(&file, off, len);
    }
    uint64_t h = hash_end(&s, file.data ? file.data + blocks * 32 : file.data, file.size);
    snprintf(out, cap, "%zu:%016llx", file.size, (unsigned long long)h);
    nn_file_unmap(&file);
    return NN_OK;
}

static bool is_weights_file(const char *name)
{
    size_t n = strlen(name), k = strlen(".safetensors");
    return n > k && !strcmp(name + n - k, ".safetensors");
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

char *nn_weights_fingerprint(const char *resolved_path, nn_err *err)
{
    cJSON *obj = cJSON_CreateObject();
    char **names = NULL;
    size_t n = 0, cap = 0;
    char *json = NULL, *copy = NULL;
    bool ok = obj != NULL;
    if (ok && !nn_path_is_dir(resolved_path)) {
        char fp[64];
        const char *base = strrchr(resolved_path, '/');
        ok = nn_file_fingerprint(resolved_path, fp, sizeof fp, err) == NN_OK &&
             cJSON_AddStringToObject(obj, base ? base + 1 : resolved_path, fp);
    } else if (ok) {
        DIR *dir = opendir(resolved_path);
        struct dirent *e;
        if (!dir) {
            nn_fail(err, "%s: cannot list the checkpoint directory", resolved_path);
            ok = false;
        }
        while (ok && (e = readdir(dir))) {
            if (!is_weights_file(e->d_name))
                continue;
            if (n == cap) {
                char **g = nn_realloc(names, (cap = cap ? 2 * cap : 16) * sizeof *names, err);
                if (!g) {
                    ok = false;
                    break;
                }
                names = g;
            }
            if (!(names[n] = nn_strdup(e->d_name, err)))
                ok = false;
            else
                n++;
        }
        if (dir)
            closedir(dir);
        if (ok)
            qsort(names, n, sizeof *names, by_name);
        for (size_t i = 0; ok && i < n; i++) {
            char fp[64], *path = nn_path_join(resolved_path, names[i], err);
            ok = path && nn_file_fingerprint(path, fp, sizeof fp, err) == NN_OK &&
                 cJSON_AddStringToObject(obj, names[i], fp);
            nn_free(path);
        }
    }
    if (ok && !(json = cJSON_PrintUnformatted(obj))) {
        nn_fail(err, "out of memory");
        ok = false;
    }
    if (ok)
        copy = nn_strdup(json, err);
    cJSON_free(json);
    for (size_t i = 0; i < n; i++)
        nn_free(names[i]);
    nn_free(names);
    cJSON_Delete(obj);
    return copy;
}

char *nn_snapshot_revision(const char *resolved_path, nn_err *err)
{
    const char *s = strstr(resolved_path, "/snapshots/");
    if (!s)
        return NULL;
    s += strlen("/snapshots/");
    size_t n = strcspn(s, "/");
    char *rev = nn_malloc(n + 1, err);
    if (rev) {
        memcpy(rev, s, n);
        rev[n] = '\0';
    }
    return rev;
}
