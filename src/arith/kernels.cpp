#include "arith/kernels.h"

#include <cmath>
#include <cstring>

#include "core/cpu.h"
#include "core/simd.h"

namespace rvec::arith {

namespace {

__attribute__((target("avx2,fma"))) void axpy_avx2(float* acc, const float* x, float c, size_t n) {
  const __m256 vc = _mm256_set1_ps(c);
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(acc + i, _mm256_fmadd_ps(vc, _mm256_loadu_ps(x + i), _mm256_loadu_ps(acc + i)));
  for (; i < n; ++i) acc[i] = std::fma(c, x[i], acc[i]);
}

__attribute__((target("avx2"))) void scale_avx2(float* acc, const float* x, float c, size_t n) {
  const __m256 vc = _mm256_set1_ps(c);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(acc + i, _mm256_mul_ps(vc, _mm256_loadu_ps(x + i)));
  for (; i < n; ++i) acc[i] = c * x[i];
}

__attribute__((target("avx2"))) uint64_t nonfinite_avx2(const float* x, size_t n) {
  const __m256i expmask = _mm256_set1_epi32(0x7f800000);
  uint64_t cnt = 0;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256i v = _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i)), expmask);
    int m = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(v, expmask)));
    cnt += uint64_t(__builtin_popcount(unsigned(m)));
  }
  for (; i < n; ++i) cnt += !std::isfinite(x[i]);
  return cnt;
}

}  // namespace

// The scalar paths use fma too so that every ISA gives identical results.
void axpy(float* acc, const float* x, float c, size_t n) {
  if (cpu_isa() >= CpuIsa::AVX2) return axpy_avx2(acc, x, c, n);
  for (size_t i = 0; i < n; ++i) acc[i] = std::fma(c, x[i], acc[i]);
}

void scale_into(float* acc, const float* x, float c, size_t n) {
  if (cpu_isa() >= CpuIsa::AVX2) return scale_avx2(acc, x, c, n);
  for (size_t i = 0; i < n; ++i) acc[i] = c * x[i];
}

uint64_t count_nonfinite(const float* x, size_t n) {
  if (cpu_isa() >= CpuIsa::AVX2) return nonfinite_avx2(x, n);
  uint64_t c = 0;
  for (size_t i = 0; i < n; ++i) c += !std::isfinite(x[i]);
  return c;
}

}  // namespace rvec::arith
