#include "safetensors.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn_json.h"

/* The safetensors reference implementation refuses headers above 100 MB. */
#define ST_MAX_HEADER (100u * 1024u * 1024u)

static const struct {
    const char *name;
    nn_dtype dtype;
    size_t size;
} dtypes[] = {
    {"F32", NN_DT_F32, 4}, {"F16", NN_DT_F16, 2},   {"BF16", NN_DT_BF16, 2}, {"F64", NN_DT_F64, 8},
    {"I64", NN_DT_I64, 8}, {"I32", NN_DT_I32, 4},   {"I16", NN_DT_I16, 2},   {"I8", NN_DT_I8, 1},
    {"U8", NN_DT_U8, 1},   {"BOOL", NN_DT_BOOL, 1},
};

const char *nn_dtype_name(nn_dtype dt)
{
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (dtypes[i].dtype == dt)
            return dtypes[i].name;
    return "?";
}

size_t nn_dtype_size(nn_dtype dt)
{
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (dtypes[i].dtype == dt)
            return dtypes[i].size;
    return 0;
}

static int cmp_tensor_name(const void *a, const void *b)
{
    return strcmp(((const nn_st_tensor *)a)->name, ((const nn_st_tensor *)b)->name);
}

static int cmp_tensor_offset(const void *a, const void *b)
{
    const nn_st_tensor *x = *(const nn_st_tensor *const *)a, *y = *(const nn_st_tensor *const *)b;
    return x->data < y->data ? -1 : x->data > y->data ? 1 : 0;
}

static void free_tensors(nn_st_tensor *t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        nn_free(t[i].name);
    nn_free(t);
}

/* Reads one header entry into t. */
static int parse_entry(const cJSON *item, const uint8_t *data_start, size_t data_size,
                       const char *path, nn_st_tensor *t, nn_err *err)
{
    const char *name = item->string;
    if (!cJSON_IsObject(item))
        return nn_fail(err, "%s: tensor '%s': header entry is not an object", path, name);
    const cJSON *dt = nn_json_get(item, "dtype");
    if (!cJSON_IsString(dt))
        return nn_fail(err, "%s: tensor '%s': field 'dtype' missing or not a string", path, name);
    size_t elem = 0;
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (strcmp(dt->valuestring, dtypes[i].name) == 0) {
            t->dtype = dtypes[i].dtype;
            elem = dtypes[i].size;
        }
    if (!elem)
        return nn_fail(err, "%s: tensor '%s': unsupported dtype '%s'", path, name, dt->valuestring);
    const cJSON *shape = nn_json_get(item, "shape");
    if (!cJSON_IsArray(shape))
        return nn_fail(err, "%s: tensor '%s': field 'shape' missing or not an array", path, name);
    int nd = cJSON_GetArraySize(shape);
    if (nd > NN_ST_MAX_DIMS)
        return nn_fail(err, "%s: tensor '%s': %d dimensions (at most %d supported)", path, name, nd,
                       NN_ST_MAX_DIMS);
    t->n_dims = nd;
    size_t numel = 1;
    int k = 0;
    const cJSON *dim;
    cJSON_ArrayForEach (dim, shape) {
        double v = dim->valuedouble;
        /* range first: converting a double beyond int64 is undefined */
        if (!cJSON_IsNumber(dim) || !(v >= 0 && v <= 9.0e15) || v != floor(v))
            return nn_fail(err, "%s: tensor '%s': shape[%d] is not a non-negative integer", path,
                           name, k);
        t->shape[k++] = (int64_t)v;
        if (!nn_mul_size(numel, (size_t)v, &numel))
            return nn_fail(err, "%s: tensor '%s': shape overflows", path, name);
    }
    t->numel = numel;
    size_t nbytes;
    if (!nn_mul_size(numel, elem, &nbytes))
        return nn_fail(err, "%s: tensor '%s': byte size overflows", path, name);
    const cJSON *off = nn_json_get(item, "data_offsets");
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2)
        return nn_fail(err, "%s: tensor '%s': field 'data_offsets' must be [begin, end]", path,
                       name);
    double b = cJSON_GetArrayItem(off, 0)->valuedouble, e = cJSON_GetArrayItem(off, 1)->valuedouble;
    if (!cJSON_IsNumber(cJSON_GetArrayItem(off, 0)) ||
        !cJSON_IsNumber(cJSON_GetArrayItem(off, 1)) || !(b >= 0 && b <= 9.0e15) ||
        !(e >= 0 && e <= 9.0e15) || b != floor(b) || e != floor(e))
        return nn_fail(err, "%s: tensor '%s': data_offsets are not non-negative integers", path,
                       name);
    if (b > e)
        return nn_fail(err, "%s: tensor '%s': data_offsets [%.0f, %.0f] end before they begin",
                       path, name, b, e);
    if (e > (double)data_size)
        return nn_fail(
            err,
            "%s: tensor '%s': data_offsets [%.0f, %.0f] run past the data section of %zu "
            "bytes (truncated file?)",
            path, name, b, e, data_size);
    size_t begin = (size_t)b, end = (size_t)e;
    if (end - begin != nbytes)
        return nn_fail(err,
                       "%s: tensor '%s': data_offsets cover %zu bytes but dtype %s x shape needs "
                       "%zu",
                       path, name, end - begin, dt->valuestring, nbytes);
    t->data = data_start + begin;
    t->n_bytes = nbytes;
    return NN_OK;
}

