#include "core/cpu.h"

#include <atomic>
#include <cstdlib>
#include <string>

#if defined(__aarch64__)
#include <sys/auxv.h>
#ifndef HWCAP2_BF16
#define HWCAP2_BF16 (1 << 14)  // Linux's asm/hwcap.h since 5.10
#endif
#endif

namespace rvec {
namespace {

CpuIsa detect() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    return CpuIsa::AVX512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return CpuIsa::AVX2;
  return CpuIsa::Scalar;
#elif defined(__aarch64__)
  return CpuIsa::NEON;  // Advanced SIMD is mandatory in AArch64
#else
  return CpuIsa::Scalar;
#endif
}

CpuIsa hardware() {
  static const CpuIsa hw = detect();
  return hw;
}

int width_bits(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::Scalar: return 32;
    case CpuIsa::NEON: return 128;
    case CpuIsa::AVX2: return 256;
    case CpuIsa::AVX512: return 512;
  }
  return 32;
}

// The widest ISA of this CPU no wider than `want`.
CpuIsa clamp(CpuIsa want) {
  const CpuIsa hw = hardware();
  if (width_bits(hw) <= width_bits(want)) return hw;
  if (hw == CpuIsa::AVX512 && want == CpuIsa::AVX2) return CpuIsa::AVX2;
  return CpuIsa::Scalar;
}

CpuIsa initial() {
  const char* env = std::getenv("RVEC_ISA");
  if (!env) return hardware();
  const std::string v = env;
  return clamp(v == "scalar" ? CpuIsa::Scalar
               : v == "avx2" ? CpuIsa::AVX2
               : v.starts_with("neon") ? CpuIsa::NEON
                             : CpuIsa::AVX512);
}

std::atomic<int>& current() {
  static std::atomic<int> c{int(initial())};
  return c;
}

}  // namespace

CpuIsa cpu_isa() { return CpuIsa(current().load(std::memory_order_relaxed)); }

bool cpu_has_bf16_dot() {
  // RVEC_ISA=avx512-nobf16 or neon-nobf16: the vector ISA without its bf16 dot product, as on
  // Skylake-SP to Ice Lake or Neoverse N1 / Graviton2, where --bf16-dot falls back to the exact
  // path (for benchmarks of such machines on a newer one).
  static const bool has = [] {
    const char* env = std::getenv("RVEC_ISA");
    const bool allowed = !(env && std::string_view(env).ends_with("-nobf16"));
#if defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") != 0 && allowed;
#elif defined(__aarch64__)
    return (getauxval(AT_HWCAP2) & HWCAP2_BF16) != 0 && allowed;
#else
    return false;
#endif
  }();
#if defined(__x86_64__)
  return has && cpu_isa() == CpuIsa::AVX512;
#else
  return has && cpu_isa() == CpuIsa::NEON;
#endif
}

std::string_view cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::Scalar: return "scalar";
    case CpuIsa::AVX2: return "avx2";
    case CpuIsa::AVX512: return "avx512";
    case CpuIsa::NEON: return "neon";
  }
  return "?";
}

std::vector<CpuIsa> cpu_isas_supported() {
  std::vector<CpuIsa> r{CpuIsa::Scalar};
  for (CpuIsa isa : {CpuIsa::NEON, CpuIsa::AVX2, CpuIsa::AVX512})
    if (clamp(isa) == isa) r.push_back(isa);
  return r;
}

void set_cpu_isa_for_testing(CpuIsa isa) { current().store(int(clamp(isa))); }

}  // namespace rvec
