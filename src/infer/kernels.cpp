#include "infer/kernels.h"

#include "infer/attention.h"
#include "infer/row_shares.h"

#include <omp.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "core/aligned.h"
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

template <int D>
inline float wscalar(const void* w, int64_t idx) {
  if constexpr (D == 0) return static_cast<const float*>(w)[idx];
  else if constexpr (D == 1) return bf16_to_f32(static_cast<const uint16_t*>(w)[idx]);
  else return f16_to_f32(static_cast<const uint16_t*>(w)[idx]);
}

// The gemms' view of a weight matrix: row-major, or column blocks (model::Matrix::kblock:
// block b is a [rows, width] row-major matrix of columns [b * kb, b * kb + width)). The
// gemms take K in chunks that never cross a block, so blocked weights need no partial sums
// of their own: with blocks a multiple of the chunk, the same sums in the same order.
struct GemmWeights {
  const uint8_t* data;
  int64_t rows, K, kb;  // kb: block width, K when row-major
  explicit GemmWeights(const model::Matrix& W)
      : data(static_cast<const uint8_t*>(W.data)), rows(W.rows), K(W.cols), kb(W.kblock > 0 ? W.kblock : W.cols) {}
  // Column ranges [c0, c0 + width) of at most `cols` columns that cover K without crossing a block.
  std::vector<std::pair<int64_t, int64_t>> k_chunks(int64_t cols) const {
    std::vector<std::pair<int64_t, int64_t>> r;
    for (int64_t b0 = 0; b0 < K; b0 += kb)
      for (int64_t c = b0; c < std::min(K, b0 + kb); c += cols) r.emplace_back(c, std::min({cols, K - c, b0 + kb - c}));
    return r;
  }
  // The weights of columns [c0, ...) of the block holding c0, with its row stride (elements of
  // `es` bytes): row r's element c0 is at base + r * stride.
  std::pair<const uint8_t*, int64_t> at(int64_t c0, int64_t es) const {
    const int64_t b = c0 / kb, width = std::min(kb, K - b * kb);
    return {data + size_t((rows * b * kb + (c0 - b * kb)) * es), width};
  }
};

// ---------------------------------------------------------------- scalar
template <int D>
void matmul_scalar(const float* x, int64_t n, int64_t ldx, const uint8_t* w, int64_t K, int64_t o0, int64_t o1,
                   const float* bias, float* y, int64_t ldy) {
  for (int64_t r = 0; r < n; ++r)
    for (int64_t o = o0; o < o1; ++o) {
      float s = 0;
      for (int64_t k = 0; k < K; ++k) s += x[r * ldx + k] * wscalar<D>(w, o * K + k);
      y[r * ldy + o] = s + (bias ? bias[o] : 0.f);
    }
}

// ---------------------------------------------------------------- SIMD ISAs
// One ISA's kernels, each built from the width-generic .inc files with that ISA's primitives.
// Dispatch picks a table once per call (isa_kernels()); the calls through it are per weight
// chunk or per product, never in an inner loop.
using RowsFn = void (*)(const float* x, int64_t n, int64_t ldx, const uint8_t* w, int64_t K, int64_t o0, int64_t o1,
                        const float* bias, float* y, int64_t ldy);
using PackXFn = void (*)(const float* x, int64_t n, int64_t ldx, int64_t K, int64_t p0, int64_t p1, float* xt);
using GemmFn = void (*)(const float* xt, int64_t n, const GemmWeights& W, int64_t c0, int64_t cn, int64_t o0,
                        int64_t o1, const float* bias, float* y, int64_t ldy, float* wbuf);
using AttentionPartFn = void (*)(const float* q, int64_t ldq, int64_t heads, int64_t hd, const void* k,
                                 const void* v, int64_t ldkv, int64_t rows, int64_t pos0, float scale,
                                 int64_t kv_heads, bool k_tiled, int64_t t0, int64_t t1, float* part, float* kt,
                                 float* S);
using AttentionUntiledFn = void (*)(const float* q, int64_t ldq, int64_t heads, int64_t hd, const float* k,
                                    const float* v, int64_t ldkv, int64_t rows, int64_t pos0, float scale, float* out,
                                    int64_t ldo, float* S, float* kt);
