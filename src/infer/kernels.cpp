#include "infer/kernels.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <vector>

#include "core/cpu.h"
#include "core/error.h"
#include "core/simd.h"

// GCC 12 bug 105593 also trips -Wuninitialized inside _mm512_reduce_add_ps (its
// _mm256_undefined_pd helper); see core/simd.h.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace rvec::infer {
namespace {

int initial_precision() {
  const char* e = std::getenv("RVEC_MATMUL");
  return int(e && std::string_view(e) == "bf16dot" ? MatmulPrecision::BF16Dot : MatmulPrecision::F32);
}
std::atomic<int> g_precision{initial_precision()};

// Weight element kinds: 0 = f32, 1 = bf16, 2 = f16.
template <int D>
constexpr int64_t wsize() {
  return D == 0 ? 4 : 2;
}

// A tile computes y[i*ldy + j] (+)= sum_{k in [k0, k0+kn)} x[i*ldx + k] * w[j*ldw + k] for
// i < R, j < NW; `w` points at the tile's first weight row, `bias` at its first output
// (applied only when !add).
using TileFn = void (*)(const void* xv, int64_t ldx, const void* w, int64_t ldw, int64_t k0, int64_t kn, float* y,
                        int64_t ldy, bool add, const float* bias);

inline void store_out(float* y, float s, bool add, const float* bias, int j) {
  if (add) *y += s;
  else *y = s + (bias ? bias[j] : 0.f);
}

// ---------------------------------------------------------------- scalar
template <int D>
inline float wscalar(const void* w, int64_t idx) {
  if constexpr (D == 0) return static_cast<const float*>(w)[idx];
  else if constexpr (D == 1) return bf16_to_f32(static_cast<const uint16_t*>(w)[idx]);
  else return f16_to_f32(static_cast<const uint16_t*>(w)[idx]);
}

template <int R, int NW, int D>
void tile_scalar(const void* xv, int64_t ldx, const void* w, int64_t ldw, int64_t k0, int64_t kn, float* y,
                 int64_t ldy, bool add, const float* bias) {
  const float* x = static_cast<const float*>(xv);
  for (int j = 0; j < NW; ++j)
    for (int i = 0; i < R; ++i) {
      float s = 0;
      for (int64_t k = k0; k < k0 + kn; ++k) s += x[i * ldx + k] * wscalar<D>(w, j * ldw + k);
      store_out(y + i * ldy + j, s, add, bias, j);
    }
}

// ---------------------------------------------------------------- AVX2
#define RVEC_T2 __attribute__((target("avx2,fma,f16c")))

template <int D>
RVEC_T2 inline __m256 load8(const void* w, int64_t idx) {
  if constexpr (D == 0) {
    return _mm256_loadu_ps(static_cast<const float*>(w) + idx);
  } else {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(w) + idx));
    if constexpr (D == 1) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    else return _mm256_cvtph_ps(h);
  }
}

RVEC_T2 inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <int R, int NW, int D>
RVEC_T2 void tile_avx2(const void* xv, int64_t ldx, const void* w, int64_t ldw, int64_t k0, int64_t kn, float* y,
                       int64_t ldy, bool add, const float* bias) {
  const float* x = static_cast<const float*>(xv);
  __m256 acc[R][NW];
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < NW; ++j) acc[i][j] = _mm256_setzero_ps();
  int64_t k = k0;
  const int64_t kend = k0 + kn;
  for (; k + 8 <= kend; k += 8) {
    __m256 wv[NW];
    for (int j = 0; j < NW; ++j) wv[j] = load8<D>(w, j * ldw + k);
    for (int i = 0; i < R; ++i) {
      __m256 xv = _mm256_loadu_ps(x + i * ldx + k);
      for (int j = 0; j < NW; ++j) acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < NW; ++j) {
      float s = hsum8(acc[i][j]);
      for (int64_t t = k; t < kend; ++t) s += x[i * ldx + t] * wscalar<D>(w, j * ldw + t);
      store_out(y + i * ldy + j, s, add, bias, j);
    }
}

// ---------------------------------------------------------------- AVX-512
#define RVEC_T5 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c")))

