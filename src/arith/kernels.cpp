#include "arith/kernels.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

#include "core/cpu.h"
#include "core/simd.h"

namespace rvec::arith {

namespace {

// x86-64 builds have AVX2 bodies picked at run time; elsewhere (AArch64) the plain loops below,
// which the compiler vectorises for the baseline ISA.
#if defined(__x86_64__)
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

__attribute__((target("avx2"))) bool bf16_exact_avx2(const float* x, size_t n) {
  const __m256i low = _mm256_set1_epi32(0xffff), absmask = _mm256_set1_epi32(0x7fffffff);
  const __m256i inf = _mm256_set1_epi32(0x7f800000);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256i u = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i));
    __m256i inexact = _mm256_xor_si256(_mm256_cmpeq_epi32(_mm256_and_si256(u, low), _mm256_setzero_si256()),
                                       _mm256_set1_epi32(-1));
    __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, absmask), inf);
    if (!_mm256_testz_si256(inexact, _mm256_xor_si256(nan, _mm256_set1_epi32(-1)))) return false;
  }
  for (; i < n; ++i)
    if (!std::isnan(x[i]) && (std::bit_cast<uint32_t>(x[i]) & 0xffffu)) return false;
  return true;
}

__attribute__((target("avx2"))) void round_error_avx2(const float* st, const float* ex, size_t n, double& max_err,
                                                      double lanes[4]) {
  const __m256d absmask = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7fffffffffffffffLL));
  const __m256d inf = _mm256_set1_pd(INFINITY);
  __m256d mx = _mm256_set1_pd(max_err), sq = _mm256_loadu_pd(lanes);
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    __m256d d = _mm256_and_pd(_mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(st + i)), _mm256_cvtps_pd(_mm_loadu_ps(ex + i))),
                              absmask);
    d = _mm256_and_pd(d, _mm256_cmp_pd(d, inf, _CMP_LT_OQ));  // non-finite (inf, NaN) -> 0
    mx = _mm256_max_pd(mx, d);
    sq = _mm256_add_pd(sq, _mm256_mul_pd(d, d));
  }
  double m[4];
  _mm256_storeu_pd(m, mx);
  _mm256_storeu_pd(lanes, sq);
  for (double v : m) max_err = std::max(max_err, v);
  for (; i < n; ++i) {
    const double d = std::fabs(double(st[i]) - double(ex[i]));
    if (d < INFINITY) {
      max_err = std::max(max_err, d);
      lanes[i % 4] += d * d;
    }
  }
}

bool use_avx2() { return isa_has_avx2(cpu_isa()); }
#endif  // __x86_64__

}  // namespace

// The scalar paths use fma too so that every ISA gives identical results.
void axpy(float* acc, const float* x, float c, size_t n) {
#if defined(__x86_64__)
  if (use_avx2()) return axpy_avx2(acc, x, c, n);
#endif
  for (size_t i = 0; i < n; ++i) acc[i] = std::fma(c, x[i], acc[i]);
}

void scale_into(float* acc, const float* x, float c, size_t n) {
#if defined(__x86_64__)
  if (use_avx2()) return scale_avx2(acc, x, c, n);
#endif
  for (size_t i = 0; i < n; ++i) acc[i] = c * x[i];
}

uint64_t count_nonfinite(const float* x, size_t n) {
#if defined(__x86_64__)
  if (use_avx2()) return nonfinite_avx2(x, n);
#endif
  uint64_t c = 0;
  for (size_t i = 0; i < n; ++i) c += !std::isfinite(x[i]);
  return c;
}

// Plain loops: the compiler vectorises them for the baseline ISA, and IEEE add/sub give
// the same result at any width.
void sub_into(float* d, const float* a, const float* b, size_t n) {
  for (size_t i = 0; i < n; ++i) d[i] = a[i] - b[i];
}
void add_into(float* d, const float* a, const float* b, size_t n) {
  for (size_t i = 0; i < n; ++i) d[i] = a[i] + b[i];
}

bool bf16_exact(const float* x, size_t n) {
#if defined(__x86_64__)
  if (use_avx2()) return bf16_exact_avx2(x, n);
#endif
  for (size_t i = 0; i < n; ++i)
    if (!std::isnan(x[i]) && (std::bit_cast<uint32_t>(x[i]) & 0xffffu)) return false;
  return true;
}

void round_error(const float* stored, const float* exact, size_t n, double& max_err, double& sq_err) {
  double lanes[4] = {0, 0, 0, 0};
#if defined(__x86_64__)
  if (use_avx2()) {
    round_error_avx2(stored, exact, n, max_err, lanes);
    sq_err += (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
    return;
  }
#endif
  for (size_t i = 0; i < n; ++i) {
    const double d = std::fabs(double(stored[i]) - double(exact[i]));
    if (d < INFINITY) {
      max_err = std::max(max_err, d);
      lanes[i % 4] += d * d;
    }
  }
  sq_err += (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
}

}  // namespace rvec::arith
