#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include <omp.h>

#include "core/cpu.h"
#include "core/dtype.h"
#include "core/error.h"
#include "infer/kernels.h"
#include "model/column_blocks.h"
#include "isa_guard.h"

using namespace rvec;
using namespace rvec::infer;
using rvec::testing::IsaGuard;

namespace {

// Reference: double accumulation over the dequantised weights.
std::vector<double> ref_matmul(const std::vector<float>& x, int64_t n, int64_t K, const std::vector<float>& w,
                               int64_t out, const std::vector<float>& bias) {
  std::vector<double> y(n * out);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t o = 0; o < out; ++o) {
      double s = bias.empty() ? 0 : bias[o];
      for (int64_t k = 0; k < K; ++k) s += double(x[r * K + k]) * double(w[o * K + k]);
      y[r * out + o] = s;
    }
  return y;
}

void check_matmul(DType dt, int64_t n, int64_t K, int64_t out, bool with_bias) {
  std::mt19937 g(unsigned(n * 1000 + K * 10 + out));
  std::normal_distribution<float> nd;
  std::vector<float> x(n * K), wf(out * K), bias;
  for (auto& v : x) v = nd(g);
  for (auto& v : wf) v = nd(g);
  if (with_bias)
    for (int64_t o = 0; o < out; ++o) bias.push_back(nd(g));
  std::vector<uint8_t> wraw(out * K * dtype_size(dt));
  from_f32(dt, wf.data(), wraw.data(), wf.size());
  to_f32(dt, wraw.data(), wf.data(), wf.size());  // the values the kernel really sees
  auto ref = ref_matmul(x, n, K, wf, out, bias);
  model::Matrix W{dt, wraw.data(), out, K};
  std::vector<float> y(n * out, -1);
  matmul(x.data(), n, K, W, with_bias ? bias.data() : nullptr, y.data(), out);
  for (int64_t i = 0; i < n * out; ++i)
    ASSERT_NEAR(y[i], ref[i], 1e-4 * std::sqrt(double(K)) + 1e-5)
        << dtype_name(dt) << " n=" << n << " K=" << K << " out=" << out << " i=" << i
        << " isa=" << cpu_isa_name(cpu_isa());
}

// x (n x K), weights (out x K, stored as dt and read back: the values a kernel sees) and a
// bias, all normal(0, 1) from one seed.
struct RandomProduct {
  std::vector<float> x, wf, bias;
  std::vector<uint8_t> w;  // wf stored as dt
};
RandomProduct random_product(unsigned seed, DType dt, int64_t n, int64_t K, int64_t out) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd;
  RandomProduct p{std::vector<float>(size_t(n * K)), std::vector<float>(size_t(out * K)), std::vector<float>(size_t(out)),
                  std::vector<uint8_t>(size_t(out * K) * dtype_size(dt))};
  for (auto* v : {&p.x, &p.wf, &p.bias})
    for (auto& e : *v) e = nd(g);
  from_f32(dt, p.wf.data(), p.w.data(), p.wf.size());
  to_f32(dt, p.w.data(), p.wf.data(), p.wf.size());
  return p;
}

}  // namespace

TEST(Kernels, MatmulAllIsasDtypesAndShapes) {
  IsaGuard guard;
  for (CpuIsa isa : cpu_isas_supported()) {
    set_cpu_isa_for_testing(isa);
    for (DType dt : {DType::F32, DType::BF16, DType::F16})
      // n picks the loop shape (kernels.cpp): gemv (1, 3), dot tiles (7, 9, 13, 31, 33, 63; with
      // AVX2 31 and 63 take the gemm, whose 16-row panels they nearly fill), gemm (100, 130:
      // padded last panels). K: vector tails (37, 67), long rows (2100); out:
      // tails of every tile width (5, 19, 33, 70), many row chunks and dot blocks (2100).
      for (auto [n, K, out] : {std::tuple{1, 64, 33}, {3, 37, 5}, {7, 128, 70}, {100, 2100, 19}, {9, 1100, 3},
                               {13, 64, 2100}, {31, 40, 25}, {33, 67, 29}, {63, 1100, 29}, {130, 67, 29}})
        check_matmul(dt, n, K, out, (n + K) % 2 == 1);
  }
}

