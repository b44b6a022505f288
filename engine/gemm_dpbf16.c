/* The vdpbf16ps GEMM: see gemm_dpbf16.h for the numerics and the packed layout. */
#include "gemm_dpbf16.h"
#include "nn_half.h"

#include <stdlib.h>
#include <string.h>

enum {
    PANEL = 64,    /* output columns per panel: four zmm of 16 float32 */
    TILE_ROWS = 6, /* rows per micro-tile: 6 x 4 accumulators, 4 weight registers, 1 broadcast */
};

struct nn_dpbf16 {
    int n_in, n_out;
    int k_pairs;      /* ceil(n_in / 2) */
    int n_panels;     /* ceil(n_out / PANEL) */
    uint16_t *packed; /* [n_panels][k_pairs][PANEL][2] */
    size_t bytes;
};

int nn_dpbf16_create(const void *w, nn_dtype dtype, int n_in, int n_out, size_t ld, bool in_major,
                     nn_dpbf16 **out, nn_err *err)
{
    *out = NULL;
    if (dtype != NN_DT_BF16 && dtype != NN_DT_F16 && dtype != NN_DT_F32)
        return nn_fail(err, "bfloat16 GEMM: weights of dtype %s", nn_dtype_name(dtype));
    if (n_in < 1 || n_out < 1)
        return nn_fail(err, "bfloat16 GEMM: an empty [%d x %d] matrix", n_out, n_in);
    nn_dpbf16 *d = nn_calloc(1, sizeof *d, err);
    if (!d)
        return NN_ERR;
    d->n_in = n_in;
    d->n_out = n_out;
    d->k_pairs = (n_in + 1) / 2;
    d->n_panels = (n_out + PANEL - 1) / PANEL;
    d->bytes = (size_t)d->n_panels * (size_t)d->k_pairs * PANEL * 2 * sizeof(uint16_t);
    if (!(d->packed = nn_malloc(d->bytes, err))) {
        nn_free(d);
        return NN_ERR;
    }
    size_t K = (size_t)n_in, N = (size_t)n_out;
    for (size_t p = 0; p < (size_t)d->n_panels; p++)
        for (size_t kp = 0; kp < (size_t)d->k_pairs; kp++) {
            uint16_t *dst = d->packed + (p * (size_t)d->k_pairs + kp) * PANEL * 2;
            for (size_t c = 0; c < PANEL; c++)
                for (size_t h = 0; h < 2; h++) {
                    size_t n = p * PANEL + c, k = 2 * kp + h;
                    /* W is [n_out][ld], or [n_in][ld] in_major */
                    size_t i = in_major ? k * ld + n : n * ld + k;
                    dst[c * 2 + h] = n < N && k < K ? nn_weight_bf16(w, dtype, i) : 0;
                }
        }
    *out = d;
    return NN_OK;
}

void nn_dpbf16_free(nn_dpbf16 *d)
{
    if (!d)
        return;
    nn_free(d->packed);
    nn_free(d);
}

size_t nn_dpbf16_bytes(const nn_dpbf16 *d)
{
    return d ? d->bytes : 0;
}

int nn_dpbf16_col_blocks(const nn_dpbf16 *d)
{
    return d ? (d->n_out + NN_DPBF16_COLS - 1) / NN_DPBF16_COLS : 0;
}

static size_t padded_rows(int rows)
{
    return ((size_t)rows + TILE_ROWS - 1) / TILE_ROWS * TILE_ROWS;
}

size_t nn_dpbf16_scratch_bytes(const nn_dpbf16 *d, int max_rows)
{
    return d ? padded_rows(max_rows) * (size_t)d->k_pairs * 2 * sizeof(uint16_t) + 64 : 0;
}

#if NN_DPBF16_BUILT

#include <immintrin.h>

#define DPBF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

bool nn_dpbf16_available(void)
{
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = !getenv("NNTERP_NO_DPBF16") && __builtin_cpu_supports("avx512f") &&
                 __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512bf16");
    }
    return cached == 1;
}

/* Rows of x to bfloat16 (vcvtne2ps2bf16: round to nearest even), k_pairs pairs a row, the odd K's
 * last pair and the padding rows zero. */