struct IsaKernels {
  int64_t vw;         // f32 lanes per vector
  int64_t gemm_cols;  // x rows per gemm panel
  int64_t gemm_kc;    // the gemm's K chunk
  int64_t mr;         // weight rows per gemm micro-tile
  RowsFn gemv[3], dot_tiles[3];  // by weight kind: f32, bf16, f16
  PackXFn pack_x;
  GemmFn gemm[3];
  void (*silu_mul)(float* g, const float* u, int64_t n);
  AttentionPartFn attention_part[3];  // by KV cache element type: f32, bf16, f16
  AttentionUntiledFn attention_untiled;
  float (*dot)(const float* a, const float* b, int64_t n);
  void (*axpy)(float s, const float* x, float* y, int64_t n);
  bool (*max)(const float* x, int64_t n, float* out);
  int64_t (*find)(const float* x, int64_t n, float v);
};

// The BF16Dot kernels of one ISA (MatmulPrecision::BF16Dot, BF16 weights, 5+ x rows): x
// rounded to bf16 once, pairs of k multiplied and added to an f32 lane by one instruction
// (vdpbf16ps, BFDOT). Dot tiles below kGemm16MinRows rows (or for odd K), else a gemm over x
// panels of pairs of k that pack[] builds from bf16 rows (transpose_pairs_simd.inc's layout).
using Bf16DotTilesFn = void (*)(const uint16_t* xb, int64_t n, int64_t ldx, const uint16_t* w, int64_t K, int64_t o0,
                                int64_t o1, const float* bias, float* y, int64_t ldy);
using Bf16PackFn = void (*)(const uint16_t* rows, int64_t stride, int valid, int64_t K, uint32_t* panel);
using Bf16GemmFn = void (*)(const uint16_t* xt, int64_t n, const GemmWeights& W, int64_t c0, int64_t cn, int64_t o0,
                            int64_t o1, const float* bias, float* y, int64_t ldy);
struct Bf16DotKernels {
  int64_t mr;       // weight rows per gemm micro-tile
  int64_t cols[2];  // x rows per gemm panel: [0] below kGemmMinRows rows, [1] from it
  Bf16DotTilesFn dot_tiles;
  Bf16PackFn pack[2];
  Bf16GemmFn gemm[2];
  // Attention over a bf16 KV cache with the same dot product (AttentionArgs::bf16_dot); nullptr:
  // none (the exact kernels widen the cache instead).
  AttentionPartFn attention_part;
};

// GCC compiles the Arm BF16 kernels with a target attribute, whatever the build's -march;
// clang 14's arm_neon.h declares them only when the build's -march has +bf16.
#if defined(__aarch64__) && (defined(__ARM_FEATURE_BF16) || (defined(__GNUC__) && !defined(__clang__)))
#define RVEC_NEON_BF16_KERNELS 1
#endif

#if defined(__x86_64__)
#include "infer/isa_avx2.inc"
#include "infer/isa_avx512.inc"
#include "infer/matmul_bf16dot_avx512.inc"
#elif defined(__aarch64__)
#include "infer/isa_neon.inc"
#if defined(RVEC_NEON_BF16_KERNELS)
#include "infer/matmul_bf16dot_neon.inc"
#endif
#endif

// The kernel table of `isa`; nullptr for the scalar fallback.
inline const IsaKernels* isa_kernels(CpuIsa isa) {
  switch (isa) {
#if defined(__x86_64__)
    case CpuIsa::AVX512: return &avx512::kKernels;
    case CpuIsa::AVX2: return &avx2::kKernels;
#elif defined(__aarch64__)
    case CpuIsa::NEON: return &neon::kKernels;
#endif
    default: return nullptr;
  }
}

// The BF16Dot kernels this build has and the CPU runs with the selected ISA; nullptr if none.
inline const Bf16DotKernels* bf16dot_kernels() {
  if (!cpu_has_bf16_dot()) return nullptr;
#if defined(__x86_64__)
  return &avx512_bf16::kKernels;
#elif defined(RVEC_NEON_BF16_KERNELS)
  return &neon_bf16::kKernels;
#else
  return nullptr;
#endif
}

