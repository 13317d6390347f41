// `rvec apply TARGET --vector VEC[:ALPHA] ... [--alpha A] -o OUT`: target + Σ α·v, or with
// `--sparsify ties|dare|della|breadcrumbs --density D`, the vectors sparsified first; `--lora ADAPTER[:ALPHA]`
// merges PEFT LoRA adapters (W += alpha * B·A * lora_alpha / r).
#include <fmt/format.h>

#include "arith/lora.h"
#include "cli/arith_common.h"
#include "cli/command.h"

namespace {
rvec::cli::Command cmd("apply", "Add task vectors to a model: target + sum of alpha * vector", [](CLI::App& app) {
  auto a = std::make_shared<rvec::cli::ArithArgs>();
  auto target = std::make_shared<std::string>();
  auto vecs = std::make_shared<std::vector<std::string>>();
  auto alpha = std::make_shared<double>(1.0);
  app.add_option("target", *target, "Target model directory")->required();
  auto loras = std::make_shared<std::vector<std::string>>();
  app.add_option("--vector,-v", *vecs, "Task vector directory, optionally :ALPHA (repeatable)");
  app.add_option("--lora", *loras, "PEFT LoRA adapter directory, optionally :ALPHA (repeatable; default --alpha)");
  app.add_option("--alpha,-a", *alpha, "Default alpha for vectors given without :ALPHA (default 1; < 0 subtracts)");
  auto sp = std::make_shared<rvec::arith::SparsifyOptions>();
  auto rescale = std::make_shared<std::string>(), consensus = std::make_shared<std::string>();
  auto seed = std::make_shared<uint64_t>(0);
  app.add_option("--sparsify", sp->method, "Sparsify each vector first: ties | dare | della | breadcrumbs");
  app.add_option("--density", sp->density, "Fraction of entries kept per tensor (--sparsify; default 1)");
  app.add_option("--gamma", sp->gamma, "breadcrumbs: fraction of the largest entries dropped (default 0.01)");
  app.add_option("--epsilon", sp->epsilon, "della: keep probabilities span density +- epsilon (default 0.15)");
  app.add_option("--rescale", *rescale, "on|off: rescale kept entries to the vector's L1 norm (default: on for dare, della)");
  app.add_option("--consensus", *consensus, "on|off: TIES sign election across vectors (default: on for ties, della)");
  app.add_flag("--normalize", sp->normalize, "Divide by the sum of the (sign-agreeing) alphas, as mergekit's normalize");
  app.add_option("--seed", *seed, "Seed of the random masks (dare, della; default 0)");
  a->add(app);
  return [a, target, vecs, loras, alpha, sp, rescale, consensus, seed] {
    if (vecs->empty() && loras->empty()) rvec::fail("apply: give at least one --vector or --lora");
    std::vector<std::pair<std::filesystem::path, double>> v, l;
    auto split = [](const std::string& s, double def) {
      auto c = s.rfind(':');
      double al = def;
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
      return std::pair<std::filesystem::path, double>(p, al);
    };
    for (const auto& s : *vecs) v.push_back(split(s, *alpha));
    for (const auto& s : *loras) l.push_back(split(s, *alpha));
    auto onoff = [](const std::string& s, const char* opt) -> std::optional<bool> {
      if (s.empty()) return std::nullopt;
      if (s == "on" || s == "true" || s == "1") return true;
      if (s == "off" || s == "false" || s == "0") return false;
      rvec::fail("{} {}: expected on or off", opt, s);
    };
    rvec::arith::Options o = a->finish();
    o.seed = *seed;
    rvec::arith::Report r;
    if (!l.empty()) {
      if (!sp->method.empty()) rvec::fail("--lora cannot be combined with --sparsify");
      r = rvec::arith::lora::apply_adapters(*target, v, l, o);
    } else if (!sp->method.empty()) {
      sp->rescale = onoff(*rescale, "--rescale");
      sp->consensus = onoff(*consensus, "--consensus");
      r = rvec::arith::apply_sparse(*target, v, *sp, o);
    } else {
      if (!rescale->empty() || !consensus->empty() || sp->normalize)
        rvec::fail("--rescale, --consensus and --normalize need --sparsify");
      r = rvec::arith::apply(*target, v, o);
    }
    rvec::arith::print_report(r, "apply");
    return 0;
  };
});
}  // namespace
