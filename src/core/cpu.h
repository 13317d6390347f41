// Runtime CPU feature detection: kernels are compiled for several ISAs and the
// best one the running CPU supports is picked once. x86-64: scalar < AVX2 < AVX-512;
// AArch64: scalar < NEON (Advanced SIMD, in every AArch64 CPU). RVEC_ISA=scalar|avx2|avx512|
// avx512-nobf16|neon|neon-nobf16 lowers the choice (for tests and benchmarks of each path; the
// -nobf16 forms keep the vector ISA without its bf16 dot-product instruction).
#pragma once
#include <string_view>
#include <vector>

namespace rvec {

enum class CpuIsa { Scalar = 0, AVX2 = 1, AVX512 = 2, NEON = 3 };

CpuIsa cpu_isa();                 // AVX2 means AVX2+FMA+F16C; AVX512 means F+BW+VL+DQ
// Whether the selected ISA has a bf16 pair dot product for --bf16-dot: AVX512-BF16's vdpbf16ps
// with AVX-512 selected, or Arm's BF16 extension (BFDOT, Armv8.6; Graviton3, Neoverse V1/V2/N2)
// with NEON selected.
bool cpu_has_bf16_dot();
std::string_view cpu_isa_name(CpuIsa isa);
// Every ISA this CPU and build can run, scalar first (tests run each kernel on all of them).
std::vector<CpuIsa> cpu_isas_supported();
// Selects `isa`, or where this CPU lacks it the widest one it has that is no wider (AVX-512
// on an AVX2 CPU gives AVX2; AVX2 on AArch64 gives NEON; NEON on x86-64 gives scalar).
void set_cpu_isa_for_testing(CpuIsa isa);

// Whether `isa` includes AVX2+FMA+F16C (x86-64 kernels written for AVX2 also serve AVX-512).
inline bool isa_has_avx2(CpuIsa isa) { return isa == CpuIsa::AVX2 || isa == CpuIsa::AVX512; }

}  // namespace rvec