// Loop shape by the number of x rows n (matmul_simd.inc): up to kGemvMaxRows the weights
// stream once in memory order (decode is bandwidth-bound); then dot tiles (f32 with AVX-512
// and bf16 weights: transposed-weight tiles from kTwMinRows, matmul_tw_simd.inc); the gemm
// shape from kGemmMinRowsF32 rows (f32) or, with BF16Dot, from kGemm16MinRows rows in
// narrow panels (AVX512-BF16: 16 rows) and from kGemmMinRows in wide ones (32 rows).
// - f32: the dot tiles, which prefetch the next weight tile, beat the gemm below 64 rows
//   (pp48 282-287 vs 310-323 tok/s on Zen 5); from 64 rows the gemm wins (Zen 5, same runs:
//   pp64 354-368 vs 313-322, pp96 349-379 vs 297-320, batch-64 decode 216-228 vs 191-218; on
//   Zen 4 an older gemm lost up to 128 rows). A gemm with 16-row panels lost to the dot tiles
//   below 64 rows on Zen 4 (20-30 %) and Zen 5 (bench DecodeBatch/16/0: 61 vs 45 ms).
// - BF16Dot (Zen 5, bench DecodeBatch/N/1, a 0.5B model's products with the weights streaming
//   from memory, ms per pass): 16-row panels against dot tiles 24.0 vs 33.7 at 12 rows,
//   24.4 vs 41.0 at 16, 26.9 vs 28.5 at 8, a tie at 5; for 17-31 rows one padded 32-row
//   panel beats two 16-row ones (24 rows: 39.2 vs 43.3).
constexpr int64_t kGemvMaxRows = 4, kGemm16MinRows = 8, kGemmMinRowsF32 = 64;
constexpr int64_t kGemmMinRows = 17;  // BF16Dot only
// BF16Dot's gemm takes K in chunks of 1024 columns so that the x panels' chunk (64 KB per
// panel of 32 rows: 256 KB at 128 rows) stays in L2 across all weight groups; a whole down
// projection's K makes a panel 311 KB at 0.5B (K = 4864) and 1.2 MB at 7B (K = 18944), read
// from L3 once per weight group. Partial sums go through y.
constexpr int64_t kBf16GemmChunkCols = 1024;
// Whether an f32 product of n x rows runs as the gemm (else dot tiles or the gemv). With AVX2
// the gemm's panels are 16 rows (2 x 8 lanes); from 17 rows it beats the 4 x 3 dot tiles where
// its panels are full but for at most 2 rows (30-32, 46-48, 62+), and from 64 rows. Zen 4,
// RVEC_ISA=avx2, 2 threads: DecodeBatch/32/0 170-185 GFLOP/s against 143-163; 0.5B decode
// (`rvec bench --batch B`, 2 rounds, tok/s) at 30 rows 160, 160 against 149, 142; a tie at 28
// (144, 152 against 151, 152) and 40 (132, 140 against 129, 138); dot tiles ahead at 24 (118,
// 127 against 134, 135) and 36 (130, 145 against 146, 153). At 16 rows the gemm was ahead too
// (DecodeBatch/16/0 151-163 against 114-156), but 5-16 rows stay on the dot tiles, which give
// a row the same bits in any batch of 5-16 (Kernels.ExactDotTileProductsDoNotDependOnTheBatch).
inline bool f32_gemm_rows(CpuIsa isa, int64_t n) {
  if (isa != CpuIsa::AVX2) return n >= kGemmMinRowsF32;
  const int64_t padded = (n + 15) / 16 * 16;
  return n >= kGemmMinRowsF32 || (n > 16 && padded - n <= 2);
}

// The exact path's transposed-weight tiles (matmul_tw_simd.inc) between the dot tiles and the
// gemm: AVX-512, bf16 weights, K and column blocks of even width (pairs of bf16 as words).
// From 17 rows: 0.5B exact decode, Zen 5, three alternating rounds against the dot tiles:
// batch 18 154-162 -> 171-177 tok/s, 20 173-191 -> 183-213; 16 171-190 against 177-197, 12
// 142-155 against 154-165.
constexpr int64_t kTwMinRows = 17;
inline bool use_tw(CpuIsa isa, DType dt, int64_t n, const GemmWeights& W) {
  return isa == CpuIsa::AVX512 && dt == DType::BF16 && n >= kTwMinRows && n < kGemmMinRowsF32 && W.K % 2 == 0 &&
         W.kb % 2 == 0;
}

constexpr int64_t kMinParallelMacs = int64_t(1) << 17;