// Column blocks (Matrix::kblock, model/column_blocks.h), laid out here by hand from the
// header's definition: every loop shape over blocked weights matches the reference, alone
// and in matmul_multi (the bias on block 0 only, the other blocks added in).
TEST(Kernels, ColumnBlockedWeightsGiveTheReferenceProducts) {
  IsaGuard guard;
  for (CpuIsa isa : cpu_isas_supported()) {
    set_cpu_isa_for_testing(isa);
    for (DType dt : {DType::F32, DType::BF16})
      // gemv (1, 3), dot tiles (7, 12, 20, 40), gemm (100, 64: blocks narrower than its 1024-column
      // chunks, one not a multiple of the vector width); widths that divide K and that leave a
      // narrow last block (2100 = 4 x 512 + 52). With --bf16-dot: dot tiles (7), 16-row
      // panels (12), 32-row panels (40, 100, 64).
      for (auto [n, K, width] : {std::tuple{1, 2100, 512}, {3, 1100, 256}, {7, 2100, 1024}, {12, 2100, 512}, {20, 1100, 333},
                                 {40, 1100, 512}, {100, 2100, 1024}, {64, 1100, 333}, {1, 96, 32}}) {
        const int64_t outs[2] = {33, 70};
        std::mt19937 g(unsigned(n + K + width));
        std::normal_distribution<float> nd;
        std::vector<float> x(size_t(n * K)), bias(static_cast<size_t>(outs[0]));
        for (auto& v : x) v = nd(g);
        for (auto& v : bias) v = nd(g);
        std::vector<std::vector<float>> wf(2);
        std::vector<std::vector<uint8_t>> blocked(2);
        std::vector<model::Matrix> W(2);
        std::vector<std::vector<float>> y(2);
        std::vector<MatmulOut> mo;
        for (int i = 0; i < 2; ++i) {
          const int64_t out = outs[i], es = int64_t(dtype_size(dt));
          wf[i].resize(size_t(out * K));
          for (auto& v : wf[i]) v = nd(g);
          std::vector<uint8_t> raw(size_t(out * K * es));
          from_f32(dt, wf[i].data(), raw.data(), wf[i].size());
          to_f32(dt, raw.data(), wf[i].data(), wf[i].size());
          blocked[i].resize(raw.size());
          int64_t off = 0;  // block b: [out, wb] row-major, right after block b - 1
          for (int64_t c0 = 0; c0 < K; c0 += width) {
            const int64_t wb = std::min<int64_t>(width, K - c0);
            for (int64_t r = 0; r < out; ++r)
              std::memcpy(&blocked[i][size_t((off + r * wb) * es)], &raw[size_t((r * K + c0) * es)], size_t(wb * es));
            off += out * wb;
          }
          W[i] = model::Matrix{dt, blocked[i].data(), out, K, width};
          y[i].assign(size_t(n * out), -1.f);
        }
        for (int i = 0; i < 2; ++i) mo.push_back({&W[i], i == 0 ? bias.data() : nullptr, y[i].data(), outs[i]});
        matmul_multi(x.data(), n, K, mo);
        // --bf16-dot over the blocks: the same products as over the row-major weights (x rounded
        // to bf16 alike; only the order of the sums differs).
        if (dt == DType::BF16 && cpu_has_bf16_dot() && n > 4) {  // this ISA's bf16 dot product
          std::vector<std::vector<float>> yd(2), yr(2);
          std::vector<std::vector<uint8_t>> raw(2);
          std::vector<model::Matrix> R(2);
          std::vector<MatmulOut> md, mr;
          for (int i = 0; i < 2; ++i) {
            raw[i].resize(size_t(outs[i] * K * 2));
            from_f32(dt, wf[i].data(), raw[i].data(), wf[i].size());
            R[i] = model::Matrix{dt, raw[i].data(), outs[i], K};
            yd[i].assign(size_t(n * outs[i]), -1.f);
            yr[i].assign(size_t(n * outs[i]), -2.f);
          }
          for (int i = 0; i < 2; ++i) {
            md.push_back({&W[i], i == 0 ? bias.data() : nullptr, yd[i].data(), outs[i]});
            mr.push_back({&R[i], i == 0 ? bias.data() : nullptr, yr[i].data(), outs[i]});
          }
          set_matmul_precision(MatmulPrecision::BF16Dot);
          matmul_multi(x.data(), n, K, md);
          matmul_multi(x.data(), n, K, mr);
          set_matmul_precision(MatmulPrecision::F32);
          for (int i = 0; i < 2; ++i)
            for (int64_t j = 0; j < n * outs[i]; ++j)
              ASSERT_NEAR(yd[i][size_t(j)], yr[i][size_t(j)], 1e-5 * std::sqrt(double(K)))
                  << "bf16-dot n=" << n << " K=" << K << " width=" << width << " out " << i << " j=" << j;
        }
        for (int i = 0; i < 2; ++i) {
          const auto ref = ref_matmul(x, n, K, wf[i], outs[i], i == 0 ? bias : std::vector<float>{});
          for (int64_t j = 0; j < n * outs[i]; ++j)
            ASSERT_NEAR(y[i][size_t(j)], ref[size_t(j)], 1e-4 * std::sqrt(double(K)) + 1e-5)
                << dtype_name(dt) << " n=" << n << " K=" << K << " width=" << width << " out " << i << " j=" << j
                << " isa=" << cpu_isa_name(cpu_isa());
        }
      }
  }
}

