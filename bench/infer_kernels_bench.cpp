// Google Benchmark of the inference matmul kernels (GFLOP/s as items/s x 2):
//   build/bench/infer_kernels_bench --benchmark_filter=Matmul
// Shapes are Qwen2.5-0.5B's gate/up projection (4864 x 896) in bf16 (Matmul*1536: 1.5B's, 8960 x 1536).
// Decode*: batch-1 decode's products over weights far larger than the caches (Qwen2.5-0.5B's
// 24 layers in bf16, 715 MB), as GB/s of weights, against ReadSum (the read-bandwidth loop of
// `rvec bench`) on the same buffers in the same run; the ratio is how close the gemv streams
// to the memory bound, per shape and for the engine's sequence of products:
//   OMP_NUM_THREADS=2 build/bench/infer_kernels_bench --benchmark_filter='Decode|ReadSum' --benchmark_repetitions=3
// Peak*: the machine's arithmetic peak on all threads (independent FMA / vdpbf16ps chains in
// registers, no memory), the compute bound of prefill and batched decode:
//   OMP_NUM_THREADS=2 build/bench/infer_kernels_bench --benchmark_filter=Peak
// AttentionDecode/C/{0,1,2}/{0,1,2}: a batch-1 decode step's attention at context C (one or every
// KV head per work item; 2: every head, keys stored in tiles) with an f32, bf16 or f16 cache, as
// GB/s of K/V cache against a read-sum.
#include <benchmark/benchmark.h>
#include "core/simd.h"
#include <omp.h>

#include <chrono>
#include <random>
#include <vector>

#include "core/cpu.h"
#include "core/dtype.h"
#include "infer/attention.h"
#include "infer/kernels.h"
#include "infer/read_sum.h"
#include "model/column_blocks.h"