// Several products of the same x (q/k/v, gate/up) run in one parallel region: one thread
// wake-up instead of several, x packed once, and each thread takes its share of every
// weight matrix, so small matrices (k, v) do not leave a thread idle.
struct Plan {
  const float* x;
  int64_t n, ldx, K;
  std::span<const MatmulOut> outs;
  int threads() const {
    int64_t rows = 0;
    for (const auto& o : outs) rows += o.W->rows;
    // Tiny products (toy models, tests) are not worth waking threads: 2^17 multiply-adds take
    // about as long as a fork/join. The limit was 2^21, which left the q/k/v and o products of
    // batch-1 decode on a 0.5B model (1.0M and 0.8M) on one thread: 0.5B decode 0.87-0.91 of
    // the read bound measured between its steps vs 0.79-0.87 (Zen 5, `rvec bench
    // --paired-bound`, old and new binary alternating).
    return n * rows * K < kMinParallelMacs ? 1 : omp_get_max_threads();
  }
};

// Only the gemms read column blocks; matmul_multi splits them into row-major blocks for the
// other kernels.
inline void require_row_major(const Plan& p) {
  for (const auto& o : p.outs)
    if (o.W->kblock != 0) fail("matmul: internal error: column-blocked weights reached a row-major kernel");
}

// Splits the output rows over the threads in multiples of `align` (a micro-tile's rows).
inline std::pair<int64_t, int64_t> thread_rows(int64_t out, int64_t align) {
  const int t = omp_get_thread_num(), nt = omp_get_num_threads();
  const int64_t per = ((out + nt - 1) / nt + align - 1) / align * align;
  const int64_t o0 = std::min(out, t * per);
  return {o0, std::min(out, o0 + per)};
}

// Calls f(weights, o0, o1, bias, y, ldy) for this thread's rows of every output.
template <class F>
void for_my_rows(const Plan& p, int64_t align, F&& f) {
  for (const auto& o : p.outs) {
    auto [o0, o1] = thread_rows(o.W->rows, align);
    if (o0 < o1) f(static_cast<const uint8_t*>(o.W->data), o0, o1, o.bias, o.y, o.ldy);
  }
}

// The gemm shapes' split: K in chunks of at most `kcols` columns (GemmWeights::k_chunks), one
// after the other, so that the x panels' chunk stays in each core's L2 while all weight rows
// pass; within a chunk, f(weights, c0, cn, o0, o1, bias, y, ldy) over the rows of every output
// as RowShares of `unit` rows (a multiple of the micro-tile's): each thread takes its own
// share from the front, 2 units at a time, so the next weight group it prefetches is the one
// it computes next, and then single units from the back of a slower thread's share. An even
// static split left one thread waiting at the end of each product for 30-36 % of its time in
// a 0.5B prefill on a busy host; 96-row pieces taken in turn from one counter cut that to
// 3-6 % but lost 3-4 % of exact prefill (every piece's first weight group came unprefetched).
class GemmSplit {
 public:
  GemmSplit(const Plan& p, int64_t kcols, int64_t unit)
      : p_(p), chunks_(GemmWeights(*p.outs[0].W).k_chunks(kcols)) {  // the outputs share K and blocks
    std::vector<int64_t> rows;
    for (const auto& o : p.outs) rows.push_back(o.W->rows);
    shares_.reserve(chunks_.size());
    for (size_t c = 0; c < chunks_.size(); ++c) shares_.emplace_back(rows, unit, 2, p.threads());
  }
  // On every thread of the parallel region.
  template <class F>
  void run(F&& f) {
    for (size_t c = 0; c < chunks_.size(); ++c) {
      const int64_t c0 = chunks_[c].first, cn = chunks_[c].second;  // clang 14 cannot capture a structured binding
      shares_[c].run([&](size_t i, int64_t o0, int64_t o1) {
        const MatmulOut& o = p_.outs[i];
        f(GemmWeights(*o.W), c0, cn, o0, o1, o.bias, o.y, o.ldy);
      });
      if (c + 1 < chunks_.size()) {
#pragma omp barrier
      }
    }
  }

 private:
  const Plan& p_;
  std::vector<std::pair<int64_t, int64_t>> chunks_;
  std::vector<RowShares> shares_;
};

// This thread's share [p0, p1) of `count` items.
inline std::pair<int64_t, int64_t> thread_share(int64_t count) {
  const int t = omp_get_thread_num(), nt = omp_get_num_threads();
  const int64_t per = (count + nt - 1) / nt, p0 = std::min(count, t * per);
  return {p0, std::min(count, p0 + per)};
}

