#include "core/build_info.h"
#include "eval/dataset.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "core/atomic_output.h"
#include "core/error.h"
#include "core/sha256.h"

namespace fs = std::filesystem;

namespace rvec::eval {

fs::path default_data_root() {
  if (const char* e = std::getenv("RVEC_DATA_DIR"); e && *e) return e;
  fs::path src = fs::path(RVEC_SOURCE_DIR) / "data";
  if (fs::exists(src / "SHA256SUMS")) return src;
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    for (fs::path p = exe.parent_path(); !p.empty() && p != p.root_path(); p = p.parent_path())
      if (fs::exists(p / "data" / "SHA256SUMS")) return p / "data";
  }
  return src;
}

DataRoot::DataRoot(fs::path root) : root_(std::move(root)) {
  fs::path sums = root_ / "SHA256SUMS";
  if (!fs::exists(sums)) return;
  std::istringstream in(read_file(sums));
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    lineno++;
    if (line.empty()) continue;
    auto sp = line.find(' ');
    if (sp != 64 || line.size() < 67) fail("{}:{}: malformed SHA256SUMS line", sums.string(), lineno);
    std::string rel = line.substr(sp + 1);
    if (!rel.empty() && (rel[0] == ' ' || rel[0] == '*')) rel = rel.substr(1);
    sums_.emplace_back(rel, line.substr(0, 64));
  }
}

bool DataRoot::exists(const std::string& rel) const { return fs::exists(root_ / rel); }

bool DataRoot::listed(const std::string& rel) const {
  for (auto& [p, h] : sums_)
    if (p == rel) return true;
  return false;
}

std::string DataRoot::read_verified(const std::string& rel) const {
  fs::path p = root_ / rel;
  if (!fs::exists(p)) fail("{}: dataset file not found (data root {})", p.string(), root_.string());
  std::string content = read_file(p);
  for (auto& [r, h] : sums_) {
    if (r != rel) continue;
    std::string got = sha256_hex(content);
    if (got != h)
      fail("{}: sha256 mismatch: expected {} (from {}), got {}", p.string(), h, (root_ / "SHA256SUMS").string(), got);
  }
  return content;
}

std::vector<Doc> DataRoot::load_jsonl(const std::string& rel) const {
  std::string content = read_verified(rel);
  std::vector<Doc> docs;
  std::istringstream in(content);
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    lineno++;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      docs.push_back(Doc::parse(line));
    } catch (const std::exception& e) {
      fail("{}:{}: invalid JSON: {}", (root_ / rel).string(), lineno, e.what());
    }
  }
  return docs;
}

Doc DataRoot::load_json(const std::string& rel) const {
  std::string content = read_verified(rel);
  try {
    return Doc::parse(content);
  } catch (const std::exception& e) {
    fail("{}: invalid JSON: {}", (root_ / rel).string(), e.what());
  }
}

}  // namespace rvec::eval
