// Google Benchmark of the inference matmul kernels (GFLOP/s as items/s x 2):
//   build/bench/infer_kernels_bench --benchmark_filter=Matmul
// Shapes are Qwen2.5-0.5B's gate/up projection (4864 x 896) in bf16.
#include <benchmark/benchmark.h>

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

void MatmulF32(benchmark::State& st) { run(st, rvec::infer::MatmulPrecision::F32); }
void MatmulBf16Dot(benchmark::State& st) { run(st, rvec::infer::MatmulPrecision::BF16Dot); }

}  // namespace

BENCHMARK(MatmulF32)->Arg(1)->Arg(16)->Arg(64)->Arg(128)->Arg(256)->UseRealTime();
BENCHMARK(MatmulBf16Dot)->Arg(1)->Arg(16)->Arg(64)->Arg(128)->Arg(256)->UseRealTime();
BENCHMARK_MAIN();