// Decode-shaped products (fewer rows than the gemm's) stream every weight once and are
// bound by memory: each thread streams one contiguous share of their rows (RowShares), in
// chunks of about kChunkBytes of weights, and takes 16-row units of the others' shares when
// done. Measured on Zen 5 (2 threads, bench/infer_kernels_bench Decode/0: a 0.5B model's 715 MB
// of layer weights): 41.2-43.3 GB/s (read-sum loop 44.7-52.1 in the same runs) against
// 35.8-37.6 (45.5-46.2) with 256 KB chunks from one shared counter, where each thread's
// stream jumped every chunk.
constexpr int64_t kChunkBytes = int64_t(128) << 10;

// Runs f(weights, o0, o1, bias, y, ldy) over all rows of p's products on the calling team.
struct RowChunks {
  const Plan& p;
  RowShares shares;
  static std::vector<int64_t> rows_of(const Plan& p) {
    std::vector<int64_t> r;
    for (const auto& o : p.outs) r.push_back(o.W->rows);
    return r;
  }
  RowChunks(const Plan& plan, int64_t wsize)
      : p(plan), shares(rows_of(plan), 16, kChunkBytes / std::max<int64_t>(1, 16 * plan.K * wsize), plan.threads()) {
    require_row_major(plan);
  }
  template <class F>
  void run(F&& f) {
    shares.run([&](size_t i, int64_t o0, int64_t o1) {
      const MatmulOut& o = p.outs[i];
      f(static_cast<const uint8_t*>(o.W->data), o0, o1, o.bias, o.y, o.ldy);
    });
  }
};

template <int D>
void run_f32(CpuIsa isa, const Plan& p) {
  const IsaKernels* kr = isa_kernels(isa);
  if (!kr) {
    require_row_major(p);
#pragma omp parallel num_threads(p.threads())
    for_my_rows(p, 16, [&](const uint8_t* w, int64_t o0, int64_t o1, const float* bias, float* y, int64_t ldy) {
      matmul_scalar<D>(p.x, p.n, p.ldx, w, p.K, o0, o1, bias, y, ldy);
    });
    return;
  }
#if defined(__x86_64__)
  if (use_tw(isa, p.outs[0].W->dtype, p.n, GemmWeights(*p.outs[0].W))) {
    RowShares shares(RowChunks::rows_of(p), avx512::kTwCols, 1, p.threads());
#pragma omp parallel num_threads(p.threads())
    {
      thread_local AlignedVector<uint32_t> wt;
      thread_local AlignedVector<float> acc;
      wt.resize(size_t(avx512::kTwCols * avx512::kTwGroupCols / 2));
      acc.resize(size_t(p.n * avx512::kTwCols));
      shares.run([&](size_t i, int64_t o0, int64_t o1) {
        const MatmulOut& o = p.outs[i];
        avx512::tw_rows(p.x, p.n, p.ldx, GemmWeights(*o.W), o0, o1, o.bias, o.y, o.ldy, wt.data(), acc.data());
      });
    }
    return;
  }
#endif
  if (!f32_gemm_rows(isa, p.n)) {
    const RowsFn rows_fn = p.n <= kGemvMaxRows ? kr->gemv[D] : kr->dot_tiles[D];
    RowChunks chunks(p, wsize<D>());
#pragma omp parallel num_threads(p.threads())
    chunks.run([&](const uint8_t* w, int64_t o0, int64_t o1, const float* bias, float* y, int64_t ldy) {
      rows_fn(p.x, p.n, p.ldx, w, p.K, o0, o1, bias, y, ldy);
    });
    return;
  }
  const int64_t cols = kr->gemm_cols, mr = kr->mr;
  const int64_t panels = (p.n + cols - 1) / cols;
  thread_local AlignedVector<float> xt;  // the caller's; workers get its address
  xt.resize(size_t(panels * cols * p.K));
  float* xtp = xt.data();
  GemmSplit split(p, kr->gemm_kc, 4 * mr);
#pragma omp parallel num_threads(p.threads())
  {
    auto [p0, p1] = thread_share(panels);
    kr->pack_x(p.x, p.n, p.ldx, p.K, p0, p1, xtp);
#pragma omp barrier
    thread_local AlignedVector<float> wbuf;
    wbuf.resize(size_t(mr * std::min(p.K, kr->gemm_kc)));
    split.run([&](const GemmWeights& W, int64_t c0, int64_t cn, int64_t o0, int64_t o1, const float* bias, float* y,
                  int64_t ldy) { kr->gemm[D](xtp, p.n, W, c0, cn, o0, o1, bias, y, ldy, wbuf.data()); });
  }
}

