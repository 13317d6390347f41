// A Hugging Face model directory: config.json plus model.safetensors, or shards
// listed in model.safetensors.index.json. All safetensors files are validated and
// memory-mapped on open; tensors are looked up by name across shards.
#pragma once
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/sha256.h"
#include "io/safetensors.h"

namespace rvec::io {

class ModelDir {
 public:
  // `path` is a directory; config.json is required unless `require_config` is false
  // (task-vector directories written by rvec have one too). `backing`: how the
  // safetensors files are held (io/mapped_file.h). Throws rvec::Error.
  static std::unique_ptr<ModelDir> open(const std::filesystem::path& path, bool require_config = true,
                                        Backing backing = Backing::PageCache);

  const std::filesystem::path& path() const { return path_; }
  const nlohmann::json& config() const { return config_; }  // {} when absent
  bool has_config() const { return !config_.is_null() && !config_.empty(); }
  std::string architecture() const;   // config.architectures[0], or "" if absent
  bool tie_word_embeddings() const;   // config.tie_word_embeddings (HF default: true when absent)
  bool sharded() const { return sharded_; }

  // All tensors in file order (shard by shard). Names are unique across shards.
  const std::vector<const TensorInfo*>& tensors() const { return order_; }
  const TensorInfo* find(std::string_view name) const;  // nullptr if absent
  const TensorInfo& get(std::string_view name) const;   // throws naming the dir and tensor
  // The file that holds a tensor (for errors and madvise).
  const SafetensorsFile& file_of(std::string_view name) const;
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }
  uint64_t total_bytes() const;  // sum of tensor bytes

 private:
  std::filesystem::path path_;
  nlohmann::json config_;
  bool sharded_ = false;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::vector<const TensorInfo*> order_;
  std::unordered_map<std::string, std::pair<const TensorInfo*, size_t>> by_name_;
};

using rvec::sha256_file;  // core/sha256.h

}  // namespace rvec::io
