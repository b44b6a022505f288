/* Unicode general categories from engine/unicode_table.c, and the correction of PCRE2 patterns
 * whose properties PCRE2's own (older) tables would classify differently (see unicode.h). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "unicode.h"

#include <pcre2.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static const char *const CATEGORY_NAMES[NN_UCAT_COUNT] = {
    "Cn", "Cc", "Cf", "Co", "Cs", "Ll", "Lm", "Lo", "Lt", "Lu", "Mc", "Me", "Mn", "Nd", "Nl",
    "No", "Pc", "Pd", "Pe", "Pf", "Pi", "Po", "Ps", "Sc", "Sk", "Sm", "So", "Zl", "Zp", "Zs"};

enum nn_ucat nn_unicode_category(uint32_t cp)
{
    if (cp > 0x10FFFF)
        return NN_UCAT_CN;
    size_t lo = 0, hi = nn_unicode_table_runs; /* the last run starting at or before cp */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if ((nn_unicode_table[mid] >> 5) <= cp)
            lo = mid;
        else
            hi = mid;
    }
    return (enum nn_ucat)(nn_unicode_table[lo] & 31);
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

uint32_t nn_unicode_property_mask(const char *name, size_t len)
{
    /* PCRE2 (10.40 on) matches property names caselessly, ignoring spaces, '-' and '_'. */
    char key[8];
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (name[i] == ' ' || name[i] == '-' || name[i] == '_')
            continue;
        if (n == 2)
            return 0;
        key[n++] = lower(name[i]);
    }
    if (n == 1) {
        uint32_t mask = 0;
        for (int c = 0; c < NN_UCAT_COUNT; c++)
            if (lower(CATEGORY_NAMES[c][0]) == key[0])
                mask |= 1u << c;
        return mask;
    }
    if (n != 2)
        return 0;
    if (key[0] == 'l' && (key[1] == '&' || key[1] == 'c'))
        return 1u << NN_UCAT_LU | 1u << NN_UCAT_LL | 1u << NN_UCAT_LT;
    for (int c = 0; c < NN_UCAT_COUNT; c++)
        if (lower(CATEGORY_NAMES[c][0]) == key[0] && CATEGORY_NAMES[c][1] == key[1])
            return 1u << c;
    return 0;
}

/* ---- Where PCRE2's tables disagree with the table ---------------------------------------------
 * Computed once per process: every code point (surrogates aside, which valid UTF-8 never holds)
 * is classified by PCRE2 itself, with one anchored match per run of a category, and compared. */

typedef struct diff_run {
    uint32_t first, last;
    uint8_t pcre2_cat, table_cat;
} diff_run;

#define MAX_DIFF_RUNS 8192
static diff_run diffs[MAX_DIFF_RUNS];
static size_t n_diffs;
static bool diffs_ready;
static pthread_mutex_t diffs_lock = PTHREAD_MUTEX_INITIALIZER;

static int note_diff(uint32_t cp, int pcre2_cat, int table_cat, nn_err *err)
{
    diff_run *last = n_diffs ? &diffs[n_diffs - 1] : NULL;
    if (last && last->last + 1 == cp && last->pcre2_cat == pcre2_cat &&
        last->table_cat == table_cat) {
        last->last = cp;
        return NN_OK;
    }
    if (n_diffs == MAX_DIFF_RUNS)
        return nn_fail(err,
                       "PCRE2's Unicode tables differ from Unicode %s in more than %d runs of "
                       "code points: link a newer PCRE2",
                       nn_unicode_table_version, MAX_DIFF_RUNS);
    diffs[n_diffs++] = (diff_run){cp, cp, (uint8_t)pcre2_cat, (uint8_t)table_cat};
    return NN_OK;
}

/* Classifies the code points [first, last] (no surrogates) with PCRE2 and notes disagreements. */
static int compare_chunk(const pcre2_code *re, pcre2_match_data *md, uint32_t first, uint32_t last,
                         char *text, nn_err *err)
{
    size_t len = 0;
    for (uint32_t cp = first; cp <= last; cp++)
        len += (size_t)nn_utf8_encode(cp, text + len);
    uint32_t cp = first;
    for (size_t off = 0; off < len;) {
        int rc = pcre2_match(re, (PCRE2_SPTR)text, len, off, PCRE2_ANCHORED | PCRE2_NO_UTF_CHECK,
                             md, NULL);
        if (rc < 2)
            return nn_fail(err, "PCRE2 gives U+%04X no general category (match result %d)",
                           (unsigned)cp, rc);
        int pcre2_cat = rc - 2; /* the group that matched: categories in enum order */
        PCRE2_SIZE end = pcre2_get_ovector_pointer(md)[1];
        for (; off < end; off++) {
            if (((unsigned char)text[off] & 0xC0) == 0x80)
                continue;
            int table_cat = (int)nn_unicode_category(cp);
            if (table_cat != pcre2_cat && note_diff(cp, pcre2_cat, table_cat, err))
                return NN_ERR;
            cp++;
        }
    }
    return NN_OK;
}