template <int D>
RVEC_T5 inline __m512 load16(const void* w, int64_t idx) {
  if constexpr (D == 0) {
    return _mm512_loadu_ps(static_cast<const float*>(w) + idx);
  } else {
    __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(w) + idx));
    if constexpr (D == 1) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    else return _mm512_cvtph_ps(h);
  }
}

template <int D>
RVEC_T5 inline __m512 load16_mask(const void* w, int64_t idx, __mmask16 m) {
  if constexpr (D == 0) {
    return _mm512_maskz_loadu_ps(m, static_cast<const float*>(w) + idx);
  } else {
    __m256i h = _mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(w) + idx);
    if constexpr (D == 1) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    else return _mm512_cvtph_ps(h);
  }
}

template <int R, int NW, int D>
RVEC_T5 void tile_avx512(const void* xv, int64_t ldx, const void* w, int64_t ldw, int64_t k0, int64_t kn, float* y,
                         int64_t ldy, bool add, const float* bias) {
  const float* x = static_cast<const float*>(xv);
  __m512 acc[R][NW];
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < NW; ++j) acc[i][j] = _mm512_setzero_ps();
  int64_t k = k0;
  const int64_t kend = k0 + kn;
  for (; k + 16 <= kend; k += 16) {
    __m512 wv[NW];
    for (int j = 0; j < NW; ++j) wv[j] = load16<D>(w, j * ldw + k);
    for (int i = 0; i < R; ++i) {
      __m512 xv = _mm512_loadu_ps(x + i * ldx + k);
      for (int j = 0; j < NW; ++j) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
    }
  }
  if (k < kend) {
    __mmask16 m = __mmask16((1u << (kend - k)) - 1);
    __m512 wv[NW];
    for (int j = 0; j < NW; ++j) wv[j] = load16_mask<D>(w, j * ldw + k, m);
    for (int i = 0; i < R; ++i) {
      __m512 xv = _mm512_maskz_loadu_ps(m, x + i * ldx + k);
      for (int j = 0; j < NW; ++j) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < NW; ++j) store_out(y + i * ldy + j, _mm512_reduce_add_ps(acc[i][j]), add, bias, j);
}

// bf16 activations x bf16 weights with vdpbf16ps: x and w are uint16 (bf16) arrays,
// k0/kn count bf16 elements and are even.
#define RVEC_T5BF __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))
template <int R, int NW>
RVEC_T5BF void tile_bf16dot(const void* xv, int64_t ldx, const void* wv_, int64_t ldw, int64_t k0, int64_t kn,
                            float* y, int64_t ldy, bool add, const float* bias) {
  const uint16_t* x = static_cast<const uint16_t*>(xv);
  const uint16_t* w = static_cast<const uint16_t*>(wv_);
  __m512 acc[R][NW];
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < NW; ++j) acc[i][j] = _mm512_setzero_ps();
  int64_t k = k0;
  const int64_t kend = k0 + kn;
  for (; k + 32 <= kend; k += 32) {
    __m512bh wv[NW];
    for (int j = 0; j < NW; ++j) wv[j] = (__m512bh)_mm512_loadu_si512(w + j * ldw + k);
    for (int i = 0; i < R; ++i) {
      __m512bh xv = (__m512bh)_mm512_loadu_si512(x + i * ldx + k);
      for (int j = 0; j < NW; ++j) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], xv, wv[j]);
    }
  }
  if (k < kend) {
    __mmask32 m = __mmask32((1ull << (kend - k)) - 1);
    __m512bh wv[NW];
    for (int j = 0; j < NW; ++j) wv[j] = (__m512bh)_mm512_maskz_loadu_epi16(m, w + j * ldw + k);
    for (int i = 0; i < R; ++i) {
      __m512bh xv = (__m512bh)_mm512_maskz_loadu_epi16(m, x + i * ldx + k);
      for (int j = 0; j < NW; ++j) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], xv, wv[j]);
    }
  }
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < NW; ++j) store_out(y + i * ldy + j, _mm512_reduce_add_ps(acc[i][j]), add, bias, j);
}

// ---------------------------------------------------------------- tables
constexpr int kMaxR = 6, kMaxNW = 4;

