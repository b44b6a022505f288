/* The Unicode table and the regex correction of engine/unicode.c: every general-category property,
 * written every way a pattern may write it (outside and inside classes, negated three ways),
 * matches exactly the code points the Unicode 16.0 table puts in it, over all of Unicode, whatever
 * the Unicode version of the PCRE2 linked (Debian bookworm's: 14.0). Needs no shared data. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <string.h>

#include "nn_test.h"
#include "unicode.h"

static char *all_text; /* the code points checked, in order, as UTF-8 */
static size_t all_len;
static uint32_t *offset_cp; /* the code point starting at each byte offset */
static uint8_t *category;   /* of each code point, from the table */

static bool near_run_edge(uint32_t cp)
{
    /* the first two and last two code points of every run of the table */
    size_t lo = 0, hi = nn_unicode_table_runs;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if ((nn_unicode_table[mid] >> 5) <= cp)
            lo = mid;
        else
            hi = mid;
    }
    uint32_t first = nn_unicode_table[lo] >> 5;
    uint32_t next = lo + 1 < nn_unicode_table_runs ? nn_unicode_table[lo + 1] >> 5 : 0x110000;
    return cp - first < 2 || next - cp <= 2;
}

/* every: 1 for all code points (surrogates aside), else the edges of the table's runs and every
 * every-th code point. */
static void build_text(uint32_t every)
{
    all_len = 0;
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
        if (cp >= 0xD800 && cp <= 0xDFFF)
            continue;
        if (every > 1 && cp % every && !near_run_edge(cp))
            continue;
        category[cp] = (uint8_t)nn_unicode_category(cp);
        offset_cp[all_len] = cp;
        all_len += (size_t)nn_utf8_encode(cp, all_text + all_len);
    }
}

static pcre2_code *compile_fixed(const char *pattern, nn_err *err)
{
    char *fixed = NULL;
    size_t n = 0;
    if (nn_unicode_fix_regex(pattern, strlen(pattern), &fixed, &n, err))
        return NULL;
    int code;
    PCRE2_SIZE at;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)fixed, n, PCRE2_UTF | PCRE2_UCP, &code, &at, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        nn_fail(err, "/%s/ rewritten as /%.200s/ does not compile: %s", pattern, fixed,
                (char *)msg);
    } else {
        pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    }
    nn_free(fixed);
    return re;
}

/* Matches item+ over the code points of all_text: those in mask (not in it, when negated; and
 * 'x' when with_x) must match, the others not. Returns how many are misclassified. */
static long check_item(const char *item, uint32_t mask, bool negated, bool with_x)
{
    char pattern[128];
    snprintf(pattern, sizeof pattern, "%s+", item);
    nn_err err = {{0}};
    pcre2_code *re = compile_fixed(pattern, &err);
    if (!re) {
        CHECK(0, "%s", err.msg);
        return 1;
    }
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    /* a repeated group over a run of 40,000 CJK characters needs more than the default 32 KiB */
    pcre2_jit_stack *stack = pcre2_jit_stack_create(1 << 15, 64 << 20, NULL);
    pcre2_match_context *ctx = pcre2_match_context_create(NULL);
    pcre2_jit_stack_assign(ctx, NULL, stack);
    long bad = 0;
    size_t off = 0, prev_end = 0;
    uint32_t first_bad = 0;
    for (;;) {
        int rc = pcre2_match(re, (PCRE2_SPTR)all_text, all_len, off, PCRE2_NO_UTF_CHECK, md, ctx);
        if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) {
            CHECK(0, "/%s/: match error %d", item, rc);
            break;
        }
        PCRE2_SIZE a = all_len, b = all_len;
        if (rc > 0) {
            a = pcre2_get_ovector_pointer(md)[0];
            b = pcre2_get_ovector_pointer(md)[1];
        }
        /* [prev_end, a) must not match, [a, b) must */
        for (size_t i = prev_end; i < b; i++) {
            if (((unsigned char)all_text[i] & 0xC0) == 0x80)
                continue;
            uint32_t cp = offset_cp[i];
            bool in = ((mask >> category[cp] & 1) != negated) || (with_x && cp == 'x');
            if (in != (i >= a) && !bad++)
                first_bad = cp;
        }
        if (rc <= 0 || b >= all_len)
            break;
        off = prev_end = b;
    }
    CHECK(bad == 0, "/%s/: %ld code points misclassified, the first U+%04X (category %d)", item,
          bad, (unsigned)first_bad, (int)nn_unicode_category(first_bad));
    pcre2_match_context_free(ctx);
    pcre2_jit_stack_free(stack);
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return bad;
}