// BF16Dot (5+ rows): x rounded to bf16 (dot tiles: rows; gemm: panels of pairs of k).
void run_bf16dot(const Bf16DotKernels& kb, const Plan& p) {
  auto u16 = [](const uint8_t* w) { return reinterpret_cast<const uint16_t*>(w); };
  thread_local AlignedVector<uint16_t> xbuf;  // the caller's; workers get its address
  AlignedVector<uint16_t>& xb = xbuf;
  if (p.n < kGemm16MinRows || p.K % 2 != 0) {
    xb.resize(size_t(p.n * p.K));
    for (int64_t r = 0; r < p.n; ++r) from_f32(DType::BF16, p.x + r * p.ldx, xb.data() + r * p.K, size_t(p.K));
    RowChunks chunks(p, 2);
#pragma omp parallel num_threads(p.threads())
    chunks.run([&](const uint8_t* w, int64_t o0, int64_t o1, const float* bias, float* y, int64_t ldy) {
      kb.dot_tiles(xb.data(), p.n, p.K, u16(w), p.K, o0, o1, bias, y, ldy);
    });
    return;
  }
  const int wide = p.n < kGemmMinRows ? 0 : 1;
  const int64_t cols = kb.cols[wide], panels = (p.n + cols - 1) / cols;
  xb.resize(size_t(panels * cols * p.K));
  uint16_t* xbp = xb.data();
  // One narrow panel (batched decode) takes K whole while it fits in half of L2 (K up to
  // 16384 for 16 rows): a weight group is then its rows whole, one run of memory, and there is
  // no barrier between chunks. Zen 5, bench MatmulBf16Dot1536 (1.5B's gate/up: K = 1536, two
  // chunks before), same runs: 12 rows 397-433 -> 451-456 GFLOP/s, 16 rows 516-565 -> 557-616.
  const int64_t kcols = !wide && p.K * cols * 2 <= (int64_t(512) << 10) ? std::max(p.K, kBf16GemmChunkCols)
                                                                       : kBf16GemmChunkCols;
  GemmSplit split(p, kcols, 4 * kb.mr);
#pragma omp parallel num_threads(p.threads())
  {
    // Pack: a panel's rows -> bf16, then transposed as words (pairs of k) into the panel, as the
    // transposed-weight tiles transpose weight rows (the word-by-word scatter took 3 % of a
    // --bf16-dot pp512).
    auto [p0, p1] = thread_share(panels);
    thread_local AlignedVector<uint16_t> rows;
    rows.resize(size_t(cols * p.K));
    for (int64_t pn = p0; pn < p1; ++pn) {
      const int have = int(std::clamp<int64_t>(p.n - pn * cols, 0, cols));  // rows past n: zeros
      for (int c = 0; c < have; ++c)
        from_f32(DType::BF16, p.x + (pn * cols + c) * p.ldx, rows.data() + c * p.K, size_t(p.K));
      kb.pack[wide](rows.data(), p.K, have, p.K, reinterpret_cast<uint32_t*>(xbp + pn * p.K * cols));
    }
#pragma omp barrier
    split.run([&](const GemmWeights& W, int64_t c0, int64_t cn, int64_t o0, int64_t o1, const float* bias, float* y,
                  int64_t ldy) { kb.gemm[wide](xbp, p.n, W, c0, cn, o0, o1, bias, y, ldy); });
  }
}

}  // namespace

#include "infer/attention_dispatch.inc"

void set_matmul_precision(MatmulPrecision p) { g_precision.store(int(p)); }
MatmulPrecision matmul_precision() { return MatmulPrecision(g_precision.load()); }
bool bf16_dot_supported() { return bf16dot_kernels() != nullptr; }
bool attention_bf16_dot_supported() {
  const Bf16DotKernels* kb = bf16dot_kernels();
  return kb && kb->attention_part;
}