// From 17 rows up (the transposed-weight tiles, then the gemm from 64) the exact path sums
// every output in the same order whatever the number of rows: a row's products are the same
// bits alone in a batch of 17 as in one of 100 (AVX-512, bf16 weights, even K and block
// widths). Shapes: K over several 1024-column chunks and over a 4096-column group (5000),
// column blocks (1024 wide, and 512 with a narrow last block), outputs that end in a
// partial 32-row tile (70 = 2 x 32 + 6, 29 < 32 with a 13-row half), uneven passes (17 rows
// = 6 + 6 + 5, 25 = 7 + 7 + 7 + 4).
TEST(Kernels, ExactProductsFrom17RowsDoNotDependOnTheBatch) {
  IsaGuard guard;
  set_cpu_isa_for_testing(CpuIsa::AVX512);
  if (cpu_isa() != CpuIsa::AVX512) GTEST_SKIP() << "no AVX-512";
  for (auto [K, out, width] : {std::tuple{2100, 70, 0}, {5000, 29, 0}, {2100, 70, 512}, {4864, 40, 1024}}) {
    const int64_t N = 100;
    auto [x, wf, bias, w] = random_product(unsigned(K + out + width), DType::BF16, N, K, out);
    model::Matrix W{DType::BF16, w.data(), out, K};
    model::OwnedBytes blocked;  // the layout itself is tested above, by hand
    if (width > 0) blocked = model::copy_to_column_blocks(W, width);
    std::vector<float> all(size_t(N * out), -1.f);
    matmul(x.data(), N, K, W, bias.data(), all.data(), out);
    const auto ref = ref_matmul(x, N, K, wf, out, bias);
    for (int64_t i = 0; i < N * out; ++i)
      ASSERT_NEAR(all[size_t(i)], ref[size_t(i)], 1e-4 * std::sqrt(double(K))) << "K=" << K << " i=" << i;
    for (int64_t n : {17, 25, 40, 63, 64}) {
      std::vector<float> y(size_t(n * out), -1.f);
      matmul(x.data(), n, K, W, bias.data(), y.data(), out);
      for (int64_t i = 0; i < n * out; ++i)
        ASSERT_EQ(y[size_t(i)], all[size_t(i)]) << "K=" << K << " out=" << out << " width=" << width << " n=" << n
                                                << " row " << i / out << " output " << i % out;
    }
    // Below 17 rows (dot tiles) the order differs: within f32 rounding, not the same bits.
    std::vector<float> y(size_t(16 * out));
    matmul(x.data(), 16, K, W, bias.data(), y.data(), out);
    for (int64_t i = 0; i < 16 * out; ++i) ASSERT_NEAR(y[size_t(i)], all[size_t(i)], 1e-4 * std::sqrt(double(K)));
  }
}

