// Task-vector arithmetic on Hugging Face model directories, streamed tensor by
// tensor and chunk by chunk (bounded memory), computed in f32 on all cores and
// rounded once to the output dtype (round-to-nearest-even).
//
// Every operation is a linear combination  out[t] = Σ_i c_i(t) · input_i[t]  over the
// tensors t of a "target" input (whose names, shapes, dtypes, config and tokenizer the
// output inherits). All inputs are validated before any byte is written: same
// architecture family, same tensor names (tied lm_head <-> embed_tokens resolved
// through tie_word_embeddings), same shapes except vocabulary rows of embed_tokens /
// lm_head (the arithmetic runs on the common rows and the target's extra rows are
// kept, with a warning; an error with strict_vocab). The output directory is built
// atomically (core/atomic_output.h) and records what produced it in rvec.json.
//
// Usage (experiment runner):
//   arith::Options o; o.out = "runs/vec"; o.quiet = true;
//   arith::extract("SFT", "GRPO", o);                     // v = GRPO - SFT, lossless storage
//   o.out = "runs/instruct+v";
//   arith::apply("Instruct", {{"runs/vec", 1.0}}, o);      // Instruct + 1.0 v
//   arith::merge_expr("instruct + 0.5*(grpo - sft)", {{"instruct", "I"}, {"grpo", "G"}, {"sft", "S"}}, o);
//   arith::random_like("runs/vec", 42, o);                 // same per-tensor norms, random direction
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "io/safetensors_writer.h"

namespace rvec::arith {

struct Options {
  std::filesystem::path out;                        // output directory (required)
  bool force = false;                               // replace an existing output
  uint64_t shard_size = io::kDefaultShardSize;       // bytes of tensor data per shard
  std::optional<DType> out_dtype;                   // default: the target's dtype per tensor (extract: lossless choice)
  std::optional<std::filesystem::path> donor;       // config/tokenizer donor (default: the target)
  bool mergekit_compat = false;                     // round to bf16 after every product and sum
  bool strict = false;                              // non-finite results are an error
  bool strict_vocab = false;                        // vocab-row mismatches are an error
  std::string include, exclude;                     // PCRE2 regexes on tensor names (search, not full match)
  std::vector<std::pair<std::string, double>> scales;  // REGEX=FACTOR: per-tensor factor on the vector part
  bool quiet = false;                               // no progress bar, no warnings on stderr
  bool hash_inputs = true;                          // sha256 of input files in rvec.json (background thread)
  uint64_t seed = 0;                                // random masks of DARE / DELLA merges
};

struct TensorReport {
  std::string name;
  DType dtype = DType::F32;  // stored dtype
  uint64_t nonfinite = 0;
  double max_round_err = 0, rms_round_err = 0;  // extract: |stored - exact difference|
  bool lossless = true;                          // extract: apply(base, v) == tuned bit for bit
};

struct Report {
  std::filesystem::path out;
  std::vector<TensorReport> tensors;
  std::map<std::string, uint64_t> dtype_counts;  // "BF16" -> number of tensors
  uint64_t nonfinite = 0;
  uint64_t bytes_written = 0;
  std::vector<std::string> warnings;
  double seconds = 0;
  nlohmann::json record;  // what was written to rvec.json
};

// v = tuned - base. Default storage per tensor: BF16 when the f32 difference is exactly
// representable in bf16 and base + v reproduces tuned bit for bit, else F32 (else F64,
// which apply computes in double). opts.out_dtype forces a type; the report then gives
// the max / RMS rounding error. The donor defaults to `tuned`.
Report extract(const std::filesystem::path& base, const std::filesystem::path& tuned, const Options& opts);

// target + Σ alpha_i · vector_i (alpha < 0 subtracts).
Report apply(const std::filesystem::path& target,
             const std::vector<std::pair<std::filesystem::path, double>>& vectors, const Options& opts);

// Any linear expression of named models: + - * numbers, names, parentheses
// ("instruct + 0.5*(grpo - sft)"). The target is `target` if non-empty, else the first
// name in the expression. Non-linear products are rejected.
Report merge_expr(const std::string& expr, const std::map<std::string, std::filesystem::path>& models,
                  const Options& opts, const std::string& target = "");

// A mergekit config: merge_method linear, task_arithmetic, or one of mergekit's sparsifying
// task-arithmetic methods (ties, dare_ties, dare_linear, breadcrumbs, breadcrumbs_ties,
// della, della_linear) with mergekit's parameters and per-method defaults. Relative model paths are
// resolved against the current directory, then the config's directory.
Report merge_yaml(const std::filesystem::path& config, const Options& opts);

// How `apply --sparsify` treats its vectors: each vector_i is sparsified (mergekit's
// magnitude / random / magnitude_outliers / della_magprune), scaled by its alpha, combined
// with TIES sign consensus when `consensus`, divided by the (agreeing) alphas' sum when
// `normalize`, and added to the target.
struct SparsifyOptions {
  std::string method;  // "ties" | "dare" | "della" | "breadcrumbs"
  double density = 1, gamma = 0.01, epsilon = 0.15;
  std::optional<bool> rescale, consensus;  // defaults: mergekit's ties/dare_linear/della/breadcrumbs
  bool normalize = false;
};
Report apply_sparse(const std::filesystem::path& target,
                    const std::vector<std::pair<std::filesystem::path, double>>& vectors, const SparsifyOptions& sp,
                    const Options& opts);

// A random vector with the same per-tensor L2 norms (and dtypes) as `vector_dir`:
// Gaussian per tensor, rescaled; deterministic for a seed.
Report random_like(const std::filesystem::path& vector_dir, uint64_t seed, const Options& opts);

// Linear expression parsing (exposed for tests): name -> coefficient.
std::map<std::string, double> parse_linear_expr(const std::string& expr, std::vector<std::string>* order = nullptr);

// Layer index of a tensor name ("model.layers.12.mlp..." -> 12), or -1.
int layer_index(const std::string& name);

// Prints a short human summary of a report to stdout.
void print_report(const Report& r, const std::string& what);

}  // namespace rvec::arith