namespace {

// matmul_multi on row-major matrices.
void matmul_rows(const float* x, int64_t n, int64_t ldx, std::span<const MatmulOut> outs) {
  const model::Matrix& W0 = *outs[0].W;
  const Plan p{x, n, ldx, W0.cols, outs};
  // Decode-shaped products (up to kGemvMaxRows rows) are bound by memory: the exact gemv
  // streams the weights faster than a vdpbf16ps loop (a 1 GB product on Zen 5, 2 threads:
  // 44-48 vs 40-43 GB/s; 0.5B batch-1 decode 37.9-42.9 vs 35.2-38.2 tok/s, same runs), so
  // BF16Dot starts at the dot tiles.
  if (matmul_precision() == MatmulPrecision::BF16Dot && W0.dtype == DType::BF16 && n > kGemvMaxRows)
    if (const Bf16DotKernels* kb = bf16dot_kernels()) return run_bf16dot(*kb, p);
  const CpuIsa isa = cpu_isa();
  switch (W0.dtype) {
    case DType::F32: run_f32<0>(isa, p); break;
    case DType::BF16: run_f32<1>(isa, p); break;
    case DType::F16: run_f32<2>(isa, p); break;
    default: fail("matmul: unsupported weight dtype {}", dtype_name(W0.dtype));
  }
}

// y[r * ldy + j] += p[r * ldp + j] for r < n, j < rows: a column block's partial sums.
void add_partials(float* y, int64_t ldy, const float* p, int64_t ldp, int64_t n, int64_t rows) {
  for (int64_t r = 0; r < n; ++r)
    for (int64_t j = 0; j < rows; ++j) y[r * ldy + j] += p[r * ldp + j];
}

// Decode-shaped f32 products (below the gemm's rows: gemv or dot tiles) over column blocks in
// one parallel region: the blocks of all outputs, in memory order, are the matrices of one
// RowShares, so each thread streams one contiguous share of all the bytes. Block 0 writes y
// (with the bias), block b > 0 its partial sums to part; they are added in block order
// afterwards, whichever thread made them. (One region per block cost batch-16 decode 5-8 %.)
template <int D>
void decode_column_blocks(CpuIsa isa, const float* x, int64_t n, int64_t ldx, std::span<const MatmulOut> outs) {
  const int64_t nb = outs[0].W->blocks(), kb = outs[0].W->kblock;
  struct Piece {
    model::Matrix W;
    const float* x;
    const float* bias;
    float* y;
    int64_t ldy;
  };
  thread_local std::vector<float> part;
  size_t part_size = 0;
  for (const auto& o : outs) part_size += size_t((nb - 1) * n * o.W->rows);
  part.resize(part_size);
  std::vector<Piece> pieces;
  std::vector<int64_t> rows;
  int64_t macs = 0;
  size_t off = 0;
  for (const auto& o : outs)
    for (int64_t b = 0; b < nb; ++b) {
      const model::Matrix W = o.W->block(b);
      if (b == 0) {
        pieces.push_back({W, x, o.bias, o.y, o.ldy});
      } else {
        pieces.push_back({W, x + b * kb, nullptr, part.data() + off, W.rows});
        off += size_t(n * W.rows);
      }
      rows.push_back(W.rows);
      macs += n * W.rows * W.cols;
    }
  const int threads = macs < kMinParallelMacs ? 1 : omp_get_max_threads();
  RowShares shares(rows, 16, kChunkBytes / std::max<int64_t>(1, 16 * kb * wsize<D>()), threads);
  const IsaKernels& kr = *isa_kernels(isa);  // the caller checked: not the scalar ISA
  const RowsFn rows_fn = n <= kGemvMaxRows ? kr.gemv[D] : kr.dot_tiles[D];
#pragma omp parallel num_threads(threads)
  shares.run([&](size_t i, int64_t o0, int64_t o1) {
    const Piece& p = pieces[i];
    rows_fn(p.x, n, ldx, static_cast<const uint8_t*>(p.W.data), p.W.cols, o0, o1, p.bias, p.y, p.ldy);
  });
  for (size_t i = 0; i < pieces.size(); ++i) {
    if (i % size_t(nb) == 0) continue;  // block 0 wrote y
    const MatmulOut& o = outs[i / size_t(nb)];
    add_partials(o.y, o.ldy, pieces[i].y, pieces[i].ldy, n, pieces[i].W.rows);
  }
}

}  // namespace

