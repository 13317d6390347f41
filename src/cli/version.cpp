// `rvec version`: version and the CPU code path in use.
#include <fmt/format.h>

#include "cli/command.h"
#include "core/cpu.h"

namespace {
rvec::cli::Command cmd("version", "Print rvec's version and the CPU kernels it will use", [](CLI::App&) {
  return [] {
    fmt::print("rvec {}\ncpu: {}{}\n", RVEC_VERSION, rvec::cpu_isa_name(rvec::cpu_isa()),
               rvec::cpu_has_bf16_dot() ? " +bf16" : "");
    return 0;
  };
});
}  // namespace