struct Tiles {
  int rmax, nwmax;
  TileFn fn[kMaxR][kMaxNW];
};

#define RVEC_TILE_ROW(F, R, D) {&F<R, 1, D>, &F<R, 2, D>, &F<R, 3, D>, &F<R, 4, D>}
#define RVEC_TILES(F, D)                                                                                    \
  {RVEC_TILE_ROW(F, 1, D), RVEC_TILE_ROW(F, 2, D), RVEC_TILE_ROW(F, 3, D), RVEC_TILE_ROW(F, 4, D),             \
   RVEC_TILE_ROW(F, 5, D), RVEC_TILE_ROW(F, 6, D)}

template <int D>
const Tiles& tiles_for(CpuIsa isa) {
  static const Tiles t512{6, 4, RVEC_TILES(tile_avx512, D)};
  static const Tiles t2{4, 2, RVEC_TILES(tile_avx2, D)};
  static const Tiles ts{4, 2, RVEC_TILES(tile_scalar, D)};
  return isa == CpuIsa::AVX512 ? t512 : isa == CpuIsa::AVX2 ? t2 : ts;
}

#define RVEC_BF_ROW(R) {&tile_bf16dot<R, 1>, &tile_bf16dot<R, 2>, &tile_bf16dot<R, 3>, &tile_bf16dot<R, 4>}
const Tiles& tiles_bf16dot() {
  static const Tiles t{6, 4, {RVEC_BF_ROW(1), RVEC_BF_ROW(2), RVEC_BF_ROW(3), RVEC_BF_ROW(4), RVEC_BF_ROW(5),
                              RVEC_BF_ROW(6)}};
  return t;
}

// One thread's share: output rows [o0, o1). x has element size xs bytes, w ws bytes.
void matmul_range(const Tiles& T, const uint8_t* x, int64_t xs, int64_t n, int64_t ldx, const uint8_t* w,
                  int64_t ws, int64_t K, int64_t o0, int64_t o1, const float* bias, float* y, int64_t ldy) {
  // Small n (decode): one pass over K, weights streamed once. Large n (prefill): K in
  // blocks of 2048 and x in blocks of 48 rows so that a weight tile (4 rows, 16 KB as
  // bf16) stays in L1 and the x block (384 KB) in L2 while every x row of the block
  // reuses the weight tile; long K blocks keep the horizontal sums at the end of a tile
  // rare (one per 128 FMAs).
  const int64_t KC = n <= 8 ? K : 2048;
  const int64_t NB = n <= 8 ? n : 48;
  for (int64_t kc = 0; kc < K; kc += KC) {
    const int64_t kn = std::min(KC, K - kc);
    const bool add = kc > 0;
    for (int64_t nb = 0; nb < n; nb += NB) {
      const int64_t nn = std::min(NB, n - nb);
      for (int64_t o = o0; o < o1; o += T.nwmax) {
        const int nw = int(std::min<int64_t>(T.nwmax, o1 - o));
        const uint8_t* wp = w + o * K * ws;
        const float* bp = bias ? bias + o : nullptr;
        for (int64_t r = nb; r < nb + nn; r += T.rmax) {
          const int rr = int(std::min<int64_t>(T.rmax, nb + nn - r));
          T.fn[rr - 1][nw - 1](x + r * ldx * xs, ldx, wp, K, kc, kn, y + r * ldy + o, ldy, add, bp);
        }
      }
    }
  }
}

void run_matmul(const Tiles& T, const void* x, int64_t xs, int64_t n, int64_t ldx, const model::Matrix& W,
                const float* bias, float* y, int64_t ldy) {
  const int64_t K = W.cols, out = W.rows, ws = int64_t(dtype_size(W.dtype));
  int nth = omp_get_max_threads();
  if (n * out * K < (int64_t(1) << 21)) nth = 1;  // not worth waking threads (tiny models, tests)
#pragma omp parallel num_threads(nth)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t per = ((out + nt - 1) / nt + 15) / 16 * 16;
    const int64_t o0 = std::min(out, t * per), o1 = std::min(out, o0 + per);
    if (o0 < o1)
      matmul_range(T, static_cast<const uint8_t*>(x), xs, n, ldx, static_cast<const uint8_t*>(W.data), ws, K, o0,
                   o1, bias, y, ldy);
  }
}

