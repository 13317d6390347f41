// `rvec extract --base SFT --tuned GRPO -o VEC`: the task vector tuned - base.
#include <fmt/format.h>

#include "cli/arith_common.h"
#include "cli/command.h"

namespace {
rvec::cli::Command cmd("extract", "Extract a task vector: tuned - base (lossless storage by default)", [](CLI::App& app) {
  auto a = std::make_shared<rvec::cli::ArithArgs>();
  auto base = std::make_shared<std::string>(), tuned = std::make_shared<std::string>();
  app.add_option("--base", *base, "Base model directory (e.g. the SFT checkpoint)")->required();
  app.add_option("--tuned", *tuned, "Fine-tuned model directory (e.g. the GRPO checkpoint)")->required();
  a->add(app);
  return [a, base, tuned] {
    auto r = rvec::arith::extract(*base, *tuned, a->finish());
    rvec::arith::print_report(r, "extract");
    if (!a->o.out_dtype) {
      uint64_t lossy = 0;
      for (auto& t : r.tensors) lossy += !t.lossless;
      fmt::print("  storage: lossless per tensor ({} tensors not bit-exact)\n", lossy);
    } else {
      double mx = 0, sq = 0, n = 0;
      for (auto& t : r.tensors) {
        mx = std::max(mx, t.max_round_err);
        sq += t.rms_round_err * t.rms_round_err;
        n += 1;
      }
      fmt::print("  rounding error of the forced dtype: max {:.3g}, RMS over tensors {:.3g}\n", mx,
                 n ? std::sqrt(sq / n) : 0.0);
    }
    return 0;
  };
});
}  // namespace