void matmul_multi(const float* x, int64_t n, int64_t ldx, std::span<const MatmulOut> outs) {
  if (n <= 0 || outs.empty()) return;
  const model::Matrix& W0 = *outs[0].W;
  for (const auto& o : outs)
    if (o.W->cols != W0.cols || o.W->dtype != W0.dtype || o.W->kblock != W0.kblock)
      fail("matmul_multi: weights differ in shape, dtype or layout ({} vs {} columns)", o.W->cols, W0.cols);
  if (W0.kblock == 0) return matmul_rows(x, n, ldx, outs);
  const CpuIsa isa = cpu_isa();
  const bool bf16dot = matmul_precision() == MatmulPrecision::BF16Dot && W0.dtype == DType::BF16 &&
                       bf16dot_kernels() != nullptr && n > kGemvMaxRows;
  // The gemms read column blocks themselves (GemmWeights): one parallel region, no partial sums.
  if (isa_kernels(isa) && (bf16dot ? n >= kGemm16MinRows && W0.cols % 2 == 0 && W0.kblock % 2 == 0
                                        : f32_gemm_rows(isa, n) || use_tw(isa, W0.dtype, n, GemmWeights(W0))))
    return matmul_rows(x, n, ldx, outs);
  if (!f32_gemm_rows(isa, n) && !bf16dot && isa_kernels(isa)) {
    switch (W0.dtype) {
      case DType::F32: return decode_column_blocks<0>(isa, x, n, ldx, outs);
      case DType::BF16: return decode_column_blocks<1>(isa, x, n, ldx, outs);
      case DType::F16: return decode_column_blocks<2>(isa, x, n, ldx, outs);
      default: break;  // matmul_rows names the dtype it does not support
    }
  }
  // Other shapes (the scalar ISA, --bf16-dot's dot tiles), column blocks one product at a time
  // (model/column_blocks.h): block 0 writes y (with the bias), each further block is computed
  // into `part` and added, so every row-major kernel shape serves them unchanged.
  const size_t m = outs.size();
  std::vector<model::Matrix> blk(m);
  std::vector<MatmulOut> sub(m);
  std::vector<size_t> off(m);
  size_t part_size = 0;
  for (size_t i = 0; i < m; ++i) {
    off[i] = part_size;
    part_size += size_t(n * outs[i].W->rows);
  }
  thread_local std::vector<float> part;
  part.resize(part_size);
  for (int64_t b = 0; b < W0.blocks(); ++b) {
    for (size_t i = 0; i < m; ++i) {
      blk[i] = outs[i].W->block(b);
      sub[i] = b == 0 ? MatmulOut{&blk[i], outs[i].bias, outs[i].y, outs[i].ldy}
                      : MatmulOut{&blk[i], nullptr, part.data() + off[i], outs[i].W->rows};
    }
    matmul_rows(x + b * W0.kblock, n, ldx, sub);
    if (b == 0) continue;
    for (size_t i = 0; i < m; ++i)
      add_partials(outs[i].y, outs[i].ldy, part.data() + off[i], outs[i].W->rows, n, outs[i].W->rows);
  }
}

void matmul(const float* x, int64_t n, int64_t ldx, const model::Matrix& W, const float* bias, float* y,
            int64_t ldy) {
  if (W.rows <= 0) return;
  const MatmulOut o{&W, bias, y, ldy};
  matmul_multi(x, n, ldx, {&o, 1});
}

void rmsnorm(const float* x, const float* w, float* y, int64_t n, double eps) {
  // Eight partial sums in double: one sum was a chain of dependent adds, 4 cycles per element
  // (a 0.5B prefill, perf: 1.0 % -> 0.4 % of the samples).
  double part[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) part[j] += double(x[i + j]) * double(x[i + j]);
  double ss = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
  for (; i < n; ++i) ss += double(x[i]) * double(x[i]);
  const float inv = float(1.0 / std::sqrt(ss / double(n) + eps));
  for (i = 0; i < n; ++i) y[i] = w[i] * (x[i] * inv);
}

float dot(const float* a, const float* b, int64_t n) {
  if (const IsaKernels* kr = isa_kernels(cpu_isa())) return kr->dot(a, b, n);
  float s = 0;
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

void axpy(float a, const float* x, float* y, int64_t n) {
  if (const IsaKernels* kr = isa_kernels(cpu_isa())) return kr->axpy(a, x, y, n);
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

int64_t argmax(const float* x, int64_t n) {
  if (n <= 0) return 0;
  float m = 0;
  if (const IsaKernels* kr = isa_kernels(cpu_isa()); kr && kr->max(x, n, &m)) return kr->find(x, n, m);
  return std::max_element(x, x + n) - x;
}

void scale(float* x, float a, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] *= a;
}

void silu_mul(float* g, const float* u, int64_t n) {
  if (const IsaKernels* kr = isa_kernels(cpu_isa())) return kr->silu_mul(g, u, n);
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
