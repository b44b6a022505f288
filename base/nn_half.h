/* IEEE half and bfloat16 <-> float32, rounding to nearest even (as torch and numpy do). */
#ifndef NN_HALF_H
#define NN_HALF_H

#include <stdint.h>
#include <string.h>

float nn_f16_to_f32(uint16_t h);
uint16_t nn_f32_to_f16(float f);

/* The bfloat16 pair is inline and branch-free: the bfloat16 GEMM's row conversions
 * (engine/gemm_bf16.c) call it per element, and the loops vectorize. */
static inline float nn_bf16_to_f32(uint16_t b)
{
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Round to nearest even; a NaN stays a (quiet) NaN. */
static inline uint16_t nn_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16, quiet = (u >> 16) | 0x40u;
    return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? quiet : rounded);
}

#endif
