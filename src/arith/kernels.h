// f32 vector kernels for the arithmetic engine (AVX2/AVX-512 with runtime dispatch).
#pragma once
#include <cstddef>
#include <cstdint>

namespace rvec::arith {

void axpy(float* acc, const float* x, float c, size_t n);        // acc += c * x
void scale_into(float* acc, const float* x, float c, size_t n);  // acc = c * x
uint64_t count_nonfinite(const float* x, size_t n);

}  // namespace rvec::arith
