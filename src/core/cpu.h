// Runtime CPU feature detection: kernels are compiled for several ISAs and the
// best one the running CPU supports is picked once. RVEC_ISA=scalar|avx2|avx512|avx512-nobf16
// lowers the choice (for tests and benchmarks of each path; the last keeps AVX-512 without
// vdpbf16ps).
#pragma once
#include <string_view>

namespace rvec {

enum class CpuIsa { Scalar = 0, AVX2 = 1, AVX512 = 2 };

CpuIsa cpu_isa();                 // AVX2 means AVX2+FMA+F16C; AVX512 means F+BW+VL+DQ
bool cpu_has_avx512_bf16();       // vdpbf16ps, only meaningful when cpu_isa() == AVX512
std::string_view cpu_isa_name(CpuIsa isa);
void set_cpu_isa_for_testing(CpuIsa isa);  // clamps to what the CPU supports

}  // namespace rvec