static int compute_diffs(nn_err *err)
{
    char pattern[NN_UCAT_COUNT * 12 + 1];
    size_t n = 0;
    for (int c = 0; c < NN_UCAT_COUNT; c++)
        n += (size_t)snprintf(pattern + n, sizeof pattern - n, "%s(\\p{%s}+)", c ? "|" : "",
                              CATEGORY_NAMES[c]);
    int code;
    PCRE2_SIZE at;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, n, PCRE2_UTF | PCRE2_UCP, &code, &at, NULL);
    if (!re)
        return nn_fail(err, "PCRE2 does not compile its own general categories");
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    static char text[4 * 4096];
    int rc = md ? NN_OK : nn_fail(err, "out of memory for regex match data");
    n_diffs = 0;
    for (uint32_t cp = 0; rc == NN_OK && cp <= 0x10FFFF; cp += 4096) /* D800-DFFF: surrogates */
        rc = compare_chunk(re, md, cp, cp == 0xD000 ? 0xD7FF : cp + 4095, text, err);
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return rc;
}

static int ensure_diffs(nn_err *err)
{
    pthread_mutex_lock(&diffs_lock);
    int rc = NN_OK;
    if (!diffs_ready) {
        rc = compute_diffs(err);
        diffs_ready = rc == NN_OK;
    }
    pthread_mutex_unlock(&diffs_lock);
    return rc;
}

/* ---- Rewriting a pattern ------------------------------------------------------------------- */

typedef struct text {
    char *p;
    size_t len, cap;
    bool failed;
    nn_err *err;
} text;

static void put(text *t, const char *s, size_t n)
{
    if (t->failed)
        return;
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap < t->len + n + 1)
            cap *= 2;
        char *p = nn_realloc(t->p, cap, t->err);
        if (!p) {
            t->failed = true;
            return;
        }
        t->p = p;
        t->cap = cap;
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = '\0';
}

static void puts_(text *t, const char *s)
{
    put(t, s, strlen(s));
}

/* Ranges of code points as class items, surrogates left out (they are not characters of UTF-8
 * text and PCRE2 refuses them in a UTF pattern). */
static void put_range(text *t, uint32_t first, uint32_t last)
{
    if (first <= 0xDFFF && last >= 0xD800) {
        if (first < 0xD800)
            put_range(t, first, 0xD7FF);
        if (last > 0xDFFF)
            put_range(t, 0xE000, last);
        return;
    }
    char item[40];
    int n = first == last
                ? snprintf(item, sizeof item, "\\x{%X}", (unsigned)first)
                : snprintf(item, sizeof item, "\\x{%X}-\\x{%X}", (unsigned)first, (unsigned)last);
    put(t, item, (size_t)n);
}

enum { ADDED, REMOVED };

/* The code points PCRE2 misses from mask (ADDED) or wrongly puts in it (REMOVED); returns how
 * many runs were written. */
static size_t put_diffs(text *t, uint32_t mask, int which)
{
    size_t count = 0;
    for (size_t i = 0; i < n_diffs; i++) {
        bool in_table = mask >> diffs[i].table_cat & 1, in_pcre2 = mask >> diffs[i].pcre2_cat & 1;
        if (which == ADDED ? in_table && !in_pcre2 : in_pcre2 && !in_table) {
            if (t)
                put_range(t, diffs[i].first, diffs[i].last);
            count++;
        }
    }
    return count;
}

/* The whole set (or its complement) as explicit ranges, from the table alone. */
static void put_spelled_out(text *t, uint32_t mask, bool complement)
{
    for (size_t i = 0; i < nn_unicode_table_runs; i++) {
        uint32_t first = nn_unicode_table[i] >> 5;
        uint32_t last =
            i + 1 < nn_unicode_table_runs ? (nn_unicode_table[i + 1] >> 5) - 1 : 0x10FFFF;
        if ((bool)(mask >> (nn_unicode_table[i] & 31) & 1) != complement)
            put_range(t, first, last);
    }
}