// The dot tiles (5-16 rows) sum each output in one order whatever tile holds its row: x rows
// go in groups of about even size (16 = 6 + 6 + 4, 13 = 5 + 5 + 3, 7 = 4 + 3 with AVX-512),
// weight rows in tiles of up to four with zeros standing in for the missing ones (70 outputs
// end in a tile of 2), and a K tail past the vector width (1100). So a row's products are the same bits
// alone in a batch of 5 as in one of 16, row-major or in column blocks, with every SIMD ISA.
TEST(Kernels, ExactDotTileProductsDoNotDependOnTheBatch) {
  IsaGuard guard;
  for (CpuIsa isa : cpu_isas_supported()) {
    if (isa == CpuIsa::Scalar) continue;
    set_cpu_isa_for_testing(isa);
    for (DType dt : {DType::BF16, DType::F32})
      for (auto [K, out, width] : {std::tuple{1100, 70, 0}, {896, 29, 0}, {2100, 70, 512}}) {
        const int64_t N = 16;
        auto [x, wf, bias, w] = random_product(unsigned(K + out + width), dt, N, K, out);
        model::Matrix W{dt, w.data(), out, K};
        model::OwnedBytes blocked;
        if (width > 0) blocked = model::copy_to_column_blocks(W, width);
        std::vector<float> all(size_t(N * out), -1.f);
        matmul(x.data(), N, K, W, bias.data(), all.data(), out);
        for (int64_t n = 5; n < N; ++n) {
          std::vector<float> y(size_t(n * out), -1.f);
          matmul(x.data(), n, K, W, bias.data(), y.data(), out);
          for (int64_t i = 0; i < n * out; ++i)
            ASSERT_EQ(y[size_t(i)], all[size_t(i)]) << cpu_isa_name(isa) << " " << dtype_name(dt) << " K=" << K
                                                    << " width=" << width << " n=" << n << " row " << i / out
                                                    << " output " << i % out;
        }
      }
  }
}

TEST(Kernels, MatmulMultiRefusesMixedLayouts) {
  std::vector<float> w(64 * 8, 0.f), x(64, 1.f), y(16);
  const model::Matrix a{DType::F32, w.data(), 8, 64, 0}, b{DType::F32, w.data(), 8, 64, 32};
  const MatmulOut o[] = {{&a, nullptr, y.data(), 8}, {&b, nullptr, y.data() + 8, 8}};
  EXPECT_THROW(matmul_multi(x.data(), 1, 64, o), rvec::Error);
}

