// Compact task vectors: `rvec compress` (sparse top-|x| or int8 per-row absmax) and the
// reader that lets apply / merge use them directly, decoding chunk by chunk (never a whole
// tensor in memory).
//
// Layout (format version 1): a model directory like a dense vector (model.safetensors or
// shards, config.json, tokenizer files, rvec.json) whose safetensors __metadata__ holds
//   "rvec_compressed": "sparse" | "int8",   "rvec_compressed_version": "1",
//   "<name>.shape": "[569,128]" (JSON),   "<name>.dtype": "BF16"  (the dtype it decodes to)
// for every tensor <name> of the vector, and these tensors:
//   sparse: <name>.sparse_idx  U32 [k] (I64 when the tensor has 2^32 entries or more): flat
//           row-major indices, strictly ascending; <name>.sparse_val [k] in the vector's dtype
//           (F64 stored as F32). Missing entries are zero.
//   int8:   <name>.q I8 [shape]; <name>.scale F32 [rows] (rows = shape[0]; 1 for 0-/1-D tensors).
//           scale = max|row| / 127, q = round-to-nearest-even(x / scale) (0 for a zero row);
//           decodes to float(q) · scale (f32), so |x - decoded| <= scale / 2.
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "io/model_dir.h"
#include "io/safetensors_writer.h"

namespace rvec::arith {

inline constexpr const char* kCompressedTag = "rvec_compressed";
inline constexpr const char* kCompressedVersionKey = "rvec_compressed_version";
inline constexpr const char* kCompressedVersion = "1";

struct CompressOptions {
  std::string method;            // "sparse" | "int8" | "lora"
  double density = 0.1;          // sparse: fraction of entries kept (top |x|)
  std::string scope = "tensor";  // sparse: "tensor" (top-k of each tensor) | "global" (of the whole vector)
  std::optional<int> rank;       // lora: fixed rank per linear layer ...
  std::optional<double> energy;  // ... or the energy kept per layer (arith/lora.h)
  std::filesystem::path out;
  bool force = false, quiet = false;
  uint64_t shard_size = io::kDefaultShardSize;
};

struct CompressTensorStats {
  std::string name;
  uint64_t numel = 0, kept = 0;        // kept: stored entries (sparse) or numel (int8)
  uint64_t dense_bytes = 0, bytes = 0;  // tensor data of the dense and of the compressed form
  double sumsq = 0, err_sq = 0;        // ‖x‖², ‖x - decoded‖²
  double rel_err() const;              // ‖x - decoded‖ / ‖x‖ (0 for a zero tensor)
};

struct CompressReport {
  std::string method, scope;
  double density = 0;
  std::filesystem::path vector, out;
  std::vector<CompressTensorStats> tensors;
  CompressTensorStats total;           // sums; rel_err over the whole vector
  uint64_t dense_file_bytes = 0, file_bytes = 0;  // safetensors files on disk (headers included)
  double seconds = 0;
};

// Writes the compressed form of the dense vector `vector` to o.out (atomically) with
// compress_report.json (to_json) beside the tensors. Sparse ranks use one total order:
// |x| descending, ties by position ascending (global scope: tensors in file order, then
// position); density d keeps floor(d·n) entries (all when d >= 1). lora: a PEFT adapter
// (lora::extract_from_vector with skip_embeddings: tensors outside the linear layers are
// dropped and count as lost in the error); apply it with `rvec apply --lora`.
CompressReport compress(const std::filesystem::path& vector, const CompressOptions& o);
nlohmann::json to_json(const CompressReport& r);
std::string to_table(const CompressReport& r, bool per_tensor = true);

// One tensor of a compressed vector, decoded on demand.
struct PackedTensor {
  io::TensorInfo info;  // the dense tensor it stands for (name, decoded dtype, shape; data == nullptr)
  bool sparse = false;
  const io::TensorInfo* idx = nullptr;  // sparse
  const io::TensorInfo* val = nullptr;
  const io::TensorInfo* q = nullptr;    // int8
  const io::TensorInfo* scale = nullptr;
  uint64_t cols = 1;                    // int8: elements per row
  uint64_t stored_bytes() const;
  // dst[i] = element off + i, for i < len (off + len <= numel).
  void decode(uint64_t off, size_t len, float* dst) const;
};

class PackedVector {
 public:
  // The compressed view of `dir`, or nullptr when its safetensors carry no rvec_compressed
  // tag. Validates every component (dtypes, shapes, sparse indices in range and ascending,
  // finite non-negative scales); errors name the directory and the tensor.
  static std::unique_ptr<PackedVector> open(const io::ModelDir& dir);
  const std::string& method() const { return method_; }
  const std::vector<const io::TensorInfo*>& tensors() const { return order_; }  // dense view, file order
  const PackedTensor* find(std::string_view name) const;

 private:
  std::string method_;
  std::vector<std::unique_ptr<PackedTensor>> all_;
  std::vector<const io::TensorInfo*> order_;
  std::map<std::string, const PackedTensor*, std::less<>> by_name_;
};

// Writes the dense vector a compressed one decodes to (each tensor in its "<name>.dtype").
void decompress(const std::filesystem::path& packed, const std::filesystem::path& out, bool force, bool quiet);

}  // namespace rvec::arith
