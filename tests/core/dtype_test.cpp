#include "core/dtype.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "core/cpu.h"

using namespace rvec;

namespace {
uint32_t bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
float from_bits(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
}  // namespace

TEST(DType, Bf16RoundToNearestEvenHandDerived) {
  // 1.0 + 2^-8 is exactly halfway between bf16 1.0 (0x3f80) and 1.0078125 (0x3f81): ties to even -> 0x3f80.
  EXPECT_EQ(f32_to_bf16(from_bits(0x3f808000u)), 0x3f80);
  // 0x3f818000 is halfway between 0x3f81 (odd) and 0x3f82: ties to even -> 0x3f82.
  EXPECT_EQ(f32_to_bf16(from_bits(0x3f818000u)), 0x3f82);
  EXPECT_EQ(f32_to_bf16(from_bits(0x3f808001u)), 0x3f81);  // just above half: up
  EXPECT_EQ(f32_to_bf16(from_bits(0x3f807fffu)), 0x3f80);  // just below half: down
  EXPECT_EQ(f32_to_bf16(-2.0f), 0xc000);
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(f32_to_bf16(from_bits(0x7f7fffffu)), 0x7f80);  // max float rounds to inf
  uint16_t nan = f32_to_bf16(std::nanf(""));
  EXPECT_TRUE(std::isnan(bf16_to_f32(nan)));
  EXPECT_EQ(bf16_to_f32(0x3fc0), 1.5f);
}

TEST(DType, F16HandDerived) {
  EXPECT_EQ(f32_to_f16(1.0f), 0x3c00);
  EXPECT_EQ(f32_to_f16(-2.0f), 0xc000);
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);           // halfway to 2^16 rounds to inf
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -24)), 0x0001);  // smallest subnormal
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);  // half of it: ties to even (0)
  EXPECT_EQ(f32_to_f16(std::ldexp(3.0f, -25)), 0x0002);  // 1.5 ulp: ties to even (2)
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(f16_to_f32(0x3555), 0.333251953125f);
  EXPECT_EQ(f32_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);  // tie -> even
  EXPECT_EQ(f32_to_f16(1.0f + std::ldexp(3.0f, -11)), 0x3c02);  // tie -> even (up)
}

TEST(DType, F16RoundTripAllValues) {
  for (uint32_t h = 0; h < 65536; ++h) {
    float f = f16_to_f32(uint16_t(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(f32_to_f16(f), h) << h;
  }
}

// Every ISA path of the bulk conversions is bit-identical to the scalar reference.
TEST(DType, BulkConversionsMatchScalarOnEveryIsa) {
  std::mt19937 rng(7);
  std::vector<float> src(1037);
  for (auto& v : src) v = from_bits(rng());
  src[3] = std::nanf("");
  src[5] = std::numeric_limits<float>::infinity();
  for (CpuIsa isa : cpu_isas_supported()) {
    set_cpu_isa_for_testing(isa);
    for (DType t : {DType::BF16, DType::F16}) {
      std::vector<uint16_t> h(src.size());
      from_f32(t, src.data(), h.data(), src.size());
      for (size_t i = 0; i < src.size(); ++i) {
        uint16_t want = t == DType::BF16 ? f32_to_bf16(src[i]) : f32_to_f16(src[i]);
        if (std::isnan(src[i])) {
          ASSERT_TRUE(std::isnan(t == DType::BF16 ? bf16_to_f32(h[i]) : f16_to_f32(h[i])));
        } else {
          ASSERT_EQ(h[i], want) << "isa " << int(isa) << " i " << i;
        }
      }
      std::vector<float> back(src.size());
      to_f32(t, h.data(), back.data(), h.size());
      for (size_t i = 0; i < src.size(); ++i) {
        float want = t == DType::BF16 ? bf16_to_f32(h[i]) : f16_to_f32(h[i]);
        if (!std::isnan(want)) {
          ASSERT_EQ(bits(back[i]), bits(want));
        }
      }
    }
  }
  set_cpu_isa_for_testing(CpuIsa::AVX512);
}

TEST(DType, Names) {
  EXPECT_EQ(parse_dtype("BF16"), DType::BF16);
  EXPECT_FALSE(parse_dtype("BF17").has_value());
  EXPECT_EQ(dtype_size(DType::F16), 2u);
  EXPECT_EQ(parse_torch_dtype("bfloat16"), DType::BF16);
  EXPECT_EQ(torch_dtype_name(DType::F32), "float32");
}
