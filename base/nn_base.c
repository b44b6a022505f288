#define _GNU_SOURCE
#include "nn_base.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int nn_fail(nn_err *err, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return NN_ERR;
}

int nn_err_prefix(nn_err *err, const char *fmt, ...)
{
    if (!err)
        return NN_ERR;
    char prefix[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    size_t plen = strlen(prefix), mlen = strlen(err->msg);
    if (plen + 2 >= sizeof err->msg)
        plen = sizeof err->msg - 3;
    if (plen + 2 + mlen >= sizeof err->msg)
        mlen = sizeof err->msg - plen - 3;
    memmove(err->msg + plen + 2, err->msg, mlen);
    memcpy(err->msg, prefix, plen);
    err->msg[plen] = ':';
    err->msg[plen + 1] = ' ';
    err->msg[plen + 2 + mlen] = '\0';
    return NN_ERR;
}

static long alloc_fail_countdown; /* 0: never fail */
static long alloc_count;

long nn_alloc_fail_after(long n)
{
    long made = alloc_count;
    alloc_count = 0;
    alloc_fail_countdown = n;
    return made;
}

static bool injected_failure(void)
{
    alloc_count++;
    if (alloc_fail_countdown > 0 && --alloc_fail_countdown == 0)
        return true;
    return false;
}

void *nn_malloc(size_t size, nn_err *err)
{
    void *p = injected_failure() ? NULL : malloc(size ? size : 1);
    if (!p)
        nn_fail(err, "out of memory allocating %zu bytes", size);
    return p;
}

void *nn_calloc(size_t count, size_t size, nn_err *err)
{
    size_t total;
    if (!nn_mul_size(count, size, &total)) {
        nn_fail(err, "allocation of %zu x %zu bytes overflows", count, size);
        return NULL;
    }
    void *p = injected_failure() ? NULL : calloc(total ? total : 1, 1);
    if (!p)
        nn_fail(err, "out of memory allocating %zu bytes", total);
    return p;
}

void *nn_realloc(void *ptr, size_t size, nn_err *err)
{
    void *p = injected_failure() ? NULL : realloc(ptr, size ? size : 1);
    if (!p)
        nn_fail(err, "out of memory allocating %zu bytes", size);
    return p;
}

char *nn_strdup(const char *s, nn_err *err)
{
    size_t n = strlen(s) + 1;
    char *p = nn_malloc(n, err);
    if (p)
        memcpy(p, s, n);
    return p;
}

void nn_free(void *ptr)
{
    free(ptr);
}

bool nn_mul_size(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a)
        return false;
    *out = a * b;
    return true;
}

int nn_file_map(const char *path, nn_mapped_file *out, nn_err *err)
{
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return nn_fail(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return nn_fail(err, "%s: cannot stat: %s", path, strerror(errno));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return nn_fail(err, "%s: not a regular file", path);
    }
    out->path = nn_strdup(path, err);
    if (!out->path) {
        close(fd);
        return NN_ERR;
    }
    out->size = (size_t)st.st_size;
    if (out->size > 0) {
        void *p = mmap(NULL, out->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            close(fd);
            nn_free(out->path);
            out->path = NULL;
            return nn_fail(err, "%s: cannot map: %s", path, strerror(errno));
        }
        out->data = p;
    }
    close(fd);
    return NN_OK;
}

void nn_file_unmap(nn_mapped_file *file)
{
    if (!file)
        return;
    if (file->data && file->size)
        munmap((void *)file->data, file->size);
    nn_free(file->path);
    memset(file, 0, sizeof *file);
}

void nn_file_release(const nn_mapped_file *file, size_t offset, size_t len)
{
    if (!file || !file->data || offset >= file->size)
        return;
    if (len > file->size - offset)
        len = file->size - offset;
    /* advice only: a failure leaves the pages resident, which is still correct */
    (void)madvise((void *)(file->data + offset), len, MADV_DONTNEED);
}

int nn_file_read(const char *path, size_t max_size, char **out, size_t *out_size, nn_err *err)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return nn_fail(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return nn_fail(err, "%s: not a regular file", path);
    }
    if ((size_t)st.st_size > max_size) {
        fclose(f);
        return nn_fail(err, "%s: file of %lld bytes exceeds the limit of %zu bytes", path,
                       (long long)st.st_size, max_size);
    }
    size_t size = (size_t)st.st_size;
    char *buf = nn_malloc(size + 1, err);
    if (!buf) {
        fclose(f);
        return NN_ERR;
    }
    if (size && fread(buf, 1, size, f) != size) {
        fclose(f);
        nn_free(buf);
        return nn_fail(err, "%s: read error", path);
    }
    fclose(f);
    buf[size] = '\0';
    *out = buf;
    if (out_size)
        *out_size = size;
    return NN_OK;
}

bool nn_path_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bool nn_path_is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

char *nn_path_join(const char *dir, const char *name, nn_err *err)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = nn_malloc(a + b + 2, err);
    if (!p)
        return NULL;
    memcpy(p, dir, a);
    size_t n = a;
    if (a && dir[a - 1] != '/')
        p[n++] = '/';
    memcpy(p + n, name, b + 1);
    return p;
}

double nn_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int nn_grow_floats(float **buf, size_t *cap, size_t need, nn_err *err)
{
    if (need <= *cap)
        return NN_OK;
    float *p = nn_realloc(*buf, need * sizeof(float), err);
    if (!p)
        return NN_ERR;
    *buf = p;
    *cap = need;
    return NN_OK;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double nn_median_in_place(double *x, size_t n)
{
    qsort(x, n, sizeof *x, cmp_double);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

int nn_utf8_char_len(const unsigned char *s, size_t avail)
{
    if (avail == 0)
        return 0;
    unsigned char c = s[0];
    int n;
    uint32_t cp, min;
    if (c < 0x80)
        return 1;
    if ((c & 0xE0) == 0xC0) {
        n = 2;
        cp = c & 0x1F;
        min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        n = 3;
        cp = c & 0x0F;
        min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        n = 4;
        cp = c & 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    if ((size_t)n > avail)
        return 0;
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

int nn_utf8_encode(uint32_t cp, char *out)
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

size_t nn_utf8_validate(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        int n = nn_utf8_char_len((const unsigned char *)s + i, len - i);
        if (!n)
            return i;
        i += (size_t)n;
    }
    return len;
}