static bool matches(const char *pattern, const char *subject)
{
    nn_err err = {{0}};
    pcre2_code *re = compile_fixed(pattern, &err);
    if (!re) {
        CHECK(0, "%s", err.msg);
        return false;
    }
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    int rc = pcre2_match(re, (PCRE2_SPTR)subject, strlen(subject), 0, PCRE2_ANCHORED, md, NULL);
    bool whole = rc > 0 && pcre2_get_ovector_pointer(md)[1] == strlen(subject);
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return whole;
}

int main(void)
{
    char pcre2_version[64];
    pcre2_config(PCRE2_CONFIG_UNICODE_VERSION, pcre2_version);
    printf("  table: Unicode %s, %zu runs; PCRE2's tables: Unicode %s\n", nn_unicode_table_version,
           nn_unicode_table_runs, pcre2_version);
    CHECK(!strcmp(nn_unicode_table_version, "16.0.0"), "table version %s",
          nn_unicode_table_version);

    /* The table itself, at characters of each recent version and at its edges. */
    static const struct {
        uint32_t cp;
        enum nn_ucat cat;
    } known[] = {
        {0x0000, NN_UCAT_CC},   {'A', NN_UCAT_LU},
        {'a', NN_UCAT_LL},      {'5', NN_UCAT_ND},
        {' ', NN_UCAT_ZS},      {0x4E00, NN_UCAT_LO},
        {0xD800, NN_UCAT_CS},   {0xE000, NN_UCAT_CO},
        {0x1FABF, NN_UCAT_SO},  /* goose, 15.0 */ {0x31350, NN_UCAT_LO}, /* CJK Ext H, 15.0 */
        {0x11F04, NN_UCAT_LO},  /* Kawi, 15.0 */ {0x2EBF0, NN_UCAT_LO},  /* CJK Ext I, 15.1 */
        {0x10D50, NN_UCAT_LU},                                           /* Garay capital, 16.0 */
        {0x1171E, NN_UCAT_MC}, /* Ahom medial ra: Mn until Unicode 14.0 */
        {0x10940, NN_UCAT_CN}, /* Unicode 17.0: unassigned here, as for the oracle */
        {0x10FFFD, NN_UCAT_CO}, {0x10FFFF, NN_UCAT_CN},
        {0x110000, NN_UCAT_CN},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        CHECK(nn_unicode_category(known[i].cp) == known[i].cat, "U+%04X: category %d, want %d",
              (unsigned)known[i].cp, (int)nn_unicode_category(known[i].cp), (int)known[i].cat);

    /* Property names as PCRE2 reads them. */
    uint32_t letters = 1u << NN_UCAT_LL | 1u << NN_UCAT_LM | 1u << NN_UCAT_LO | 1u << NN_UCAT_LT |
                       1u << NN_UCAT_LU;
    CHECK(nn_unicode_property_mask("L", 1) == letters, "L");
    CHECK(nn_unicode_property_mask("l", 1) == letters, "l");
    CHECK(nn_unicode_property_mask(" L_ ", 4) == letters, "' L_ '");
    CHECK(nn_unicode_property_mask("Lu", 2) == 1u << NN_UCAT_LU, "Lu");
    CHECK(nn_unicode_property_mask("L&", 2) ==
              (1u << NN_UCAT_LU | 1u << NN_UCAT_LL | 1u << NN_UCAT_LT),
          "L&");
    CHECK(nn_unicode_property_mask("Han", 3) == 0, "Han is a script");
    CHECK(nn_unicode_property_mask("Any", 3) == 0, "Any");

    /* What the pre-tokenizers need, on the strings that went wrong with PCRE2's tables. */
    CHECK(matches("\\p{L}+", "\xF0\xAE\xAF\xB0"), "U+2EBF0 is a letter");        /* CJK Ext I */
    CHECK(matches("[\\p{P}\\p{S}]", "\xF0\x9F\xAA\xBF"), "U+1FABF is a symbol"); /* goose */
    CHECK(matches(" ?[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+", " \xF0\xB1\x8D\x90"),
          "space + CJK Ext H");
    CHECK(!matches("\\p{Mn}", "\xF0\x91\x9C\x9E") && matches("\\p{Mc}", "\xF0\x91\x9C\x9E"),
          "U+1171E is Mc");
    CHECK(matches("\\p{N}{1,3}", "123") && !matches("\\p{N}{1,3}", "1234"), "quantified");
    CHECK(matches("\\Q\\p{L}\\E", "\\p{L}"), "\\Q..\\E is literal");
    CHECK(matches("[]\\p{L}]+", "]a"), "a leading ] is a literal");
    CHECK(matches("[[:alpha:]\\p{N}]+", "a1"), "POSIX class");

    all_text = malloc(0x110000 * 4);
    offset_cp = malloc(0x110000 * 4 * sizeof *offset_cp);
    category = malloc(0x110000);
    if (!all_text || !offset_cp || !category) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    /* The classes of the modern tokenizers' split regexes, over every code point. */
    uint32_t L = nn_unicode_property_mask("L", 1), M = nn_unicode_property_mask("M", 1);
    uint32_t N = nn_unicode_property_mask("N", 1), P = nn_unicode_property_mask("P", 1);
    uint32_t S = nn_unicode_property_mask("S", 1);
    uint32_t upper = nn_unicode_property_mask("Lu", 2) | nn_unicode_property_mask("Lt", 2) |
                     nn_unicode_property_mask("Lm", 2) | nn_unicode_property_mask("Lo", 2) | M;
    build_text(1);
    long bad = 0;
    int items = 0;
    bad += check_item("\\p{L}", L, false, false);
    bad += check_item("\\p{N}", N, false, false);
    bad += check_item("[^\\p{L}\\p{P}\\p{S}]", L | P | S, true, false);
    bad += check_item("[\\p{L}\\p{M}]", L | M, false, false);
    bad += check_item("[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]", upper, false, false);
    bad += check_item("\\pL", L, false, false);
    items += 6;
    printf("  %d classes of the tokenizers over %zu code points: %ld misclassified\n", items,
           all_len ? (size_t)0x110000 - 0x800 : 0, bad);

    /* Every property, every way of writing it, at the edges of the table's runs and every 29th
     * code point (spelling a negated property out inside a class makes a slow class: few). */
    build_text(29);
    size_t sampled = 0;
    for (size_t i = 0; i < all_len; i++)
        sampled += ((unsigned char)all_text[i] & 0xC0) != 0x80;
    static const char *const names[] = {"C",  "L",  "M",  "N",  "P",  "S",  "Z",  "L&", "Cn", "Cc",
                                        "Cf", "Co", "Cs", "Ll", "Lm", "Lo", "Lt", "Lu", "Mc", "Me",
                                        "Mn", "Nd", "Nl", "No", "Pc", "Pd", "Pe", "Pf", "Pi", "Po",
                                        "Ps", "Sc", "Sk", "Sm", "So", "Zl", "Zp", "Zs"};
    long bad_all = 0;
    int items_all = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        uint32_t mask = nn_unicode_property_mask(names[i], strlen(names[i]));
        CHECK(mask != 0, "%s", names[i]);
        bool spelled = strchr("LCS", names[i][0]) && strlen(names[i]) == 1;
        spelled |= !strcmp(names[i], "Mn") || !strcmp(names[i], "Mc");
        static const struct {
            const char *format;
            bool negated, slow;
        } forms[] = {{"\\p{%s}", false, false},   {"\\P{%s}", true, false},
                     {"[\\p{%s}]", false, false}, {"[^\\p{%s}]", true, false},
                     {"\\p{^%s}", true, false},   {"[x\\p{%s}]", false, false},
                     {"[\\P{%s}]", true, true},   {"[^\\P{%s}]", false, true}};
        for (size_t f = 0; f < sizeof forms / sizeof forms[0]; f++) {
            if (forms[f].slow && !spelled)
                continue;
            char item[64];
            snprintf(item, sizeof item, forms[f].format, names[i]);
            bad_all += check_item(item, mask, forms[f].negated, forms[f].format[1] == 'x');
            items_all++;
        }
    }
    printf("  %d property items over %zu code points: %ld misclassified\n", items_all, sampled,
           bad_all);
    free(all_text);
    free(offset_cp);
    free(category);
    return nn_test_finish("test_unicode");
}
