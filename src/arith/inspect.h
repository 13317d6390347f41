// Statistics of a task vector (or any model): per tensor, per layer and overall L2
// norm, max |v|, fraction of zeros and dtype; against a model θ the relative norm
// ‖v‖/‖θ‖, against another vector the cosine similarity and the sign agreement (the
// fraction of entries nonzero in both whose signs agree).
#pragma once
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace rvec::arith {

struct InspectRow {
  std::string name;   // tensor name, "layer 3", "embed", "final", or "total"
  std::string dtype;  // tensor rows only ("" for groups; "mixed" when a group mixes)
  uint64_t numel = 0, zeros = 0;
  double sumsq = 0, max_abs = 0;
  double ref_sumsq = 0, dot = 0;  // against: ‖ref‖², <v, ref>
  uint64_t both_nonzero = 0, same_sign = 0;  // against: entries nonzero in both, and of those with equal signs
  double norm() const;
  double zero_fraction() const;
  double ref_norm() const;
  double relative() const;  // ‖v‖/‖ref‖
  double cosine() const;    // <v, ref>/(‖v‖‖ref‖)
  double sign_agreement() const;  // same_sign / both_nonzero (0 when none)
};

struct InspectResult {
  std::string path, against, against_kind;  // against_kind: "" | "model" | "vector"
  std::vector<InspectRow> tensors, groups;
  InspectRow total;
};

// against_kind "" = no comparison; "auto" = "vector" when against's rvec.json says it
// was made by extract/random-vector/apply of vectors, else "model".
InspectResult inspect(const std::filesystem::path& path, const std::optional<std::filesystem::path>& against,
                      std::string against_kind = "auto");
nlohmann::json to_json(const InspectResult& r);
std::string to_table(const InspectResult& r, bool per_tensor = true);

// Group of a tensor: "layer N", "embed" (embed_tokens), "lm_head", or "other".
std::string tensor_group(const std::string& name);

}  // namespace rvec::arith
