// The built-in demo experiment on the shipped toy family (data/toy/): v = grpo - sft added
// to the toy instruct model at the default alphas, plus the random control, on toy_arith.
#pragma once
#include <filesystem>
#include <string>

#include "exp/config.h"

namespace rvec::experiment {

// The demo's config (the same as examples/toy.yaml), models resolved under `data_root`
// (data_root/toy/{sft,grpo,instruct}).
std::string demo_config_yaml(int64_t limit);
ExperimentConfig demo_config(const std::filesystem::path& data_root, int64_t limit);
inline constexpr int64_t kDemoDefaultLimit = 1000;

}  // namespace rvec::experiment
