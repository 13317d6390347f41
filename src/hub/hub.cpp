#include "hub/hub.h"

#include <cctype>
#include <cstdlib>
#include <fstream>

#include "core/error.h"
#include "hub/download.h"

namespace fs = std::filesystem;

namespace rvec::hub {

namespace {
bool name_ok(std::string_view s) {
  if (s.empty() || s.size() > 96 || s.front() == '.' || s.front() == '-' || s.find("..") != std::string_view::npos)
    return false;
  for (char c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') return false;
  return true;
}
std::string env(const char* k) {
  const char* v = std::getenv(k);
  return v ? v : "";
}
}  // namespace

std::optional<RepoRef> parse_repo_id(std::string_view s) {
  RepoRef r;
  if (auto at = s.find('@'); at != std::string_view::npos) {
    r.revision = std::string(s.substr(at + 1));
    s = s.substr(0, at);
    if (r.revision.empty() || r.revision.find('/') == 0 || r.revision.find("..") != std::string::npos) return std::nullopt;
  }
  auto slash = s.find('/');
  if (slash == std::string_view::npos || s.find('/', slash + 1) != std::string_view::npos) return std::nullopt;
  if (!name_ok(s.substr(0, slash)) || !name_ok(s.substr(slash + 1))) return std::nullopt;
  r.repo = std::string(s);
  return r;
}

fs::path cache_dir() {
  if (auto c = env("HF_HUB_CACHE"); !c.empty()) return c;
  if (auto h = env("HF_HOME"); !h.empty()) return fs::path(h) / "hub";
  std::string home = env("HOME");
  return fs::path(home.empty() ? "/" : home) / ".cache" / "huggingface" / "hub";
}

fs::path repo_cache_dir(const std::string& repo) {
  std::string folder = "models--" + repo;
  for (size_t p = folder.find('/'); p != std::string::npos; p = folder.find('/', p)) folder.replace(p, 1, "--");
  return cache_dir() / folder;
}

bool offline() {
  std::string v = env("HF_HUB_OFFLINE");
  for (auto& c : v) c = char(std::tolower(static_cast<unsigned char>(c)));
  return v == "1" || v == "true" || v == "yes" || v == "on";
}

std::optional<fs::path> cached_snapshot(const RepoRef& r) {
  const fs::path root = repo_cache_dir(r.repo);
  std::string commit = r.revision;
  std::ifstream ref(root / "refs" / r.revision);
  if (ref) std::getline(ref, commit);
  fs::path snap = root / "snapshots" / commit;
  std::error_code ec;
  if (!commit.empty() && fs::is_directory(snap, ec)) return snap;
  return std::nullopt;
}

fs::path resolve_model(const std::string& name, bool download) {
  auto r = parse_repo_id(name);
  if (!r) fail("{}: no such directory (and not a Hugging Face ORG/NAME[@REVISION] name)", name);
  if (auto s = cached_snapshot(*r)) return *s;
  const std::string where = repo_cache_dir(r->repo).string();
  if (offline())
    fail("{}: not in the Hugging Face cache ({}) and HF_HUB_OFFLINE is set", name, where);
  if (!download)
    fail("{}: not in the Hugging Face cache ({}); run `rvec download {}{}` first, or add --download", name, where,
         r->repo, r->revision == "main" ? "" : " --revision " + r->revision);
  DownloadOptions o;
  o.revision = r->revision;
  return hub::download(r->repo, o);
}

}  // namespace rvec::hub
