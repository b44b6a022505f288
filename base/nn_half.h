/* IEEE half and bfloat16 <-> float32, rounding to nearest even (as torch and numpy do). */
#ifndef NN_HALF_H
#define NN_HALF_H

#include <stdint.h>

float nn_f16_to_f32(uint16_t h);
float nn_bf16_to_f32(uint16_t b);
uint16_t nn_f32_to_bf16(float f);
uint16_t nn_f32_to_f16(float f);

#endif
