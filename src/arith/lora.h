// LoRA adapters in PEFT's file format (adapter_config.json + adapter_model.safetensors).
//
// Extraction: every linear layer's delta Δ (2-D tensor inside model.layers.N, out x in) is
// factored by a truncated SVD Δ ≈ U_r S_r V_rᵀ (LAPACK dgesdd; with a fixed rank r and
// r + 10 <= min(out, in) / 4, a randomised SVD: Gaussian sketch of r + 10 columns, two power
// iterations, LAPACK QR, then dgesdd of the small projected matrix) and stored as PEFT stores a trained adapter:
//   base_model.model.<module>.lora_A.weight  [r, in]   = sqrt(S_r) V_rᵀ
//   base_model.model.<module>.lora_B.weight  [out, r]  = U_r sqrt(S_r)
// with lora_alpha = r for every module (scale lora_alpha / r = 1; per-module ranks go to
// rank_pattern and alpha_pattern), so PEFT, vLLM and `apply --lora` all add exactly B·A.
// Tensors that are not linear layers (embeddings, lm_head, norms, biases) are either skipped
// (skip_embeddings) or written as PEFT saves trained non-LoRA parts, i.e. as FULL tuned weights:
// modules_to_save ("base_model.model.model.embed_tokens.weight") and bias "lora_only"
// ("base_model.model.<module>.base_layer.bias"). Those need the base model's values
// (tuned = base + Δ), so a vector without a base must be extracted with skip_embeddings.
//
// Reading: Adapter::open() accepts any PEFT LoRA adapter (rvec's or a trained one) with
// peft_type LORA, fan_in_fan_out false, no DoRA; ranks and alphas per module from r /
// lora_alpha / rank_pattern / alpha_pattern, scale alpha / r or alpha / sqrt(r) (use_rslora),
// as PEFT's LoraLayer.update_layer computes them.
//
// Usage (compress / experiment code):
//   lora::ExtractOptions o; o.out = "runs/v-r16"; o.rank = 16; o.skip_embeddings = true;
//   auto rep = lora::extract_from_vector("runs/vec", std::nullopt, o);   // rep.rel_error, per module
//   auto ad = lora::Adapter::open("runs/v-r16");
//   for (size_t i = 0; i < ad->entries().size(); ++i) {                 // one tensor at a time
//     const auto& e = ad->entries()[i];
//     if (e.kind == lora::Entry::Kind::Replace) continue;               // a full weight, not a delta
//     std::vector<float> d = ad->dense(i);                              // row-major e.shape, f32
//   }
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "arith/arith.h"
#include "core/dtype.h"
#include "io/safetensors.h"

