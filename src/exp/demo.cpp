#include "exp/demo.h"

#include <fmt/format.h>

#include "core/error.h"

namespace rvec::experiment {

std::string demo_config_yaml(int64_t limit) {
  return fmt::format(R"(# rvec demo: the reasoning-vector experiment on the shipped toy family.
name: toy
models:
  sft: toy/sft
  grpo: toy/grpo
  instruct: toy/instruct
targets: [instruct]
vectors:
  - {{name: v, expr: "grpo - sft"}}
alphas: [-1, 0, 0.25, 0.5, 0.75, 1, 1.5]
conditions: [plain]
tasks:
  - {{name: toy_arith, limit: {}, chat: true, num_fewshot: 0, max_gen_tokens: 96}}
random_control: {{seed: 1234, alphas: [1, -1]}}
out: rvec-demo
)",
                     limit);
}

ExperimentConfig demo_config(const std::filesystem::path& data_root, int64_t limit) {
  if (limit < 1) fail("demo: --limit must be >= 1 (got {})", limit);
  auto cfg = parse_config(demo_config_yaml(limit), data_root, "<built-in demo config>");
  cfg.out = "rvec-demo";
  for (const char* m : {"sft", "grpo", "instruct"})
    if (!std::filesystem::exists(cfg.model_path(m) / "config.json"))
      fail("demo: the toy model {} is missing ({}); the demo needs the repository's data/toy "
           "(set RVEC_DATA_DIR to the data folder of an rvec checkout)",
           m, cfg.model_path(m).string());
  return cfg;
}

}  // namespace rvec::experiment
