// `rvec apply TARGET --vector VEC[:ALPHA] ... [--alpha A] -o OUT`: target + Σ α·v.
#include <fmt/format.h>

#include "cli/arith_common.h"
#include "cli/command.h"

namespace {
rvec::cli::Command cmd("apply", "Add task vectors to a model: target + sum of alpha * vector", [](CLI::App& app) {
  auto a = std::make_shared<rvec::cli::ArithArgs>();
  auto target = std::make_shared<std::string>();
  auto vecs = std::make_shared<std::vector<std::string>>();
  auto alpha = std::make_shared<double>(1.0);
  app.add_option("target", *target, "Target model directory")->required();
  app.add_option("--vector,-v", *vecs, "Task vector directory, optionally :ALPHA (repeatable)")->required();
  app.add_option("--alpha,-a", *alpha, "Default alpha for vectors given without :ALPHA (default 1; < 0 subtracts)");
  a->add(app);
  return [a, target, vecs, alpha] {
    std::vector<std::pair<std::filesystem::path, double>> v;
    for (const auto& s : *vecs) {
      auto c = s.rfind(':');
      double al = *alpha;
      std::string p = s;
      if (c != std::string::npos && c + 1 < s.size()) {
        std::string num = s.substr(c + 1);
        try {
          size_t pos = 0;
          double d = std::stod(num, &pos);
          if (pos == num.size()) {
            al = d;
            p = s.substr(0, c);
          }
        } catch (const std::exception&) {
        }
      }
      v.emplace_back(p, al);
    }
    auto r = rvec::arith::apply(*target, v, a->finish());
    rvec::arith::print_report(r, "apply");
    return 0;
  };
});
}  // namespace