/* One property item: item is its text as written, positive the same property not negated. */
static void put_property(text *t, const char *item, size_t item_len, const char *positive,
                         uint32_t mask, bool negated, bool in_class)
{
    size_t added = put_diffs(NULL, mask, ADDED), removed = put_diffs(NULL, mask, REMOVED);
    if (!added && !removed) {
        put(t, item, item_len);
        return;
    }
    if (in_class) {
        if (!negated && !removed) {
            put(t, item, item_len);
            put_diffs(t, mask, ADDED);
        } else if (negated && !added) {
            put(t, item, item_len);
            put_diffs(t, mask, REMOVED);
        } else {
            put_spelled_out(t, mask, negated); /* no subtraction inside a class */
        }
        return;
    }
    /* Outside a class: one class, never a group (a repeated group costs JIT stack per
     * character, and a long word would exhaust it). */
    puts_(t, negated ? "[^" : "[");
    if (removed) {
        put_spelled_out(t, mask, false);
    } else {
        puts_(t, positive);
        put_diffs(t, mask, ADDED);
    }
    puts_(t, "]");
}

static bool has_property(const char *p, size_t len)
{
    for (size_t i = 0; i + 1 < len; i++)
        if (p[i] == '\\' && (p[i + 1] == 'p' || p[i + 1] == 'P'))
            return true;
    return false;
}

int nn_unicode_fix_regex(const char *p, size_t len, char **out, size_t *out_len, nn_err *err)
{
    *out = NULL;
    if (has_property(p, len) && ensure_diffs(err))
        return NN_ERR;
    text t = {.err = err};
    put(&t, "", 0);
    bool in_class = false;
    for (size_t i = 0; i < len && !t.failed;) {
        char c = p[i];
        if (c == '\\' && i + 1 < len) {
            char e = p[i + 1];
            if (e == 'Q') { /* literal up to \E */
                const char *end = NULL;
                for (size_t k = i + 2; k + 1 < len; k++)
                    if (p[k] == '\\' && p[k + 1] == 'E') {
                        end = p + k + 2;
                        break;
                    }
                size_t n = end ? (size_t)(end - (p + i)) : len - i;
                put(&t, p + i, n);
                i += n;
                continue;
            }
            if ((e == 'p' || e == 'P') && i + 2 < len) {
                const char *name = p + i + 2;
                size_t name_len = 1, item_len = 3;
                if (*name == '{') {
                    const char *close = memchr(name, '}', len - (i + 2));
                    if (!close) { /* PCRE2 reports the malformed property */
                        put(&t, p + i, len - i);
                        break;
                    }
                    name++;
                    name_len = (size_t)(close - name);
                    item_len = name_len + 4;
                }
                bool negated = e == 'P';
                if (name_len && *name == '^') {
                    negated = !negated;
                    name++;
                    name_len--;
                }
                uint32_t mask = nn_unicode_property_mask(name, name_len);
                if (!mask) {
                    put(&t, p + i, item_len);
                } else {
                    char positive[80];
                    snprintf(positive, sizeof positive, "\\p{%.*s}",
                             (int)(name_len < 64 ? name_len : 64), name);
                    put_property(&t, p + i, item_len, positive, mask, negated, in_class);
                }
                i += item_len;
                continue;
            }
            put(&t, p + i, 2);
            i += 2;
            continue;
        }
        if (!in_class && c == '[') {
            in_class = true;
            size_t k = i + 1;
            if (k < len && p[k] == '^')
                k++;
            if (k < len && p[k] == ']') /* a leading ']' is a literal */
                k++;
            put(&t, p + i, k - i);
            i = k;
            continue;
        }
        if (in_class && c == '[' && i + 1 < len && p[i + 1] == ':') { /* POSIX [:name:] */
            size_t k = i + 2;
            while (k + 1 < len && !(p[k] == ':' && p[k + 1] == ']'))
                k++;
            k = k + 2 <= len ? k + 2 : len;
            put(&t, p + i, k - i);
            i = k;
            continue;
        }
        if (in_class && c == ']')
            in_class = false;
        put(&t, p + i, 1);
        i++;
    }
    if (t.failed) {
        nn_free(t.p);
        return NN_ERR;
    }
    *out = t.p;
    *out_len = t.len;
    return NN_OK;
}