TEST(Kernels, MatmulBf16DotWithinBf16Error) {
  if (!cpu_has_bf16_dot()) GTEST_SKIP() << "no bf16 dot product (AVX512-BF16, Arm BF16)";
  // decode (n <= 4: the exact gemv), dot tiles (5..7 rows, and any rows with an odd K: 6-row x
  // 4-weight-row tiles, row and weight tails, a masked K tail), the gemm in 16-row panels
  // (8..16 rows) and in 32-row panels (17+ rows), pairs of k, with tails; the gemm takes K in
  // blocks of 1024 (partial sums through y: 2100 = three blocks, 1030 = a 6-element last
  // block) and prefetches whole next groups of 12 weight rows (out 50, 97).
  for (auto [n, K, out] : {std::tuple{1, 300, 40}, {4, 33, 7}, {5, 64, 39}, {7, 300, 40}, {13, 301, 40},
                           {20, 33, 9}, {8, 300, 50}, {11, 2100, 29}, {16, 1030, 97}, {17, 64, 25},
                           {31, 300, 42}, {40, 300, 29}, {70, 64, 13}, {40, 2100, 50}, {64, 1030, 97}}) {
    std::mt19937 g(unsigned(5 + n));
    std::normal_distribution<float> nd;
    std::vector<float> x(n * K), wf(out * K);
    for (auto& v : x) v = nd(g);
    for (auto& v : wf) v = nd(g);
    std::vector<uint16_t> wb(wf.size());
    from_f32(DType::BF16, wf.data(), wb.data(), wf.size());
    to_f32(DType::BF16, wb.data(), wf.data(), wf.size());
    // Expected: activations rounded to bf16, exact products, f32-ish sums.
    std::vector<float> xr(x.size());
    for (size_t i = 0; i < x.size(); ++i) xr[i] = bf16_to_f32(f32_to_bf16(x[i]));
    auto ref = ref_matmul(xr, n, K, wf, out, {});
    auto exact = ref_matmul(x, n, K, wf, out, {});
    set_matmul_precision(MatmulPrecision::BF16Dot);
    std::vector<float> y(n * out);
    matmul(x.data(), n, K, model::Matrix{DType::BF16, wb.data(), out, K}, nullptr, y.data(), out);
    set_matmul_precision(MatmulPrecision::F32);
    if (n <= 4) {  // decode shapes take the exact gemv: the same bits as the F32 precision
      std::vector<float> yf(n * out);
      matmul(x.data(), n, K, model::Matrix{DType::BF16, wb.data(), out, K}, nullptr, yf.data(), out);
      EXPECT_EQ(y, yf) << "n=" << n;
      continue;
    }
    double maxdiff = 0;
    for (int64_t i = 0; i < n * out; ++i) {
      ASSERT_NEAR(y[i], ref[i], 1e-3) << "n=" << n << " K=" << K << " i=" << i;
      maxdiff = std::max(maxdiff, std::abs(y[i] - exact[i]));
    }
    EXPECT_GT(maxdiff, 0.0) << "n=" << n;  // it really rounded the activations
  }
}

TEST(Kernels, RmsNormSoftmaxSilu) {
  std::vector<float> x{1, -2, 3, -4}, w{1, 0.5f, 2, 1}, y(4);
  rmsnorm(x.data(), w.data(), y.data(), 4, 0.0);
  const double inv = 1 / std::sqrt((1 + 4 + 9 + 16) / 4.0);
  EXPECT_NEAR(y[0], 1 * inv, 1e-6);
  EXPECT_NEAR(y[1], -2 * inv * 0.5, 1e-6);
  EXPECT_NEAR(y[2], 3 * inv * 2, 1e-6);
  // Softmax is max-subtracted: huge logits do not overflow.
  std::vector<float> s{1000, 1001, 999};
  softmax(s.data(), 3);
  const double e = std::exp(1.0), d = 1 + e + 1 / e;
  EXPECT_NEAR(s[0], 1 / d, 1e-6);
  EXPECT_NEAR(s[1], e / d, 1e-6);
  EXPECT_NEAR(s[2], 1 / e / d, 1e-6);
  std::vector<float> gte{2, -1}, up{3, 0.5f};
  silu_mul(gte.data(), up.data(), 2);
  EXPECT_NEAR(gte[0], 2 / (1 + std::exp(-2.0)) * 3, 1e-5);
  EXPECT_NEAR(gte[1], -1 / (1 + std::exp(1.0)) * 0.5, 1e-6);
}

TEST(Kernels, DotAxpyAllIsas) {
  IsaGuard guard;
  std::vector<float> a(37), b(37), y(37, 1.f);
  for (int i = 0; i < 37; ++i) {
    a[i] = float(i) * 0.5f - 3;
    b[i] = float(i % 5) - 2;
  }
  double ref = 0;
  for (int i = 0; i < 37; ++i) ref += double(a[i]) * b[i];
  for (CpuIsa isa : cpu_isas_supported()) {
    set_cpu_isa_for_testing(isa);
    EXPECT_NEAR(dot(a.data(), b.data(), 37), ref, 1e-4);
    std::vector<float> yy = y;
    axpy(2.f, a.data(), yy.data(), 37);
    for (int i = 0; i < 37; ++i) EXPECT_FLOAT_EQ(yy[i], 1 + 2 * a[i]);
  }
}