DPBF16_TARGET static void convert_rows(const float *x, size_t ldx, int rows, int K, int k_pairs,
                                       int padded, uint16_t *dst)
{
    size_t stride = (size_t)k_pairs * 2;
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * ldx;
        uint16_t *d = dst + (size_t)r * stride;
        int k = 0;
        for (; k + 32 <= K; k += 32) {
            __m512 lo = _mm512_loadu_ps(xr + k), hi = _mm512_loadu_ps(xr + k + 16);
            _mm512_storeu_si512(d + k, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
        }
        if (k < K) {
            int n = K - k;
            __mmask16 m0 = (__mmask16)(n >= 16 ? 0xffff : (1u << n) - 1);
            __mmask16 m1 = (__mmask16)(n <= 16 ? 0 : (1u << (n - 16)) - 1);
            __m512 lo = _mm512_maskz_loadu_ps(m0, xr + k),
                   hi = _mm512_maskz_loadu_ps(m1, xr + k + 16);
            __mmask32 m = (__mmask32)(n >= 32 ? 0xffffffffu : (1u << n) - 1);
            _mm512_mask_storeu_epi16(d + k, m, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
        }
        if (K & 1)
            d[K] = 0;
    }
    for (int r = rows; r < padded; r++)
        memset(dst + (size_t)r * stride, 0, stride * sizeof(uint16_t));
}

/* One micro-tile: TILE_ROWS rows (a: their bfloat16 pairs, row stride k_pairs words) times one
 * panel, summed over every k pair in order, then stored with the bias into the rows of y that
 * exist (valid_rows) and the panel's columns that exist (valid_cols). */
DPBF16_TARGET static void tile(const uint32_t *a, int k_pairs, const uint16_t *panel,
                               int valid_rows, int valid_cols, const float *bias, float *y,
                               size_t ldy)
{
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c02 = c00, c03 = c00;
    __m512 c10 = c00, c11 = c00, c12 = c00, c13 = c00, c20 = c00, c21 = c00, c22 = c00, c23 = c00;
    __m512 c30 = c00, c31 = c00, c32 = c00, c33 = c00, c40 = c00, c41 = c00, c42 = c00, c43 = c00;
    __m512 c50 = c00, c51 = c00, c52 = c00, c53 = c00;
    const size_t s = (size_t)k_pairs;
    for (size_t kp = 0; kp < s; kp++) {
        const uint16_t *w = panel + kp * PANEL * 2;
        __m512bh w0 = (__m512bh)_mm512_loadu_si512(w), w1 = (__m512bh)_mm512_loadu_si512(w + 32);
        __m512bh w2 = (__m512bh)_mm512_loadu_si512(w + 64),
                 w3 = (__m512bh)_mm512_loadu_si512(w + 96);
#define DPBF16_ROW(r)                                                                              \
    do {                                                                                           \
        __m512bh x = (__m512bh)_mm512_set1_epi32((int)a[(r)*s + kp]);                              \
        c##r##0 = _mm512_dpbf16_ps(c##r##0, x, w0);                                                \
        c##r##1 = _mm512_dpbf16_ps(c##r##1, x, w1);                                                \
        c##r##2 = _mm512_dpbf16_ps(c##r##2, x, w2);                                                \
        c##r##3 = _mm512_dpbf16_ps(c##r##3, x, w3);                                                \
    } while (0)
        DPBF16_ROW(0);
        DPBF16_ROW(1);
        DPBF16_ROW(2);
        DPBF16_ROW(3);
        DPBF16_ROW(4);
        DPBF16_ROW(5);
#undef DPBF16_ROW
    }
    __m512 acc[TILE_ROWS][4] = {{c00, c01, c02, c03}, {c10, c11, c12, c13}, {c20, c21, c22, c23},
                                {c30, c31, c32, c33}, {c40, c41, c42, c43}, {c50, c51, c52, c53}};
    for (int q = 0; q < 4; q++) {
        int n = valid_cols - q * 16;
        if (n <= 0)
            break;
        __mmask16 m = (__mmask16)(n >= 16 ? 0xffff : (1u << n) - 1);
        __m512 b = bias ? _mm512_maskz_loadu_ps(m, bias + q * 16) : _mm512_setzero_ps();
        for (int r = 0; r < valid_rows; r++) {
            __m512 v = bias ? _mm512_add_ps(acc[r][q], b) : acc[r][q];
            _mm512_mask_storeu_ps(y + (size_t)r * ldy + q * 16, m, v);
        }
    }
}

DPBF16_TARGET void nn_dpbf16_block(const nn_dpbf16 *d, int cb, const float *x, size_t ldx, int rows,
                                   const float *bias, float *y, size_t ldy, void *scratch)
{
    int padded = (int)padded_rows(rows);
    uint16_t *a = (uint16_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    convert_rows(x, ldx, rows, d->n_in, d->k_pairs, padded, a);
    int c0 = cb * NN_DPBF16_COLS;
    int c1 = c0 + NN_DPBF16_COLS < d->n_out ? c0 + NN_DPBF16_COLS : d->n_out;
    for (int p = c0 / PANEL; p * PANEL < c1; p++) {
        const uint16_t *panel = d->packed + (size_t)p * (size_t)d->k_pairs * PANEL * 2;
        int col = p * PANEL, cols = c1 - col < PANEL ? c1 - col : PANEL;
        for (int r = 0; r < padded; r += TILE_ROWS)
            tile((const uint32_t *)(a + (size_t)r * (size_t)d->k_pairs * 2), d->k_pairs, panel,
                 rows - r < TILE_ROWS ? rows - r : TILE_ROWS, cols, bias ? bias + col : NULL,
                 y + (size_t)r * ldy + col, ldy);
    }
}

#else

bool nn_dpbf16_available(void)
{
    return false;
}

void nn_dpbf16_block(const nn_dpbf16 *d, int cb, const float *x, size_t ldx, int rows,
                     const float *bias, float *y, size_t ldy, void *scratch)
{
    (void)d, (void)cb, (void)x, (void)ldx, (void)rows, (void)bias, (void)y, (void)ldy,
        (void)scratch;
}

#endif
