// Restores the kernel ISA a test selected with set_cpu_isa_for_testing when the test's scope
// ends, so that one test's choice (say Scalar) cannot leak into the tests run after it.
#pragma once
#include "core/cpu.h"

namespace rvec::testing {

struct IsaGuard {
  CpuIsa saved = cpu_isa();
  ~IsaGuard() { set_cpu_isa_for_testing(saved); }
};

}  // namespace rvec::testing
