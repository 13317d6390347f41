// Loading the evaluation datasets: files are looked up under a data root (the repo's data/
// by default, --data-dir to override) and checked against the root's SHA256SUMS.
#pragma once
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace rvec::eval {

using Doc = nlohmann::json;

// The default data root: $RVEC_DATA_DIR if set, else <source dir>/data, else data/ next to the
// executable's parent directory.
std::filesystem::path default_data_root();

class DataRoot {
 public:
  explicit DataRoot(std::filesystem::path root);
  const std::filesystem::path& root() const { return root_; }
  // Reads root/rel; if SHA256SUMS in root lists rel, the content must match (rvec::Error naming
  // the file otherwise). Files not listed are read unchecked (e.g. a user's --data-dir copy).
  std::string read_verified(const std::string& rel) const;
  bool exists(const std::string& rel) const;
  bool listed(const std::string& rel) const;
  std::vector<Doc> load_jsonl(const std::string& rel) const;  // one JSON object per non-empty line
  Doc load_json(const std::string& rel) const;

 private:
  std::filesystem::path root_;
  std::vector<std::pair<std::string, std::string>> sums_;  // (relative path, sha256)
};

}  // namespace rvec::eval
