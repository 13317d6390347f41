// f32 vector kernels for the arithmetic engine (AVX2/AVX-512 with runtime dispatch).
#pragma once
#include <cstddef>
#include <cstdint>

namespace rvec::arith {

void axpy(float* acc, const float* x, float c, size_t n);        // acc += c * x
void scale_into(float* acc, const float* x, float c, size_t n);  // acc = c * x
uint64_t count_nonfinite(const float* x, size_t n);
void sub_into(float* d, const float* a, const float* b, size_t n);  // d = a - b
void add_into(float* d, const float* a, const float* b, size_t n);  // d = a + b
// True when every non-NaN x[i] is exactly representable in bf16 (its low 16 bits are 0).
bool bf16_exact(const float* x, size_t n);
// Rounding error of a stored copy: for each i with finite d = |stored[i] - exact[i]| (in
// double), max_err = max(max_err, d) and sq_err += d² (summed in 4 interleaved lanes, in
// the same order on every ISA, so results are bit-identical).
void round_error(const float* stored, const float* exact, size_t n, double& max_err, double& sq_err);

}  // namespace rvec::arith