namespace {

void run(benchmark::State& st, rvec::infer::MatmulPrecision prec, int64_t K = 896, int64_t out = 4864) {
  const int64_t n = st.range(0);
  std::vector<float> x(n * K), y(n * out), wf(out * K);
  std::mt19937 g(1);
  std::normal_distribution<float> nd(0, 0.02f);
  for (auto& v : x) v = nd(g);
  for (auto& v : wf) v = nd(g);
  std::vector<uint16_t> w(out * K);
  rvec::from_f32(rvec::DType::BF16, wf.data(), w.data(), w.size());
  rvec::model::Matrix W{rvec::DType::BF16, w.data(), out, K};
  rvec::infer::set_matmul_precision(prec);
  for (auto _ : st) {
    rvec::infer::matmul(x.data(), n, K, W, nullptr, y.data(), out);
    benchmark::DoNotOptimize(y.data());
  }
  rvec::infer::set_matmul_precision(rvec::infer::MatmulPrecision::F32);
  st.counters["GFLOPs"] = benchmark::Counter(double(2 * n * K * out), benchmark::Counter::kIsIterationInvariantRate,
                                             benchmark::Counter::kIs1000);
  st.counters["GBps_weights"] = benchmark::Counter(double(out * K * 2), benchmark::Counter::kIsIterationInvariantRate,
                                                   benchmark::Counter::kIs1000);
}

// 12 independent chains (more than FMA latency x ports) of `iters` instructions per thread.
// ATTR: the function's target attribute (empty where the ISA is the baseline, as NEON on AArch64).
#define RVEC_CHAINS(NAME, ATTR, V, INIT_B, INIT_C, OP)                   \
  ATTR __attribute__((noinline)) float NAME(int64_t iters) {            \
    const V b = INIT_B, c = INIT_C;                                      \
    V a[12];                                                             \
    for (int i = 0; i < 12; ++i) a[i] = c;                               \
    for (int64_t it = 0; it < iters; ++it)                               \
      for (int i = 0; i < 12; ++i) a[i] = OP;                            \
    float s = 0;                                                         \
    for (int i = 0; i < 12; ++i) s += reinterpret_cast<const float*>(&a[i])[0]; \
    return s;                                                            \
  }
#if defined(__x86_64__)
RVEC_CHAINS(fma512, __attribute__((target("avx512f"))), __m512, _mm512_set1_ps(0.999f), _mm512_set1_ps(1e-3f),
            _mm512_fmadd_ps(a[i], b, c))
RVEC_CHAINS(fma256, __attribute__((target("avx2,fma"))), __m256, _mm256_set1_ps(0.999f), _mm256_set1_ps(1e-3f),
            _mm256_fmadd_ps(a[i], b, c))
// bf16 pairs of 1.0 and of a small value, so the sums stay finite
RVEC_CHAINS(dpbf16, __attribute__((target("avx512f,avx512bf16"))), __m512,
            _mm512_castsi512_ps(_mm512_set1_epi16(0x3f80)), _mm512_castsi512_ps(_mm512_set1_epi16(0x3380)),
            _mm512_dpbf16_ps(a[i], (__m512bh)b, (__m512bh)c))
#elif defined(__aarch64__)
RVEC_CHAINS(fma128, , float32x4_t, vdupq_n_f32(0.999f), vdupq_n_f32(1e-3f), vfmaq_f32(c, a[i], b))
#if !defined(__clang__) || defined(__ARM_FEATURE_BF16)  // as kernels.cpp's Arm BF16 kernels
// The bf16 patterns come from volatiles: GCC 12 emits a constant bf16 vector as `fmov v.8h`
// with the value read as fp16 (0x3f80 became 0x3c00), which needs +fp16 and is wrong anyway.
volatile uint32_t g_bf16_one = 0x3f803f80, g_bf16_small = 0x33803380;
RVEC_CHAINS(bfdot128, __attribute__((target("arch=armv8.2-a+bf16"))), float32x4_t,
            vreinterpretq_f32_u32(vdupq_n_u32(g_bf16_one)), vreinterpretq_f32_u32(vdupq_n_u32(g_bf16_small)),
            vbfdotq_f32(a[i], vreinterpretq_bf16_f32(b), vreinterpretq_bf16_f32(c)))
#define RVEC_HAVE_BFDOT128 1
#endif
#endif
#undef RVEC_CHAINS

// flops_per_op: 2 per lane for an FMA, 4 per lane for vdpbf16ps / BFDOT (two products, two adds).
template <class F>
void peak(benchmark::State& st, double flops_per_op, F&& run_chains) {
  const int64_t iters = 1 << 22;
  float sink = 0;
  for (auto _ : st) {
#pragma omp parallel reduction(+ : sink)
    sink += run_chains(iters);
  }
  benchmark::DoNotOptimize(sink);
  st.counters["GFLOPs"] = benchmark::Counter(double(omp_get_max_threads()) * double(iters) * 12 * flops_per_op,
                                             benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

void PeakF32Fma(benchmark::State& st) {
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx512f")) peak(st, 2.0 * 16, fma512);
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) peak(st, 2.0 * 8, fma256);
  else st.SkipWithError("no AVX2/FMA");
#elif defined(__aarch64__)
  peak(st, 2.0 * 4, fma128);
#else
  st.SkipWithError("no SIMD FMA kernel for this architecture");
#endif
}

void PeakBf16Dot(benchmark::State& st) {
  if (!rvec::cpu_has_bf16_dot()) return st.SkipWithError("no bf16 dot product (AVX512-BF16, Arm BF16)");
#if defined(__x86_64__)
  peak(st, 4.0 * 16, dpbf16);
#elif defined(RVEC_HAVE_BFDOT128)
  peak(st, 4.0 * 4, bfdot128);
#else
  st.SkipWithError("no bf16 dot-product chain in this build");
#endif
}

// Qwen2.5-0.5B's layer weights in bf16 (values do not matter for speed: a cheap pattern).
struct DecodeLayers {
  static constexpr int64_t L = 24, H = 896, KVD = 128, I = 4864;
  std::vector<std::vector<uint16_t>> q, k, v, o, gate, up, down;
  DecodeLayers() {
    uint32_t s = 12345;
    auto make = [&](int64_t rows, int64_t cols) {
      std::vector<uint16_t> w(size_t(rows * cols));
      for (auto& x : w) {
        s ^= s << 13, s ^= s >> 17, s ^= s << 5;
        x = uint16_t(0x3c00 + (s & 0x3ff)) | uint16_t((s >> 16) & 0x8000);  // +-[0.0078, 0.0156)
      }
      return w;
    };
    for (int64_t l = 0; l < L; ++l) {
      q.push_back(make(H, H)), k.push_back(make(KVD, H)), v.push_back(make(KVD, H)), o.push_back(make(H, H));
      gate.push_back(make(I, H)), up.push_back(make(I, H)), down.push_back(make(H, I));
    }
  }
  static const DecodeLayers& get() {
    static const DecodeLayers d;
    return d;
  }
  static rvec::model::Matrix m(const std::vector<uint16_t>& w, int64_t rows, int64_t cols) {
    return {rvec::DType::BF16, w.data(), rows, cols};
  }
};

// shape: 0 all products in the engine's order, 1 q/k/v + o only, 2 gate/up only, 3 down only.
void Decode(benchmark::State& st) {
  const auto& d = DecodeLayers::get();
  const int64_t H = d.H, KVD = d.KVD, I = d.I, shape = st.range(0);
  std::vector<float> x(size_t(I), 0.01f), q(H), k(KVD), v(KVD), y(H), g(I), u(I);
  double bytes = 0;
  for (auto _ : st) {
    bytes = 0;
    for (int64_t l = 0; l < d.L; ++l) {
      if (shape <= 1) {
        const auto Wq = d.m(d.q[l], H, H), Wk = d.m(d.k[l], KVD, H), Wv = d.m(d.v[l], KVD, H), Wo = d.m(d.o[l], H, H);
        const rvec::infer::MatmulOut qkv[] = {{&Wq, nullptr, q.data(), H}, {&Wk, nullptr, k.data(), KVD},
                                              {&Wv, nullptr, v.data(), KVD}};
        rvec::infer::matmul_multi(x.data(), 1, H, qkv);
        rvec::infer::matmul(q.data(), 1, H, Wo, nullptr, y.data(), H);
        bytes += double(2 * H * H + 2 * KVD * H) * 2;
      }
      if (shape == 0 || shape == 2) {
        const auto Wg = d.m(d.gate[l], I, H), Wu = d.m(d.up[l], I, H);
        const rvec::infer::MatmulOut gu[] = {{&Wg, nullptr, g.data(), I}, {&Wu, nullptr, u.data(), I}};
        rvec::infer::matmul_multi(x.data(), 1, H, gu);
        bytes += double(2 * I * H) * 2;
      }
      if (shape == 0 || shape == 3) {
        rvec::infer::matmul(x.data(), 1, I, d.m(d.down[l], H, I), nullptr, y.data(), H);
        bytes += double(H * I) * 2;
      }
    }
    benchmark::DoNotOptimize(y.data());
  }
  st.counters["GBps"] = benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

// Batched decode's products: all of DecodeLayers' products in the engine's order for `rows`
// x rows (st.range(0)), exact f32 (st.range(1) = 0) or --bf16-dot (1), with weights streaming
// from memory as in the engine (715 MB, far larger than the caches); the kernel benchmarks
// above keep their 8.7 MB matrix in cache. GFLOPs and GB/s of weights:
//   OMP_NUM_THREADS=2 build/bench/infer_kernels_bench --benchmark_filter='DecodeBatch|ReadSum'
void DecodeBatch(benchmark::State& st) {
  const auto& d = DecodeLayers::get();
  const int64_t H = d.H, KVD = d.KVD, I = d.I, n = st.range(0);
  std::vector<float> x(size_t(n * I), 0.01f), q(size_t(n * H)), k(size_t(n * KVD)), v(size_t(n * KVD)),
      y(size_t(n * H)), g(size_t(n * I)), u(size_t(n * I));
  rvec::infer::set_matmul_precision(st.range(1) ? rvec::infer::MatmulPrecision::BF16Dot
                                                : rvec::infer::MatmulPrecision::F32);
  for (auto _ : st) {
    for (int64_t l = 0; l < d.L; ++l) {
      const auto Wq = d.m(d.q[l], H, H), Wk = d.m(d.k[l], KVD, H), Wv = d.m(d.v[l], KVD, H), Wo = d.m(d.o[l], H, H);
      const rvec::infer::MatmulOut qkv[] = {{&Wq, nullptr, q.data(), H}, {&Wk, nullptr, k.data(), KVD},
                                            {&Wv, nullptr, v.data(), KVD}};
      rvec::infer::matmul_multi(x.data(), n, H, qkv);
      rvec::infer::matmul(q.data(), n, H, Wo, nullptr, y.data(), H);
      const auto Wg = d.m(d.gate[l], I, H), Wu = d.m(d.up[l], I, H);
      const rvec::infer::MatmulOut gu[] = {{&Wg, nullptr, g.data(), I}, {&Wu, nullptr, u.data(), I}};
      rvec::infer::matmul_multi(x.data(), n, H, gu);
      rvec::infer::matmul(x.data(), n, I, d.m(d.down[l], H, I), nullptr, y.data(), H);
    }
    benchmark::DoNotOptimize(y.data());
  }
  rvec::infer::set_matmul_precision(rvec::infer::MatmulPrecision::F32);
  const double weights = double(d.L * (2 * H * H + 2 * KVD * H + 3 * I * H));
  st.counters["GBps"] = benchmark::Counter(weights * 2, benchmark::Counter::kIsIterationInvariantRate,
                                           benchmark::Counter::kIs1000);
  st.counters["GFLOPs"] = benchmark::Counter(weights * 2 * double(n), benchmark::Counter::kIsIterationInvariantRate,
                                             benchmark::Counter::kIs1000);
}

// The read loop of `rvec bench` (8 independent 64-bit sums per thread) over the same weights.
void ReadSum(benchmark::State& st) {
  const auto& d = DecodeLayers::get();
  std::vector<const std::vector<uint16_t>*> bufs;
  for (int64_t l = 0; l < d.L; ++l)
    for (auto* b : {&d.q[l], &d.k[l], &d.v[l], &d.o[l], &d.gate[l], &d.up[l], &d.down[l]}) bufs.push_back(b);
  double bytes = 0;
  uint64_t sink = 0;
  for (auto _ : st) {
    bytes = 0;
    for (auto* b : bufs) {
      const auto* a = reinterpret_cast<const uint64_t*>(b->data());
      const size_t n = b->size() * 2 / 8;
      bytes += double(n * 8);
#pragma omp parallel reduction(+ : sink)
      sink += rvec::infer::read_sum_share(a, n);
    }
  }
  benchmark::DoNotOptimize(sink);
  st.counters["GBps"] = benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

// Each iteration runs work() and then a read-sum of the matrices `ms` (the same bytes), timed
// apart: GBps is work's rate over `bytes` per iteration, of_read_sum its rate over the read-sum's.
template <class Work>
void against_read_sum(benchmark::State& st, const std::vector<const rvec::model::Matrix*>& ms, double bytes,
                      Work&& work) {
  double work_s = 0, read_s = 0;
  uint64_t sink = 0;
  for (auto _ : st) {
    auto t0 = std::chrono::steady_clock::now();
    work();
    auto t1 = std::chrono::steady_clock::now();
    sink += rvec::infer::read_sum_matrices(ms);
    auto t2 = std::chrono::steady_clock::now();
    work_s += std::chrono::duration<double>(t1 - t0).count();
    read_s += std::chrono::duration<double>(t2 - t1).count();
  }
  benchmark::DoNotOptimize(sink);
  const double total = bytes * double(st.iterations());
  st.counters["GBps"] = total / work_s / 1e9;
  st.counters["read_sum_GBps"] = total / read_s / 1e9;
  st.counters["of_read_sum"] = read_s / work_s;
}

// The down projections (896 x 4864) of DecodeLayers as batch-1 products, row-major (width 0) or
// as column blocks of `width` (model/column_blocks.h), each iteration followed by a read-sum of
// the same bytes: of_read_sum is the products' rate over the read-sum's in the same seconds.
//   OMP_NUM_THREADS=2 build/bench/infer_kernels_bench --benchmark_filter=DecodeDown
void DecodeDown(benchmark::State& st) {
  const auto& d = DecodeLayers::get();
  const int64_t H = d.H, I = d.I, width = st.range(0);
  std::vector<rvec::model::OwnedBytes> blocked;
  std::vector<rvec::model::Matrix> ms;
  for (int64_t l = 0; l < d.L; ++l) {
    ms.push_back(d.m(d.down[l], H, I));
    if (width > 0) blocked.push_back(rvec::model::copy_to_column_blocks(ms.back(), width));
  }
  std::vector<const rvec::model::Matrix*> ptrs;
  for (const auto& m : ms) ptrs.push_back(&m);
  std::vector<float> x(static_cast<size_t>(I), 0.01f), y(static_cast<size_t>(H));
  against_read_sum(st, ptrs, double(d.L * H * I * 2), [&] {
    for (const auto& m : ms) rvec::infer::matmul(x.data(), 1, I, m, nullptr, y.data(), H);
    benchmark::DoNotOptimize(y.data());
  });
}

// One batch-1 decode step's attention at context C (st.range(0)) on a Qwen2.5-0.5B shape (24
// layers, 2 KV heads of 64, 7 query heads each, f32 cache: 24 x C x 1 KB), split as the engine
// splits it: 512-position partitions on all threads, each item one KV head (range(1) = 0) or
// both (1; 2: both, with the keys transposed in tiles as the engine stores them), then merged.
// range(2): the cache's element type with tiled keys (0 f32, 1 bf16, 2 f16: --kv-cache-dtype; 3:
// bf16 read with bf16 dot products, as under --bf16-dot).
// Each iteration is followed by a read-sum of the same cache bytes: of_read_sum is the
// attention's rate over the read-sum's in the same seconds (GBps counts the cache's own bytes).
//   OMP_NUM_THREADS=2 build/bench/infer_kernels_bench --benchmark_filter=AttentionDecode
void AttentionDecode(benchmark::State& st) {
  constexpr int64_t L = 24, KVH = 2, G = 7, hd = 64, KVD = KVH * hd, QD = KVH * G * hd;
  const int64_t C = st.range(0), per_item = st.range(1) ? KVH : 1;
  const bool tiled = st.range(1) == 2;  // keys stored transposed in tiles (the engine's cache)
  const rvec::DType dt = st.range(2) == 0 ? rvec::DType::F32 : st.range(2) == 2 ? rvec::DType::F16 : rvec::DType::BF16;
  const int64_t es = int64_t(rvec::dtype_size(dt));
  std::vector<std::vector<uint8_t>> k(L), v(L);
  std::mt19937 gen(3);
  std::normal_distribution<float> nd(0, 1);
  std::vector<float> vals;
  for (int64_t l = 0; l < L; ++l) {
    k[size_t(l)].resize(size_t(rvec::infer::attention_key_floats(C, KVD) * es));
    v[size_t(l)].resize(size_t(C * KVD * es));
    for (auto* b : {&k[size_t(l)], &v[size_t(l)]}) {
      vals.resize(b->size() / size_t(es));
      for (auto& x : vals) x = nd(gen);
      rvec::from_f32(dt, vals.data(), b->data(), vals.size());
    }
  }
  std::vector<float> q(QD), out(QD);
  for (auto& x : q) x = nd(gen) * 0.1f;
  auto args = [&](int64_t l, int64_t g, int64_t ng) {
    rvec::infer::AttentionArgs a{q.data() + g * G * hd,
                                 QD,
                                 G,
                                 hd,
                                 rvec::infer::attention_kv_advance(
                                     k[size_t(l)].data(), rvec::infer::attention_key_head_offset(g, hd, tiled), dt),
                                 rvec::infer::attention_kv_advance(v[size_t(l)].data(), g * hd, dt),
                                 KVD,
                                 1,
                                 C - 1,
                                 0.125f,
                                 ng,
                                 tiled};
    a.kv_dtype = dt;
    a.bf16_dot = st.range(2) == 3;
    return a;
  };
  const int64_t np = rvec::infer::attention_partitions(args(0, 0, 1));
  const int64_t part = rvec::infer::attention_partial_floats(args(0, 0, 1));  // one head's
  std::vector<float> partials(size_t(np * KVH * part));
  std::vector<const rvec::model::Matrix*> ptrs;
  std::vector<rvec::model::Matrix> ms;
  for (int64_t l = 0; l < L; ++l)
    for (auto* b : {&k[size_t(l)], &v[size_t(l)]}) ms.push_back({dt, b->data(), C, KVD});  // C rows read
  for (const auto& m : ms) ptrs.push_back(&m);
  against_read_sum(st, ptrs, double(L * C * KVD * es * 2), [&] {
    for (int64_t l = 0; l < L; ++l) {
#pragma omp parallel
      {
#pragma omp for schedule(dynamic, 1)
        for (int64_t it = 0; it < np * (KVH / per_item); ++it) {
          const int64_t j = it / (KVH / per_item), g = it % (KVH / per_item) * per_item;
          rvec::infer::attention_partial(args(l, g, per_item), j, partials.data() + (j * KVH + g) * part);
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t g = 0; g < KVH; g += per_item)
          rvec::infer::attention_merge(args(l, g, per_item), partials.data() + g * part, KVH * part,
                                       out.data() + g * G * hd, QD);
      }
    }
    benchmark::DoNotOptimize(out.data());
  });
}

void MatmulF32(benchmark::State& st) { run(st, rvec::infer::MatmulPrecision::F32); }
void MatmulBf16Dot(benchmark::State& st) { run(st, rvec::infer::MatmulPrecision::BF16Dot); }
// Qwen2.5-1.5B's gate/up shape (8960 x 1536, 27.5 MB in bf16): K over more than one 1024-column chunk.
void MatmulF32_1536(benchmark::State& st) { run(st, rvec::infer::MatmulPrecision::F32, 1536, 8960); }
void MatmulBf16Dot1536(benchmark::State& st) { run(st, rvec::infer::MatmulPrecision::BF16Dot, 1536, 8960); }
// Qwen2.5-1.5B's lm_head (151936 x 1536, 467 MB in bf16): weights streamed from DRAM, not L3.
void MatmulF32LmHead1536(benchmark::State& st) { run(st, rvec::infer::MatmulPrecision::F32, 1536, 151936); }
void MatmulBf16DotLmHead1536(benchmark::State& st) { run(st, rvec::infer::MatmulPrecision::BF16Dot, 1536, 151936); }

}  // namespace

BENCHMARK(MatmulF32)->Arg(1)->Arg(16)->Arg(64)->Arg(128)->Arg(256)->UseRealTime();
BENCHMARK(MatmulBf16Dot)->Arg(1)->Arg(16)->Arg(64)->Arg(128)->Arg(256)->UseRealTime();
BENCHMARK(MatmulF32_1536)->Arg(12)->Arg(16)->Arg(64)->UseRealTime();
BENCHMARK(MatmulBf16Dot1536)->Arg(12)->Arg(16)->Arg(64)->UseRealTime();
BENCHMARK(MatmulF32LmHead1536)->Arg(7)->Arg(16)->Arg(32)->Arg(64)->UseRealTime()->MinTime(2.0);
BENCHMARK(MatmulBf16DotLmHead1536)->Arg(7)->Arg(16)->Arg(64)->UseRealTime()->MinTime(2.0);
BENCHMARK(DecodeBatch)->ArgsProduct({{5, 7, 8, 12, 13, 16, 24, 32, 64, 128, 512}, {0, 1}})->UseRealTime()->MinTime(1.0);
BENCHMARK(ReadSum)->UseRealTime()->MinTime(1.0);
BENCHMARK(Decode)->Arg(0)->Arg(1)->Arg(2)->Arg(3)->UseRealTime()->MinTime(1.0);
BENCHMARK(DecodeDown)->Arg(0)->Arg(1024)->Arg(2048)->UseRealTime()->MinTime(2.0);
BENCHMARK(AttentionDecode)->ArgsProduct({{1024, 4096, 16384}, {0, 1, 2}, {0}})->UseRealTime()->MinTime(1.0);
BENCHMARK(AttentionDecode)->ArgsProduct({{1024, 4096, 16384}, {2}, {1, 2, 3}})->UseRealTime()->MinTime(1.0);
BENCHMARK(PeakF32Fma)->UseRealTime();
BENCHMARK(PeakBf16Dot)->UseRealTime();
BENCHMARK_MAIN();