int nn_st_parse(const uint8_t *data, size_t size, const char *path, int file_index,
                nn_st_archive *out, nn_err *err)
{
    memset(out, 0, sizeof *out);
    if (size < 8)
        return nn_fail(err, "%s: file of %zu bytes is too short for a safetensors header", path,
                       size);
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--)
        header_len = (header_len << 8) | data[i];
    if (header_len > ST_MAX_HEADER)
        return nn_fail(err, "%s: declared header length %llu exceeds the 100 MB limit", path,
                       (unsigned long long)header_len);
    if (header_len > size - 8)
        return nn_fail(err,
                       "%s: declared header length %llu runs past the end of the file (%zu bytes)",
                       path, (unsigned long long)header_len, size);
    const char *json = (const char *)data + 8, *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, (size_t)header_len, &end, 0);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return nn_fail(err, "%s: header is not a JSON object", path);
    }
    /* The header may be padded with spaces; anything else after the object means the declared
     * length lies (and would shift every tensor's data). */
    size_t rest = (size_t)header_len - (size_t)(end - json);
    for (const char *p = end; p < json + header_len; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            cJSON_Delete(root);
            return nn_fail(err,
                           "%s: header has %zu bytes after its JSON object, not all spaces "
                           "(declared header length %llu)",
                           path, rest, (unsigned long long)header_len);
        }
    const uint8_t *data_start = data + 8 + header_len;
    size_t data_size = size - 8 - (size_t)header_len;

    size_t n = 0;
    const cJSON *item;
    cJSON_ArrayForEach (item, root)
        if (strcmp(item->string, "__metadata__") != 0)
            n++;
    nn_st_tensor *tensors = nn_calloc(n ? n : 1, sizeof *tensors, err);
    nn_st_tensor **by_offset = tensors ? nn_calloc(n ? n : 1, sizeof *by_offset, err) : NULL;
    if (!tensors || !by_offset) {
        nn_free(tensors);
        cJSON_Delete(root);
        return NN_ERR;
    }
    size_t k = 0;
    int rc = NN_OK;
    cJSON_ArrayForEach (item, root) {
        if (strcmp(item->string, "__metadata__") == 0) {
            if (!cJSON_IsObject(item)) {
                rc = nn_fail(err, "%s: '__metadata__' is not an object", path);
                break;
            }
            continue;
        }
        nn_st_tensor *t = &tensors[k];
        t->file_index = file_index;
        t->name = nn_strdup(item->string, err);
        if (!t->name) {
            rc = NN_ERR;
            break;
        }
        k++;
        if ((rc = parse_entry(item, data_start, data_size, path, t, err)) != NN_OK)
            break;
        by_offset[k - 1] = t;
    }
    cJSON_Delete(root);
    if (rc == NN_OK) {
        qsort(tensors, n, sizeof *tensors, cmp_tensor_name);
        for (size_t i = 0; i + 1 < n; i++)
            if (strcmp(tensors[i].name, tensors[i + 1].name) == 0) {
                rc = nn_fail(err, "%s: tensor '%s' appears twice in the header", path,
                             tensors[i].name);
                break;
            }
    }
    if (rc == NN_OK) {
        for (size_t i = 0; i < n; i++)
            by_offset[i] = &tensors[i];
        qsort(by_offset, n, sizeof *by_offset, cmp_tensor_offset);
        for (size_t i = 0; i + 1 < n; i++) {
            const nn_st_tensor *a = by_offset[i], *b = by_offset[i + 1];
            if (a->data + a->n_bytes > b->data && a->n_bytes && b->n_bytes) {
                rc = nn_fail(err, "%s: tensors '%s' and '%s' overlap in the data section", path,
                             a->name, b->name);
                break;
            }
        }
    }
    nn_free(by_offset);
    if (rc != NN_OK) {
        free_tensors(tensors, k);
        return rc;
    }
    out->tensors = tensors;
    out->n_tensors = n;
    return NN_OK;
}

