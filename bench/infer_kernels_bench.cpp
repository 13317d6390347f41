// Google Benchmark of the inference matmul kernels (GFLOP/s as items/s x 2):
//   build/bench/infer_kernels_bench --benchmark_filter=Matmul
// Shapes are Qwen2.5-0.5B's gate/up projection (4864 x 896) in bf16.
// Peak*: the machine's arithmetic peak on all threads (independent FMA / vdpbf16ps chains in
// registers, no memory), the compute bound of prefill and batched decode:
//   OMP_NUM_THREADS=2 build/bench/infer_kernels_bench --benchmark_filter=Peak
#include <benchmark/benchmark.h>
#include <immintrin.h>
#include <omp.h>

#include <random>
#include <vector>

#include "core/dtype.h"
#include "infer/kernels.h"

namespace {

void run(benchmark::State& st, rvec::infer::MatmulPrecision prec) {
  const int64_t n = st.range(0), K = 896, out = 4864;
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
#define RVEC_CHAINS(NAME, TARGET, V, INIT_B, INIT_C, OP)                 \
  __attribute__((target(TARGET), noinline)) float NAME(int64_t iters) { \
    const V b = INIT_B, c = INIT_C;                                      \
    V a[12];                                                             \
    for (int i = 0; i < 12; ++i) a[i] = c;                               \
    for (int64_t it = 0; it < iters; ++it)                               \
      for (int i = 0; i < 12; ++i) a[i] = OP;                            \
    float s = 0;                                                         \
    for (int i = 0; i < 12; ++i) s += reinterpret_cast<const float*>(&a[i])[0]; \
    return s;                                                            \
  }
RVEC_CHAINS(fma512, "avx512f", __m512, _mm512_set1_ps(0.999f), _mm512_set1_ps(1e-3f), _mm512_fmadd_ps(a[i], b, c))
RVEC_CHAINS(fma256, "avx2,fma", __m256, _mm256_set1_ps(0.999f), _mm256_set1_ps(1e-3f), _mm256_fmadd_ps(a[i], b, c))
// bf16 pairs of 1.0 and of a small value, so the sums stay finite
RVEC_CHAINS(dpbf16, "avx512f,avx512bf16", __m512, _mm512_castsi512_ps(_mm512_set1_epi16(0x3f80)),
            _mm512_castsi512_ps(_mm512_set1_epi16(0x3380)), _mm512_dpbf16_ps(a[i], (__m512bh)b, (__m512bh)c))
#undef RVEC_CHAINS

// flops_per_op: 2 per lane for an FMA, 4 per lane for vdpbf16ps (two products, two adds).
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
  if (__builtin_cpu_supports("avx512f")) peak(st, 2.0 * 16, fma512);
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) peak(st, 2.0 * 8, fma256);
  else st.SkipWithError("no AVX2/FMA");
}

void PeakBf16Dot(benchmark::State& st) {
  if (!__builtin_cpu_supports("avx512bf16")) return st.SkipWithError("no AVX512-BF16");
  peak(st, 4.0 * 16, dpbf16);
}

void MatmulF32(benchmark::State& st) { run(st, rvec::infer::MatmulPrecision::F32); }
void MatmulBf16Dot(benchmark::State& st) { run(st, rvec::infer::MatmulPrecision::BF16Dot); }

}  // namespace

BENCHMARK(MatmulF32)->Arg(1)->Arg(16)->Arg(64)->Arg(128)->Arg(256)->UseRealTime();
BENCHMARK(MatmulBf16Dot)->Arg(1)->Arg(16)->Arg(64)->Arg(128)->Arg(256)->UseRealTime();
BENCHMARK(PeakF32Fma)->UseRealTime();
BENCHMARK(PeakBf16Dot)->UseRealTime();
BENCHMARK_MAIN();
