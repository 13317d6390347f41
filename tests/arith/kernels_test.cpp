// The engine's vector kernels against scalar expectations on every ISA, and the ordered
// pipeline's contract (order, slot reuse, errors).
#include <gtest/gtest.h>

#include <atomic>
#include <bit>
#include <cmath>
#include <limits>
#include <random>
#include <stdexcept>
#include <vector>

#include "arith/kernels.h"
#include "arith/pipeline.h"
#include "core/cpu.h"

using namespace rvec;

namespace {

float from_bits(uint32_t u) { return std::bit_cast<float>(u); }

}  // namespace

TEST(ArithKernels, Bf16ExactOnEveryIsa) {
  // Values whose low 16 bits are zero, NaNs with any payload, infinities, signed zeros.
  std::vector<float> exact = {1.0f, -2.5f, 0.0f, -0.0f, std::numeric_limits<float>::infinity(),
                              -std::numeric_limits<float>::infinity(), from_bits(0x7fc01234u), from_bits(0xff800001u),
                              from_bits(0x00010000u) /* a bf16 denormal */, from_bits(0x7f7f0000u)};
  while (exact.size() < 37) exact.push_back(from_bits(uint32_t(exact.size()) << 16));
  for (CpuIsa isa : cpu_isas_supported()) {
    set_cpu_isa_for_testing(isa);
    EXPECT_TRUE(arith::bf16_exact(exact.data(), exact.size())) << cpu_isa_name(isa);
    EXPECT_TRUE(arith::bf16_exact(exact.data(), 0));
    // One inexact value (a low bit set: a normal, a denormal, the largest finite) at every
    // position, so both the vector body and the scalar tail see it.
    for (uint32_t bad : {0x3f800001u, 0x00000001u, 0x7f7fffffu, 0xbf808000u}) {
      for (size_t pos = 0; pos < exact.size(); ++pos) {
        std::vector<float> v = exact;
        v[pos] = from_bits(bad);
        ASSERT_FALSE(arith::bf16_exact(v.data(), v.size())) << cpu_isa_name(isa) << " pos " << pos;
        ASSERT_TRUE(arith::bf16_exact(v.data(), pos)) << cpu_isa_name(isa) << " pos " << pos;
      }
    }
  }
  set_cpu_isa_for_testing(CpuIsa::AVX512);
}

TEST(ArithKernels, RoundErrorIsBitIdenticalOnEveryIsa) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> exact(1003), stored(1003);
  for (size_t i = 0; i < exact.size(); ++i) {
    exact[i] = u(rng);
    stored[i] = exact[i] + (i % 3 == 0 ? 0.0f : u(rng) * 1e-3f);
  }
  stored[5] = std::nanf("");                             // NaN difference: skipped
  stored[9] = std::numeric_limits<float>::infinity();    // infinite difference: skipped
  exact[1000] = -std::numeric_limits<float>::infinity();  // in the scalar tail
  // Expectation: 4 interleaved lanes summed as (l0 + l1) + (l2 + l3), added to the
  // running sum; the max over finite differences.
  double lanes[4] = {0, 0, 0, 0}, want_max = 1e-4;
  for (size_t i = 0; i < exact.size(); ++i) {
    double d = std::fabs(double(stored[i]) - double(exact[i]));
    if (!std::isfinite(d)) continue;
    want_max = std::max(want_max, d);
    lanes[i % 4] += d * d;
  }
  const double want_sq = 2.0 + ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3]));
  for (CpuIsa isa : cpu_isas_supported()) {
    set_cpu_isa_for_testing(isa);
    double mx = 1e-4, sq = 2.0;
    arith::round_error(stored.data(), exact.data(), exact.size(), mx, sq);
    EXPECT_EQ(mx, want_max) << cpu_isa_name(isa);
    EXPECT_EQ(std::bit_cast<uint64_t>(sq), std::bit_cast<uint64_t>(want_sq)) << cpu_isa_name(isa);
  }
  set_cpu_isa_for_testing(CpuIsa::AVX512);
  EXPECT_GT(want_max, 1e-4);  // the differences, not the running value, set the max
}

TEST(ArithKernels, AddSubNonfiniteAxpy) {
  std::vector<float> a = {1.5f, -2, 3e38f, 0}, b = {0.25f, 2, 3e38f, -0.0f}, d(4);
  arith::sub_into(d.data(), a.data(), b.data(), 4);
  EXPECT_EQ(d, (std::vector<float>{1.25f, -4, 0, 0}));
  arith::add_into(d.data(), a.data(), b.data(), 4);
  EXPECT_EQ(d[0], 1.75f);
  EXPECT_TRUE(std::isinf(d[2]));
  EXPECT_EQ(arith::count_nonfinite(d.data(), 4), 1u);
}

TEST(ArithPipeline, ConsumesInOrderAndNeverOverrunsSlots) {
  for (size_t workers : {0, 1, 3}) {
    for (size_t slots : {1, 2, 5}) {
      const size_t n = 500;
      std::atomic<size_t> consumed{0};
      std::atomic<bool> overrun{false}, bad_slot{false};
      std::vector<size_t> order;
      std::vector<int> produced(n, 0);
      arith::run_ordered(
          n, workers, slots,
          [&](size_t i, size_t s) {
            // Item i may only start once item i - slots has been consumed (its slot is free).
            if (i >= slots && consumed.load() < i - slots + 1) overrun = true;
            if (s != i % slots) bad_slot = true;
            produced[i] = 1;
          },
          [&](size_t i, size_t s) {
            if (s != i % slots || !produced[i]) bad_slot = true;
            order.push_back(i);
            consumed.fetch_add(1);
          });
      ASSERT_FALSE(overrun) << workers << " workers, " << slots << " slots";
      ASSERT_FALSE(bad_slot);
      ASSERT_EQ(order.size(), n);
      for (size_t i = 0; i < n; ++i) ASSERT_EQ(order[i], i);
    }
  }
}

TEST(ArithPipeline, ErrorsFromEitherSideAreRethrown) {
  for (size_t workers : {0, 2}) {
    size_t consumed = 0;
    EXPECT_THROW(arith::run_ordered(
                     100, workers, 4,
                     [](size_t i, size_t) {
                       if (i == 37) throw std::runtime_error("produce");
                     },
                     [&](size_t, size_t) { ++consumed; }),
                 std::runtime_error);
    EXPECT_LE(consumed, 37u);
    EXPECT_THROW(arith::run_ordered(
                     100, workers, 4, [](size_t, size_t) {},
                     [](size_t i, size_t) {
                       if (i == 5) throw std::runtime_error("consume");
                     }),
                 std::runtime_error);
  }
  arith::run_ordered(0, 2, 4, [](size_t, size_t) { FAIL(); }, [](size_t, size_t) { FAIL(); });
}
