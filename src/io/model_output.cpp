#include "io/model_output.h"

#include <algorithm>
#include <chrono>
#include <ctime>

#include "core/atomic_output.h"
#include "core/error.h"
#include "core/sha256.h"
#include "io/hash_cache.h"
#include "io/mapped_file.h"
#include "io/model_dir.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace rvec::io {

const std::vector<std::string>& donor_files() {
  static const std::vector<std::string> f = {
      "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
      "vocab.json",     "merges.txt",            "tokenizer.model",         "chat_template.jinja",
      "chat_template.json", "generation_config.json"};
  return f;
}

void copy_donor_files(const fs::path& donor, const fs::path& out_dir, std::optional<DType> torch_dtype,
                      const json* config) {
  json cfg;
  if (config) {
    cfg = *config;
  } else {
    fs::path p = donor / "config.json";
    if (!fs::exists(p)) fail("{}: donor has no config.json", donor.string());
    try {
      cfg = json::parse(read_file(p));
    } catch (const json::exception& e) {
      fail("{}: invalid JSON: {}", p.string(), e.what());
    }
  }
  if (torch_dtype && cfg.is_object()) cfg["torch_dtype"] = std::string(torch_dtype_name(*torch_dtype));
  write_file_atomic(out_dir / "config.json", cfg.dump(2) + "\n");
  for (const auto& f : donor_files()) {
    fs::path src = donor / f;
    if (!fs::is_regular_file(src)) continue;
    copy_file_checked(src, out_dir / f);
  }
}

std::string sha256_mapped(const fs::path& path) {
  // Straight from the page cache (no copy into a read buffer: ~20 % less CPU than read()),
  // 2 MB at a time, each dropped from the working set once hashed (RSS stays bounded).
  constexpr size_t kChunk = size_t(2) << 20;
  MappedFile f(path);
  Sha256 h;
  for (size_t off = 0; off < f.size(); off += kChunk) {
    const size_t n = std::min(kChunk, f.size() - off);
    h.update(f.data() + off, n);
    f.advise_dontneed(off, n);
  }
  return h.hex();
}

json describe_input(const fs::path& model_dir) {
  json files = json::object();
  std::vector<fs::path> st;
  for (const auto& e : fs::directory_iterator(model_dir))
    if (e.is_regular_file() && e.path().extension() == ".safetensors") st.push_back(e.path());
  std::sort(st.begin(), st.end());
  for (const auto& p : st) files[p.filename().string()] = sha256_cached(p, sha256_mapped);
  return {{"path", fs::absolute(model_dir).lexically_normal().string()}, {"sha256", files}};
}

void write_rvec_json(const fs::path& out_dir, json record) {
  record["rvec_version"] = RVEC_VERSION;
  std::time_t now = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  record["created"] = buf;
  write_file_atomic(out_dir / "rvec.json", record.dump(2) + "\n");
}

json read_rvec_json(const fs::path& dir) {
  fs::path p = dir / "rvec.json";
  if (!fs::exists(p)) return json::object();
  try {
    return json::parse(read_file(p));
  } catch (const std::exception&) {
    return json::object();
  }
}

}  // namespace rvec::io
