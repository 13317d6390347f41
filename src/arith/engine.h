// Internal: the one streaming linear-combination engine behind extract / apply /
// merge (arith.h is the public API).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "arith/arith.h"

namespace rvec::arith::detail {

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
};

Report run(const Job& job, const Options& opts);

inline bool computable_dtype(DType t) { return is_arith_dtype(t) || t == DType::F64; }

}  // namespace rvec::arith::detail
