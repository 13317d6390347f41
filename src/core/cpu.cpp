#include "core/cpu.h"

#include <atomic>
#include <cstdlib>
#include <string>

namespace rvec {
namespace {

CpuIsa detect() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    return CpuIsa::AVX512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return CpuIsa::AVX2;
  return CpuIsa::Scalar;
}

CpuIsa hardware() {
  static const CpuIsa hw = detect();
  return hw;
}

CpuIsa initial() {
  CpuIsa isa = hardware();
  if (const char* env = std::getenv("RVEC_ISA")) {
    std::string v = env;
    CpuIsa want = v == "scalar" ? CpuIsa::Scalar : v == "avx2" ? CpuIsa::AVX2 : CpuIsa::AVX512;
    if (want < isa) isa = want;
  }
  return isa;
}

// RVEC_ISA=avx512-nobf16: AVX-512 without vdpbf16ps, as on Skylake-SP to Ice Lake, where
// --bf16-dot falls back to the exact path (for benchmarks of such machines on a newer one).
bool bf16_allowed() {
  const char* env = std::getenv("RVEC_ISA");
  return !(env && std::string_view(env) == "avx512-nobf16");
}

std::atomic<int>& current() {
  static std::atomic<int> c{int(initial())};
  return c;
}

}  // namespace

CpuIsa cpu_isa() { return CpuIsa(current().load(std::memory_order_relaxed)); }

bool cpu_has_avx512_bf16() {
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") != 0 && bf16_allowed();
  }();
  return has && cpu_isa() == CpuIsa::AVX512;
}

std::string_view cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::Scalar: return "scalar";
    case CpuIsa::AVX2: return "avx2";
    case CpuIsa::AVX512: return "avx512";
  }
  return "?";
}

void set_cpu_isa_for_testing(CpuIsa isa) {
  if (isa > hardware()) isa = hardware();
  current().store(int(isa));
}

}  // namespace rvec