int nn_st_open(const char *path, nn_st_archive *out, nn_err *err)
{
    memset(out, 0, sizeof *out);
    nn_mapped_file *files = nn_calloc(1, sizeof *files, err);
    if (!files)
        return NN_ERR;
    if (nn_file_map(path, &files[0], err) != NN_OK) {
        nn_free(files);
        return NN_ERR;
    }
    if (nn_st_parse(files[0].data, files[0].size, path, 0, out, err) != NN_OK) {
        nn_file_unmap(&files[0]);
        nn_free(files);
        return NN_ERR;
    }
    out->files = files;
    out->n_files = 1;
    return NN_OK;
}

void nn_st_close(nn_st_archive *a)
{
    if (!a)
        return;
    free_tensors(a->tensors, a->n_tensors);
    for (int i = 0; i < a->n_files; i++)
        nn_file_unmap(&a->files[i]);
    nn_free(a->files);
    memset(a, 0, sizeof *a);
}

/* Appends the tensors of part (file index f) to a, leaving part's arrays empty. */
static int merge_into(nn_st_archive *a, nn_st_archive *part, nn_err *err)
{
    nn_st_tensor *grown =
        nn_realloc(a->tensors, (a->n_tensors + part->n_tensors + 1) * sizeof *grown, err);
    if (!grown)
        return NN_ERR;
    a->tensors = grown;
    memcpy(a->tensors + a->n_tensors, part->tensors, part->n_tensors * sizeof *grown);
    a->n_tensors += part->n_tensors;
    nn_free(part->tensors);
    part->tensors = NULL;
    part->n_tensors = 0;
    return NN_OK;
}

