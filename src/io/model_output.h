// The non-tensor files of an output model directory: config.json (from an explicit
// donor, torch_dtype updated), tokenizer/generation files copied from the donor,
// and rvec.json, the record of what produced the directory.
#pragma once
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace rvec::io {

// tokenizer.json, tokenizer_config.json, special_tokens_map.json, added_tokens.json,
// vocab.json, merges.txt, tokenizer.model, chat_template.jinja, chat_template.json,
// generation_config.json (those present in the donor are copied).
const std::vector<std::string>& donor_files();

// Copies config.json (with torch_dtype set when given) and donor_files() from `donor`
// into `out_dir`. A donor without config.json is an error unless `config` is given,
// which is then written instead of the donor's.
void copy_donor_files(const std::filesystem::path& donor, const std::filesystem::path& out_dir,
                      std::optional<DType> torch_dtype, const nlohmann::json* config = nullptr);

// SHA-256 (hex) of a file, hashed from a memory map 2 MB at a time (bounded RSS).
std::string sha256_mapped(const std::filesystem::path& path);

// {"path": abs path, "files": {name: sha256}} for the safetensors files of a model dir
// (hashes from the cache of io/hash_cache.h when the files are unchanged).
nlohmann::json describe_input(const std::filesystem::path& model_dir);

// Writes out_dir/rvec.json: `record` plus "rvec_version" and "created".
void write_rvec_json(const std::filesystem::path& out_dir, nlohmann::json record);

// Reads rvec.json of a directory written by rvec ({} when absent or unreadable).
nlohmann::json read_rvec_json(const std::filesystem::path& dir);

}  // namespace rvec::io