// Greedy decoding takes argmax of the logits: the index std::max_element returns (the first
// maximum), on every ISA, for every length around the vector widths and unrolls, with ties,
// signed zeros, infinities and NaNs anywhere.
TEST(Kernels, ArgmaxIsTheFirstMaximumOnEveryIsa) {
  IsaGuard guard;
  std::mt19937 gen(11);
  std::uniform_int_distribution<int> small(-3, 3);  // many ties
  std::vector<std::vector<float>> cases;
  for (int n : {1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 100, 129, 151936}) {
    std::vector<float> x(static_cast<size_t>(n));
    for (auto& v : x) v = float(small(gen)) * 0.5f;
    cases.push_back(x);
    std::vector<float> y(static_cast<size_t>(n), -HUGE_VALF);  // all -inf: index 0
    cases.push_back(y);
    if (n > 1) {
      y.assign(size_t(n), 0.f);
      y[size_t(n / 2)] = -0.f;
      y[0] = -0.f;  // -0 first, +0 after: std::max_element keeps index 0
      cases.push_back(y);
      std::vector<float> z = x;
      z[size_t(n - 1)] = HUGE_VALF;  // the maximum in the scalar tail
      cases.push_back(z);
      for (size_t at : {size_t(0), size_t(n / 3), size_t(n - 1)}) {  // a NaN: whatever max_element does
        z = x;
        z[at] = std::nanf("");
        cases.push_back(z);
      }
    }
  }
  for (CpuIsa isa : cpu_isas_supported()) {
    set_cpu_isa_for_testing(isa);
    for (const auto& x : cases) {
      const int64_t n = int64_t(x.size()), want = std::max_element(x.begin(), x.end()) - x.begin();
      ASSERT_EQ(argmax(x.data(), n), want) << cpu_isa_name(isa) << " n=" << n;
    }
  }
  // The maximum exactly once, at every position of a 70-element row (vector body and tail).
  for (CpuIsa isa : cpu_isas_supported()) {
    set_cpu_isa_for_testing(isa);
    for (int64_t at = 0; at < 70; ++at) {
      std::vector<float> x(70, 1.f);
      x[size_t(at)] = 2.f;
      ASSERT_EQ(argmax(x.data(), 70), at) << cpu_isa_name(isa);
    }
  }
}

TEST(Kernels, SiluMulAllIsasMatchesDoubleReference) {
  IsaGuard guard;
  // -100..100 in uneven steps (vector body and scalar tail), incl. exp over/underflow range.
  std::vector<float> g0, u;
  for (int i = 0; i < 1001; ++i) {
    g0.push_back(-100.f + 0.2f * float(i) + 0.013f);
    u.push_back(1.f + 0.001f * float(i % 7));
  }
  for (CpuIsa isa : cpu_isas_supported()) {
    set_cpu_isa_for_testing(isa);
    std::vector<float> g = g0;
    silu_mul(g.data(), u.data(), int64_t(g.size()));
    for (size_t i = 0; i < g.size(); ++i) {
      const double x = g0[i], want = x / (1 + std::exp(-x)) * double(u[i]);
      ASSERT_NEAR(g[i], want, 4e-7 * std::abs(want) + 1e-30) << "x=" << x << " isa=" << cpu_isa_name(isa);
    }
  }
}