// ---------------------------------------------------------------- vector helpers
RVEC_T5 float dot_avx512(const float* a, const float* b, int64_t n) {
  __m512 acc = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc);
  if (i < n) {
    __mmask16 m = __mmask16((1u << (n - i)) - 1);
    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), acc);
  }
  return _mm512_reduce_add_ps(acc);
}
RVEC_T5 void axpy_avx512(float s, const float* x, float* y, int64_t n) {
  __m512 sv = _mm512_set1_ps(s);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_fmadd_ps(sv, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += s * x[i];
}
RVEC_T2 float dot_avx2(const float* a, const float* b, int64_t n) {
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
  float s = hsum8(acc);
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}
RVEC_T2 void axpy_avx2(float s, const float* x, float* y, int64_t n) {
  __m256 sv = _mm256_set1_ps(s);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(sv, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += s * x[i];
}

}  // namespace

void set_matmul_precision(MatmulPrecision p) { g_precision.store(int(p)); }
MatmulPrecision matmul_precision() { return MatmulPrecision(g_precision.load()); }

void matmul(const float* x, int64_t n, int64_t ldx, const model::Matrix& W, const float* bias, float* y,
            int64_t ldy) {
  if (n <= 0 || W.rows <= 0) return;
  const CpuIsa isa = cpu_isa();
  if (matmul_precision() == MatmulPrecision::BF16Dot && W.dtype == DType::BF16 && W.cols % 2 == 0 &&
      cpu_has_avx512_bf16()) {
    // Round the activations to bf16 once, then vdpbf16ps against the stored weights.
    thread_local std::vector<uint16_t> xb;
    xb.resize(size_t(n * W.cols));
    for (int64_t r = 0; r < n; ++r) from_f32(DType::BF16, x + r * ldx, xb.data() + r * W.cols, size_t(W.cols));
    run_matmul(tiles_bf16dot(), xb.data(), 2, n, W.cols, W, bias, y, ldy);
    return;
  }
  switch (W.dtype) {
    case DType::F32: run_matmul(tiles_for<0>(isa), x, 4, n, ldx, W, bias, y, ldy); break;
    case DType::BF16: run_matmul(tiles_for<1>(isa), x, 4, n, ldx, W, bias, y, ldy); break;
    case DType::F16: run_matmul(tiles_for<2>(isa), x, 4, n, ldx, W, bias, y, ldy); break;
    default: fail("matmul: unsupported weight dtype {}", dtype_name(W.dtype));
  }
}

void rmsnorm(const float* x, const float* w, float* y, int64_t n, double eps) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += double(x[i]) * double(x[i]);
  const float inv = float(1.0 / std::sqrt(ss / double(n) + eps));
  for (int64_t i = 0; i < n; ++i) y[i] = w[i] * (x[i] * inv);
}

float dot(const float* a, const float* b, int64_t n) {
  switch (cpu_isa()) {
    case CpuIsa::AVX512: return dot_avx512(a, b, n);
    case CpuIsa::AVX2: return dot_avx2(a, b, n);
    default: {
      float s = 0;
      for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
      return s;
    }
  }
}

void axpy(float a, const float* x, float* y, int64_t n) {
  switch (cpu_isa()) {
    case CpuIsa::AVX512: axpy_avx512(a, x, y, n); break;
    case CpuIsa::AVX2: axpy_avx2(a, x, y, n); break;
    default:
      for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
  }
}

void scale(float* x, float a, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] *= a;
}

void silu_mul(float* g, const float* u, int64_t n) {
  for (int64_t i = 0; i < n; ++i) g[i] = g[i] / (1.f + std::exp(-g[i])) * u[i];
}

void softmax(float* x, int64_t n) {
  if (n <= 0) return;
  float mx = x[0];
  for (int64_t i = 1; i < n; ++i) mx = std::max(mx, x[i]);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  const float inv = float(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

}  // namespace rvec::infer