namespace rvec::arith::lora {

// ---------------------------------------------------------------- extraction
struct ExtractOptions {
  std::filesystem::path out;         // adapter directory (required), written atomically
  std::optional<int> rank;           // fixed rank per module (capped at min(out, in)) ...
  std::optional<double> energy;      // ... or the smallest rank keeping this fraction of ‖Δ‖_F², in (0, 1]
  bool skip_embeddings = false;      // drop embeddings, lm_head, norms and biases instead of saving them
  DType dtype = DType::F32;          // of lora_A / lora_B: F32, BF16 or F16 (full weights keep the tuned dtype)
  std::string base_model_name_or_path;  // for the config; default: the base path as given, else ""
  bool exact_svd = false;            // always the full SVD (default: randomised when rank + 10 <= min(out, in) / 4)
  bool force = false, quiet = false;
  uint64_t seed = 0;                 // randomised SVD sketch (per tensor: seed ^ the tensor name's stream id)
};

struct ModuleReport {
  std::string tensor;      // "model.layers.0.self_attn.q_proj.weight"
  int64_t out = 0, in = 0;
  int rank = 0;
  bool exact = true;       // full SVD (false: randomised)
  double norm = 0;         // ‖Δ‖_F
  double rel_error = 0;    // ‖Δ − B·A‖_F / ‖Δ‖_F with the factors as stored (0 when Δ = 0)
};

struct ExtractReport {
  std::filesystem::path out;
  int r = 0;                             // config r (the largest rank)
  std::vector<ModuleReport> modules;     // in tensor order
  std::vector<std::string> saved;        // full weights written (modules_to_save, biases)
  std::vector<std::string> skipped;      // tensors dropped (skip_embeddings) ...
  double skipped_norm = 0;               // ... and ‖Δ‖_F over them
  double rel_error = 0;                  // over the LoRA modules together
  double total_rel_error = 0;            // over the whole vector (skipped tensors count as lost)
  uint64_t bytes_written = 0;            // adapter_model.safetensors
  double seconds = 0;
  nlohmann::json config;                 // adapter_config.json as written
};

// Adapter from a task vector (rvec extract's output). `base` supplies full weights for
// modules_to_save / biases; without it skip_embeddings is required.
ExtractReport extract_from_vector(const std::filesystem::path& vector, const std::optional<std::filesystem::path>& base,
                                  const ExtractOptions& o);
// Adapter for Δ = tuned − base.
ExtractReport extract_from_models(const std::filesystem::path& base, const std::filesystem::path& tuned,
                                  const ExtractOptions& o);

// Human summary (per-module rank and error, totals) on stdout.
void print_report(const ExtractReport& r);

// ---------------------------------------------------------------- reading
struct AdapterConfig {
  int r = 8;
  double lora_alpha = 8;
  bool use_rslora = false;
  // PEFT key patterns in file order (regex, matched as (.*\.)?(KEY)$; the first match wins).
  std::vector<std::pair<std::string, int>> rank_pattern;
  std::vector<std::pair<std::string, double>> alpha_pattern;
  std::vector<std::string> target_modules;      // as written ("q_proj", ...), or one regex string
  std::vector<std::string> modules_to_save;
  std::string bias = "none";
  std::string base_model_name_or_path;
  nlohmann::json raw;                           // the whole file
};

// One base-model tensor the adapter changes.
struct Entry {
  enum class Kind {
    LowRank,    // W += scale · B·A           (lora_A / lora_B; embeddings: scale · (B·A)ᵀ)
    BiasDelta,  // b += scale · lora_B.bias   (lora_bias = true)
    Replace,    // W  = full                  (modules_to_save, base_layer.bias)
  };
  Kind kind = Kind::LowRank;
  std::string target;                 // base-model tensor name: "model.layers.0.self_attn.q_proj.weight"
  std::vector<int64_t> shape;         // of the target tensor
  int rank = 0;                       // LowRank
  double scale = 1;                   // LowRank / BiasDelta: lora_alpha / r (or / sqrt r)
  const io::TensorInfo* a = nullptr;  // LowRank: lora_A [rank, in]
  const io::TensorInfo* b = nullptr;  // LowRank: lora_B [out, rank]; BiasDelta: lora_B.bias [out]
  const io::TensorInfo* full = nullptr;  // Replace
  bool transposed = false;            // embedding LoRA (lora_embedding_A [r, vocab], _B [dim, r])
  std::string key;                    // the adapter key it comes from (errors)
};

class Adapter {
 public:
  // Validates the config and every tensor (names, shapes, dtypes, ranks against the config);
  // errors name the file and key. adapter_model.bin (pickle) is refused.
  static std::unique_ptr<Adapter> open(const std::filesystem::path& dir);
  const std::filesystem::path& path() const { return path_; }
  const AdapterConfig& config() const { return cfg_; }
  const std::vector<Entry>& entries() const { return entries_; }  // sorted by target name
  const Entry* find(const std::string& target) const;             // nullptr if untouched

  // Applies entry i to elements [off, off + len) of its target (row-major, flat index) held in
  // acc as f32: LowRank / BiasDelta add coef · scale · (B·A) / coef · scale · bias; Replace
  // moves acc towards the full weight, acc += coef · (full − acc) (coef 1: PEFT's merge).
  // Thread-safe (reads only); streaming: only the rows of B and columns of A involved are read.
  void add_elements(size_t i, uint64_t off, size_t len, double coef, float* acc) const;
  // The whole change of entry i as f32 (row-major, entry shape): scale · B·A, scale · bias,
  // or the full weight for Replace.
  std::vector<float> dense(size_t i) const;

 private:
  Adapter() = default;
  std::filesystem::path path_;
  AdapterConfig cfg_;
  std::unique_ptr<io::SafetensorsFile> file_;
  std::vector<Entry> entries_;
};

// target + Σ alpha_i · vector_i + Σ alpha_j · adapter_j (`rvec apply --lora A[:ALPHA]`), streamed like
// arith::apply: LowRank entries add alpha · scale · B·A, modules_to_save / base_layer.bias entries
// move the target's tensor to alpha · full + (1 − alpha) · target (alpha 1: PEFT's merge_and_unload).
// Every adapter entry must name a float tensor of the target with the same shape.
Report apply_adapters(const std::filesystem::path& target, const std::vector<std::pair<std::filesystem::path, double>>& vectors,
                      const std::vector<std::pair<std::filesystem::path, double>>& adapters, const Options& opts);

// Rank and scale PEFT gives a module ("model.layers.0.self_attn.q_proj") under a config.
int module_rank(const AdapterConfig& c, const std::string& module);
double module_scale(const AdapterConfig& c, const std::string& module);

}  // namespace rvec::arith::lora