// Decode-shaped products hand out chunks of output rows from a shared counter
// (kernels.cpp, RowChunks): with any thread count every row is computed by the same code,
// so the results are the same bits; and they match the double-precision reference. Sized
// to span many chunks and to be worth threads (n * rows * K >= 2^21).
TEST(Kernels, ChunkedDecodeProductsIndependentOfThreadCount) {
  IsaGuard guard;
  const int64_t K = 1024, out = 2100;
  std::mt19937 g(5);
  std::normal_distribution<float> nd;
  std::vector<float> wf(out * K), bias(out);
  for (auto& v : wf) v = nd(g);
  for (auto& v : bias) v = nd(g);
  std::vector<uint16_t> w(wf.size());
  from_f32(DType::BF16, wf.data(), w.data(), wf.size());
  to_f32(DType::BF16, w.data(), wf.data(), wf.size());
  const model::Matrix W{DType::BF16, w.data(), out, K};
  const int saved_threads = omp_get_max_threads();
  for (CpuIsa isa : cpu_isas_supported()) {
    if (isa == CpuIsa::Scalar) continue;
    set_cpu_isa_for_testing(isa);
    for (int64_t n : {1, 3, 6}) {  // gemv, gemv, dot tiles
      std::vector<float> x(n * K);
      for (auto& v : x) v = nd(g);
      const auto ref = ref_matmul(x, n, K, wf, out, bias);
      std::vector<float> first;
      for (int threads : {1, 2, 3}) {
        omp_set_num_threads(threads);
        std::vector<float> y(n * out, -1.f);
        matmul(x.data(), n, K, W, bias.data(), y.data(), out);
        if (first.empty()) {
          for (int64_t i = 0; i < n * out; ++i)
            ASSERT_NEAR(y[i], ref[i], 1e-4 * std::sqrt(double(K))) << "n=" << n << " i=" << i;
          first = y;
        } else {
          EXPECT_EQ(y, first) << "isa=" << cpu_isa_name(isa) << " n=" << n << " threads=" << threads;
        }
      }
    }
  }
  omp_set_num_threads(saved_threads);
}

TEST(Kernels, MatmulMultiEqualsSeparateProducts) {
  IsaGuard guard;
  const int64_t K = 96;
  std::mt19937 g(11);
  std::normal_distribution<float> nd;
  // q/k/v-like: different row counts, biases on two of them; big enough to use threads.
  std::vector<int64_t> rows{640, 128, 36};
  std::vector<std::vector<uint16_t>> w(3);
  std::vector<std::vector<float>> bias(3);
  for (int m = 0; m < 3; ++m) {
    std::vector<float> f(rows[m] * K);
    for (auto& v : f) v = nd(g);
    w[m].resize(f.size());
    from_f32(DType::BF16, f.data(), w[m].data(), f.size());
    if (m < 2)
      for (int64_t o = 0; o < rows[m]; ++o) bias[m].push_back(nd(g));
  }
  for (CpuIsa isa : cpu_isas_supported()) {
    set_cpu_isa_for_testing(isa);
    for (int64_t n : {1, 6, 40}) {
      std::vector<float> x(n * K);
      for (auto& v : x) v = nd(g);
      std::vector<model::Matrix> W;
      std::vector<std::vector<float>> sep(3), multi(3);
      std::vector<MatmulOut> outs;
      for (int m = 0; m < 3; ++m) W.push_back({DType::BF16, w[m].data(), rows[m], K});
      for (int m = 0; m < 3; ++m) {
        sep[m].assign(n * rows[m], 0.f);
        multi[m].assign(n * rows[m], -1.f);
        const float* b = bias[m].empty() ? nullptr : bias[m].data();
        matmul(x.data(), n, K, W[m], b, sep[m].data(), rows[m]);
        outs.push_back({&W[m], b, multi[m].data(), rows[m]});
      }
      matmul_multi(x.data(), n, K, outs);
      for (int m = 0; m < 3; ++m) EXPECT_EQ(multi[m], sep[m]) << "isa=" << cpu_isa_name(isa) << " n=" << n << " m=" << m;
    }
  }
  // Weights of different dtypes or widths cannot share one packing of x.
  model::Matrix a{DType::BF16, w[0].data(), rows[0], K}, b{DType::F32, w[0].data(), 1, K / 2};
  std::vector<float> x(K), y(rows[0]), y2(1);
  const MatmulOut bad[] = {{&a, nullptr, y.data(), rows[0]}, {&b, nullptr, y2.data(), 1}};
  EXPECT_THROW(matmul_multi(x.data(), 1, K, bad), std::exception);
}

