// Internal: the one streaming linear-combination engine behind extract / apply /
// merge (arith.h is the public API).
#pragma once
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "arith/arith.h"
#include "arith/sparsify.h"

namespace rvec::io {
class MappedFile;
}

namespace rvec::arith::detail {

// A generalized task-arithmetic merge (mergekit's GTA family), per output tensor:
//   δ_i = Σ_j c_ij input_j;  δ_i' = sparsify(δ_i) (rescaled to ‖δ_i‖₁ when rescale);
//   x_i = w_i δ_i';  with consensus, m_i = [sign x_i == sign Σ_j x_j (0 counts as +)], else m_i = 1;
//   out = target + λ Σ_i m_i x_i / (normalize ? Σ_i m_i w_i (1 when 0) : 1).
struct DeltaParams {
  double weight = 1, density = 1, gamma = 0.01, epsilon = 0.15;
};
struct TensorParams {
  double lambda = 1;
  bool normalize = false, rescale = false;
};
struct SparseJob {
  sparse::Method method = sparse::Method::None;
  bool consensus = false;
  uint64_t seed = 0;
  std::vector<std::vector<std::pair<size_t, double>>> deltas;  // per delta: (input, coefficient)
  std::function<DeltaParams(size_t delta, const std::string& tensor)> delta_params;
  std::function<TensorParams(const std::string& tensor)> tensor_params;
};

struct Job {
  std::string operation;                      // "extract", "apply", "merge"
  std::vector<std::string> names;             // input labels (errors, rvec.json)
  std::vector<std::filesystem::path> paths;   // input model directories
  size_t target = 0;                          // output names/shapes/config come from this input
  // Coefficient of input i for a tensor (before include/exclude/scale).
  std::function<double(size_t input, const std::string& tensor)> coef;
  nlohmann::json record = nlohmann::json::object();  // operation-specific fields for rvec.json
  bool vector_output = false;   // the output is a task vector: scales multiply every coefficient,
                                // unselected tensors are zero, vocab rows cropped to the common rows
  bool extract_lossless = false;  // extract: inputs {tuned, base}; choose BF16/F32/F64 per tensor
  DType compat_dtype = DType::BF16;  // rounding dtype for Options::mergekit_compat
  // Set: the output is target + the merged deltas above (coef() is then unused); the
  // target's own tensor is the input `target`.
  std::optional<SparseJob> sparse;
  // PEFT LoRA adapters added on top (arith/lora.h): each entry's change times alpha (and the
  // --scale / --include factor) is applied to its target tensor after the linear combination.
  struct LoraInput {
    std::string name;
    std::filesystem::path path;
    double alpha = 1;
  };
  std::vector<LoraInput> loras;
};

Report run(const Job& job, const Options& opts);

// Drops the pages of elements [lo, hi) of a tensor at byte offset file_off of f (es bytes
// per element) from this process's working set once consumed (see engine.cpp).
void drop_consumed(const io::MappedFile& f, uint64_t file_off, size_t es, uint64_t lo, uint64_t hi);

inline bool computable_dtype(DType t) { return is_arith_dtype(t) || t == DType::F64; }

}  // namespace rvec::arith::detail
