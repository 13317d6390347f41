#include "core/cpu.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "isa_guard.h"

using namespace rvec;

// The ISAs a build offers follow its architecture: x86-64 has AVX2 and AVX-512 (where the CPU
// has them), AArch64 always has NEON, and each is selected as itself.
TEST(Cpu, EachSupportedIsaIsSelectedAsItself) {
  rvec::testing::IsaGuard guard;
  const auto isas = cpu_isas_supported();
  ASSERT_FALSE(isas.empty());
  EXPECT_EQ(isas.front(), CpuIsa::Scalar);
  auto has = [&](CpuIsa isa) { return std::find(isas.begin(), isas.end(), isa) != isas.end(); };
#if defined(__aarch64__)
  EXPECT_TRUE(has(CpuIsa::NEON));
  EXPECT_FALSE(has(CpuIsa::AVX2) || has(CpuIsa::AVX512));
#elif defined(__x86_64__)
  EXPECT_FALSE(has(CpuIsa::NEON));
  if (has(CpuIsa::AVX512)) {
    EXPECT_TRUE(has(CpuIsa::AVX2));
  }
#endif
  for (CpuIsa isa : isas) {
    set_cpu_isa_for_testing(isa);
    EXPECT_EQ(cpu_isa(), isa) << cpu_isa_name(isa);
  }
}

// An ISA the CPU lacks gives the widest one it has that is no wider (core/cpu.h).
TEST(Cpu, AnIsaTheCpuLacksGivesTheWidestNoWider) {
  rvec::testing::IsaGuard guard;
  const auto isas = cpu_isas_supported();
  auto has = [&](CpuIsa isa) { return std::find(isas.begin(), isas.end(), isa) != isas.end(); };
  set_cpu_isa_for_testing(CpuIsa::AVX512);
  const CpuIsa best = isas.back();
  EXPECT_EQ(cpu_isa(), best);  // the widest of all
  set_cpu_isa_for_testing(CpuIsa::AVX2);
  EXPECT_EQ(cpu_isa(), has(CpuIsa::AVX2) ? CpuIsa::AVX2 : has(CpuIsa::NEON) ? CpuIsa::NEON : CpuIsa::Scalar);
  set_cpu_isa_for_testing(CpuIsa::NEON);
  EXPECT_EQ(cpu_isa(), has(CpuIsa::NEON) ? CpuIsa::NEON : CpuIsa::Scalar);  // 128 bits: no x86 ISA fits
  set_cpu_isa_for_testing(CpuIsa::Scalar);
  EXPECT_EQ(cpu_isa(), CpuIsa::Scalar);
  EXPECT_FALSE(cpu_has_bf16_dot());  // only with AVX-512 or NEON selected
}

TEST(Cpu, IsaNames) {
  EXPECT_EQ(cpu_isa_name(CpuIsa::Scalar), "scalar");
  EXPECT_EQ(cpu_isa_name(CpuIsa::AVX2), "avx2");
  EXPECT_EQ(cpu_isa_name(CpuIsa::AVX512), "avx512");
  EXPECT_EQ(cpu_isa_name(CpuIsa::NEON), "neon");
}

// --bf16-dot's instruction belongs to a vector ISA (vdpbf16ps to AVX-512, BFDOT to NEON): never
// with the scalar kernels or AVX2, whatever the CPU has. (Whether the CPU has it is checked
// under qemu with CPU models with and without BF16: tools/cross_aarch64.sh.)
TEST(Cpu, Bf16DotOnlyWithItsVectorIsa) {
  rvec::testing::IsaGuard guard;
  for (CpuIsa isa : cpu_isas_supported()) {
    set_cpu_isa_for_testing(isa);
    if (cpu_has_bf16_dot()) {
      EXPECT_TRUE(isa == CpuIsa::AVX512 || isa == CpuIsa::NEON) << cpu_isa_name(isa);
    }
  }
}
