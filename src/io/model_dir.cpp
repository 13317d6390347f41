#include "io/model_dir.h"

#include "io/model_resolver.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <set>

#include "core/atomic_output.h"
#include "core/error.h"
#include "core/json_strict.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace rvec::io {

namespace {
// config.json and the shard index: a duplicate key would make the value depend on which
// parser reads the file, so it is refused.
json read_json(const fs::path& p) { return parse_json_strict(read_file(p), p.string()); }
}  // namespace

std::unique_ptr<ModelDir> ModelDir::open(const fs::path& name, bool require_config, Backing backing) {
  const fs::path path = resolve_model_path(name);
  auto m = std::unique_ptr<ModelDir>(new ModelDir());
  m->path_ = path;
  if (!fs::is_directory(path)) fail("{}: not a directory (expected a Hugging Face model directory)", path.string());
  fs::path cfg = path / "config.json";
  if (fs::exists(cfg)) {
    m->config_ = read_json(cfg);
    if (!m->config_.is_object()) fail("{}: not a JSON object", cfg.string());
  } else if (require_config) {
    fail("{}: no config.json (expected a Hugging Face model directory)", path.string());
  }

  fs::path single = path / "model.safetensors", index = path / "model.safetensors.index.json";
  std::map<std::string, std::string> weight_map;  // tensor -> shard file name
  std::vector<std::string> shard_names;
  if (fs::exists(index)) {
    m->sharded_ = true;
    json idx = read_json(index);
    if (!idx.is_object() || !idx.contains("weight_map") || !idx["weight_map"].is_object())
      fail("{}: missing \"weight_map\" object", index.string());
    std::set<std::string> seen;
    for (auto it = idx["weight_map"].begin(); it != idx["weight_map"].end(); ++it) {
      if (!it->is_string()) fail("{}: weight_map entry for '{}' is not a string", index.string(), it.key());
      std::string f = it->get<std::string>();
      if (f.empty() || f.find('/') != std::string::npos || f == "." || f == "..")
        fail("{}: weight_map entry for '{}' names an invalid file \"{}\"", index.string(), it.key(), f);
      weight_map[it.key()] = f;
      if (seen.insert(f).second) shard_names.push_back(f);
    }
    std::sort(shard_names.begin(), shard_names.end());
    for (const auto& f : shard_names)
      if (!fs::exists(path / f)) fail("{}: shard {} listed in the index is missing", index.string(), (path / f).string());
  } else if (fs::exists(single)) {
    shard_names.push_back("model.safetensors");
  } else {
    fail("{}: no model.safetensors or model.safetensors.index.json", path.string());
  }

  for (size_t fi = 0; fi < shard_names.size(); ++fi) {
    m->files_.push_back(SafetensorsFile::open(path / shard_names[fi], backing));
    const auto& file = *m->files_.back();
    for (const auto& t : file.tensors()) {
      if (m->sharded_) {
        auto w = weight_map.find(t.name);
        if (w == weight_map.end())
          fail("{}: tensor '{}' is in shard {} but not in model.safetensors.index.json", path.string(), t.name,
               shard_names[fi]);
        if (w->second != shard_names[fi])
          fail("{}: tensor '{}' is in shard {} but the index maps it to {}", path.string(), t.name, shard_names[fi],
               w->second);
      }
      auto [it, inserted] = m->by_name_.emplace(t.name, std::make_pair(&t, fi));
      if (!inserted)
        fail("{}: tensor '{}' appears in both {} and {}", path.string(), t.name,
             m->files_[it->second.second]->path().filename().string(), shard_names[fi]);
      m->order_.push_back(&t);
    }
  }
  for (const auto& [name, file] : weight_map)
    if (!m->by_name_.count(name))
      fail("{}: index lists tensor '{}' in {} but that shard does not contain it", index.string(), name, file);
  return m;
}

std::string ModelDir::architecture() const {
  if (config_.is_object() && config_.contains("architectures") && config_["architectures"].is_array() &&
      !config_["architectures"].empty() && config_["architectures"][0].is_string())
    return config_["architectures"][0].get<std::string>();
  return "";
}

bool ModelDir::tie_word_embeddings() const {
  if (config_.is_object() && config_.contains("tie_word_embeddings") && config_["tie_word_embeddings"].is_boolean())
    return config_["tie_word_embeddings"].get<bool>();
  return true;  // transformers' PretrainedConfig default
}

const TensorInfo* ModelDir::find(std::string_view name) const {
  auto it = by_name_.find(std::string(name));
  return it == by_name_.end() ? nullptr : it->second.first;
}

const TensorInfo& ModelDir::get(std::string_view name) const {
  const TensorInfo* t = find(name);
  if (!t) fail("{}: tensor '{}' not found", path_.string(), name);
  return *t;
}

const SafetensorsFile& ModelDir::file_of(std::string_view name) const {
  auto it = by_name_.find(std::string(name));
  if (it == by_name_.end()) fail("{}: tensor '{}' not found", path_.string(), name);
  return *files_[it->second.second];
}

uint64_t ModelDir::total_bytes() const {
  uint64_t n = 0;
  for (auto* t : order_) n += t->nbytes();
  return n;
}

}  // namespace rvec::io