static int open_sharded(const char *dir, const char *index_path, nn_st_archive *out, nn_err *err)
{
    cJSON *index = nn_json_parse_file(index_path, 64u << 20, err);
    if (!index)
        return NN_ERR;
    int rc = NN_ERR;
    char *shard_path = NULL;
    const cJSON *map = nn_json_get(index, "weight_map");
    if (!cJSON_IsObject(map)) {
        nn_fail(err, "%s: field 'weight_map' missing or not an object", index_path);
        goto done;
    }
    /* The distinct shard file names, in order of first appearance. */
    int n_map = cJSON_GetArraySize(map);
    const char **names = nn_calloc((size_t)n_map + 1, sizeof *names, err);
    if (!names)
        goto done;
    int n_files = 0;
    const cJSON *e;
    cJSON_ArrayForEach (e, map) {
        if (!cJSON_IsString(e)) {
            nn_fail(err, "%s: weight_map['%s'] is not a file name", index_path, e->string);
            goto free_names;
        }
        const char *f = e->valuestring;
        if (!*f || strchr(f, '/') || strcmp(f, "..") == 0 || strcmp(f, ".") == 0) {
            nn_fail(err,
                    "%s: weight_map['%s'] = '%s' is not a plain file name in the checkpoint "
                    "directory",
                    index_path, e->string, f);
            goto free_names;
        }
        int seen = 0;
        for (int i = 0; i < n_files; i++)
            seen |= strcmp(names[i], f) == 0;
        if (!seen)
            names[n_files++] = f;
    }
    if (n_files == 0) {
        nn_fail(err, "%s: weight_map is empty", index_path);
        goto free_names;
    }
    out->files = nn_calloc((size_t)n_files, sizeof *out->files, err);
    if (!out->files)
        goto free_names;
    for (int i = 0; i < n_files; i++) {
        shard_path = nn_path_join(dir, names[i], err);
        if (!shard_path || nn_file_map(shard_path, &out->files[i], err) != NN_OK)
            goto free_names;
        out->n_files = i + 1;
        nn_st_archive part;
        if (nn_st_parse(out->files[i].data, out->files[i].size, shard_path, i, &part, err) != NN_OK)
            goto free_names;
        int m = merge_into(out, &part, err);
        nn_st_close(&part);
        if (m != NN_OK)
            goto free_names;
        nn_free(shard_path);
        shard_path = NULL;
    }
    qsort(out->tensors, out->n_tensors, sizeof *out->tensors, cmp_tensor_name);
    for (size_t i = 0; i + 1 < out->n_tensors; i++)
        if (strcmp(out->tensors[i].name, out->tensors[i + 1].name) == 0) {
            nn_fail(err, "%s: tensor '%s' appears in two shards", index_path, out->tensors[i].name);
            goto free_names;
        }
    /* Every tensor the index names must be in the shard it names. */
    cJSON_ArrayForEach (e, map) {
        const nn_st_tensor *t = nn_st_find(out, e->string);
        if (!t) {
            nn_fail(err, "%s: tensor '%s' is listed in weight_map but absent from '%s'", index_path,
                    e->string, e->valuestring);
            goto free_names;
        }
        const char *holder = nn_st_file_of(out, t);
        const char *base = strrchr(holder, '/');
        base = base ? base + 1 : holder;
        if (strcmp(base, e->valuestring) != 0) {
            nn_fail(err, "%s: tensor '%s' is listed in '%s' but found in '%s'", index_path,
                    e->string, e->valuestring, base);
            goto free_names;
        }
    }
    rc = NN_OK;
free_names:
    nn_free(names);
done:
    nn_free(shard_path);
    cJSON_Delete(index);
    if (rc != NN_OK)
        nn_st_close(out);
    return rc;
}

int nn_st_open_dir(const char *dir, nn_st_archive *out, nn_err *err)
{
    memset(out, 0, sizeof *out);
    int rc;
    char *single = nn_path_join(dir, "model.safetensors", err);
    char *index = single ? nn_path_join(dir, "model.safetensors.index.json", err) : NULL;
    if (!index)
        rc = NN_ERR;
    else if (nn_path_is_file(single))
        rc = nn_st_open(single, out, err);
    else if (nn_path_is_file(index))
        rc = open_sharded(dir, index, out, err);
    else
        rc = nn_fail(err, "%s: no model.safetensors or model.safetensors.index.json", dir);
    nn_free(single);
    nn_free(index);
    return rc;
}

const nn_st_tensor *nn_st_find(const nn_st_archive *a, const char *name)
{
    size_t lo = 0, hi = a->n_tensors;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(a->tensors[mid].name, name);
        if (c == 0)
            return &a->tensors[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const char *nn_st_file_of(const nn_st_archive *a, const nn_st_tensor *t)
{
    if (t->file_index >= 0 && t->file_index < a->n_files)
        return a->files[t->file_index].path;
    return "(memory)";
}

int nn_st_to_f32(const nn_st_tensor *t, float *out, nn_err *err)
{
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case NN_DT_F32:
        memcpy(out, p, t->numel * 4);
        return NN_OK;
    case NN_DT_F16:
        for (size_t i = 0; i < t->numel; i++)
            out[i] = nn_f16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
        return NN_OK;
    case NN_DT_BF16:
        for (size_t i = 0; i < t->numel; i++)
            out[i] = nn_bf16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
        return NN_OK;
    default:
        return nn_fail(err, "tensor '%s': dtype %s cannot be used as weights (F32, F16 or BF16)",
                       t->name, nn_dtype_name(t->dtype));
    }
}
