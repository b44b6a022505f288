/* nn_base: the few helpers every nnterp module shares — an error type, checked allocation,
 * read-only file mapping and JSON helpers. Depends on nothing above it.
 *
 * Error convention: a function that can fail returns int (0 = success, NN_ERR = failure) and fills
 * a caller-owned nn_err with a message naming the file and the field. Library code never prints
 * and never exits. */
#ifndef NN_BASE_H
#define NN_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Marks a function of the public API. The shared library exports nn_* (engine/libnnterp.map); the
 * macro makes the intent explicit and, built with -fvisibility=hidden, is what exports a symbol. */
#if defined(_WIN32)
#define NNTERP_API __declspec(dllexport)
#elif defined(__GNUC__)
#define NNTERP_API __attribute__((visibility("default")))
#else
#define NNTERP_API
#endif

#define NN_OK 0
#define NN_ERR (-1)

typedef struct nn_err {
    char msg[1024];
} nn_err;

/* Sets err's message (printf-style) and returns NN_ERR, so `return nn_fail(err, ...)` reads well.
 * err may be NULL. */
int nn_fail(nn_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prepends "prefix: " to an existing message (adds context while an error travels up). */
int nn_err_prefix(nn_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Checked allocation. Every allocation of nnterp goes through these so that a test build can fail
 * the Nth one (nn_alloc_fail_after). On failure they set err and return NULL. */
void *nn_malloc(size_t size, nn_err *err);
void *nn_calloc(size_t count, size_t size, nn_err *err);
void *nn_realloc(void *ptr, size_t size, nn_err *err);
char *nn_strdup(const char *s, nn_err *err);
void nn_free(void *ptr);
/* Test hook: the n-th allocation from now (1 = the next) fails; 0 disables. Returns how many
 * allocations were made since the last call. */
long nn_alloc_fail_after(long n);

/* a * b without overflow; false if it overflows. */
bool nn_mul_size(size_t a, size_t b, size_t *out);

/* A file mapped read-only. Owner: the caller, released with nn_file_unmap. */
typedef struct nn_mapped_file {
    const uint8_t *data;
    size_t size;
    char *path;
} nn_mapped_file;

int nn_file_map(const char *path, nn_mapped_file *out, nn_err *err);
void nn_file_unmap(nn_mapped_file *file);
/* Drops the pages of [offset, offset + len) of a mapping from this process's resident set (the
 * page cache keeps them): a pass over a whole file then costs one window of RSS, not the file.
 * offset is a multiple of the page size; a read later maps the pages back in. */
void nn_file_release(const nn_mapped_file *file, size_t offset, size_t len);
/* Reads a whole file (at most max_size bytes) into a NUL-terminated buffer the caller frees. */
int nn_file_read(const char *path, size_t max_size, char **out, size_t *out_size, nn_err *err);
bool nn_path_is_dir(const char *path);
bool nn_path_is_file(const char *path);
/* dir + "/" + name into a new string. */
char *nn_path_join(const char *dir, const char *name, nn_err *err);

/* UTF-8: the byte length of the character at s (1..4), or 0 when it is not valid UTF-8
 * (overlong forms, surrogates and code points above U+10FFFF are invalid). */
int nn_utf8_char_len(const unsigned char *s, size_t avail);
/* The offset of the first invalid byte, or len when all of s is valid. */
size_t nn_utf8_validate(const char *s, size_t len);
/* Writes code point cp (at most U+10FFFF) as UTF-8 into out (room for 4 bytes); its length. */
int nn_utf8_encode(uint32_t cp, char *out);

/* Monotonic seconds. */
double nn_seconds(void);
/* Grows *buf to hold at least need floats (never shrinks; contents kept); *cap counts floats. */
int nn_grow_floats(float **buf, size_t *cap, size_t need, nn_err *err);
/* The median of x[0..n) (n >= 1; the mean of the middle two for even n), sorting x in place. */
double nn_median_in_place(double *x, size_t n);

#endif
