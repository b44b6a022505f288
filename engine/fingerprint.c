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

uint64_t nn_hash64(const void *data, size_t n, uint64_t seed)
{
    const unsigned char *p = data;
    uint64_t a = seed + K1 + K2, b = seed + K2, c = seed, d = seed - K1;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a = mix(a, load64(p + i));
        b = mix(b, load64(p + i + 8));
        c = mix(c, load64(p + i + 16));
        d = mix(d, load64(p + i + 24));
    }
    uint64_t h = rotl(a, 1) + rotl(b, 7) + rotl(c, 12) + rotl(d, 18) + (uint64_t)n;
    for (; i + 8 <= n; i += 8)
        h = mix(h, load64(p + i));
    for (; i < n; i++)
        h = mix(h, p[i]);
    h ^= h >> 33;
    h *= K2;
    h ^= h >> 29;
    h *= K1;
    return h ^ (h >> 32);
}

int nn_file_fingerprint(const char *path, char *out, size_t cap, nn_err *err)
{
    nn_mapped_file file;
    if (nn_file_map(path, &file, err))
        return NN_ERR;
    uint64_t h = nn_hash64(file.data, file.size, 0);
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
