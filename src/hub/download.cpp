#include "hub/download.h"

#include <curl/curl.h>
#include <fnmatch.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/error.h"
#include "core/progress.h"
#include "core/sha256.h"
#include "hub/hub.h"

namespace fs = std::filesystem;

namespace rvec::hub {

namespace {

std::string env(const char* k) {
  const char* v = std::getenv(k);
  return v ? v : "";
}

std::string trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  size_t b = 0;
  while (b < s.size() && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  return s.substr(b);
}

std::string lower(std::string s) {
  for (auto& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Percent-encodes everything but unreserved characters and '/' (file paths keep their folders).
std::string url_path(const std::string& s) {
  std::string o;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/') o += char(c);
    else o += fmt::format("%{:02X}", c);
  }
  return o;
}

struct Response {
  long status = 0;
  std::map<std::string, std::string> headers;  // lower-case names, of the last response only
  std::string body;
  CURLcode code = CURLE_OK;
  std::string error;
  std::string header(const std::string& k) const {
    auto it = headers.find(k);
    return it == headers.end() ? "" : it->second;
  }
};

size_t on_header(char* p, size_t sz, size_t n, void* ud) {
  auto* r = static_cast<Response*>(ud);
  std::string line(p, sz * n);
  if (line.rfind("HTTP/", 0) == 0) {
    r->headers.clear();  // a new response (after a redirect)
  } else if (auto c = line.find(':'); c != std::string::npos) {
    r->headers[lower(trim(line.substr(0, c)))] = trim(line.substr(c + 1));
  }
  return sz * n;
}

size_t on_body_string(char* p, size_t sz, size_t n, void* ud) {
  static_cast<Response*>(ud)->body.append(p, sz * n);
  return sz * n;
}

std::once_flag g_curl_init;

struct Client {
  std::string endpoint, token;

  CURL* make(const std::string& url, Response& r, bool follow) const {
    std::call_once(g_curl_init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
    CURL* h = curl_easy_init();
    if (!h) fail("libcurl: curl_easy_init failed");
    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &r);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, follow ? 1L : 0L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "rvec/" RVEC_VERSION);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 30L);
    // A stalled transfer (under 1 byte/s for 60 s) counts as a dropped connection.
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    return h;
  }

  curl_slist* headers(const std::vector<std::string>& extra) const {
    curl_slist* l = nullptr;
    // libcurl sends a custom Authorization header only to the original host, so the token
    // does not follow a redirect to the LFS storage.
    if (!token.empty()) l = curl_slist_append(l, ("Authorization: Bearer " + token).c_str());
    for (const auto& e : extra) l = curl_slist_append(l, e.c_str());
    return l;
  }

  void run(CURL* h, curl_slist* hdr, Response& r) const {
    char err[CURL_ERROR_SIZE] = {0};
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, err);
    if (hdr) curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    r.code = curl_easy_perform(h);
    r.error = err[0] ? err : curl_easy_strerror(r.code);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r.status);
    curl_slist_free_all(hdr);
    curl_easy_cleanup(h);
  }

  Response get_string(const std::string& url) const {
    Response r;
    CURL* h = make(url, r, true);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body_string);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &r);
    run(h, headers({}), r);
    return r;
  }

  // HEAD without following redirects, except relative ones (a renamed repo), as
  // huggingface_hub's get_hf_file_metadata does: an LFS file's X-Linked-* headers are on
  // the redirect to its storage.
  Response head(std::string url) const {
    for (int hop = 0; hop < 10; ++hop) {
      Response r;
      CURL* h = make(url, r, false);
      curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
      run(h, headers({"Accept-Encoding: identity"}), r);
      std::string loc = r.header("location");
      if (r.code == CURLE_OK && r.status >= 300 && r.status < 400 && !loc.empty() && loc[0] == '/') {
        url = endpoint + loc;
        continue;
      }
      return r;
    }
    fail("{}: too many redirects", url);
  }
};

// "repo: what went wrong" for a failed request.
[[noreturn]] void http_fail(const std::string& what, const Response& r, const std::string& repo) {
  if (r.code != CURLE_OK) fail("{}: network error: {}", what, r.error);
  if (r.status == 401 || r.status == 403)
    fail("{}: HTTP {}: access to {} is restricted (gated or private model): accept its licence on the hub and set "
         "HF_TOKEN (or log in so that the token file exists)",
         what, r.status, repo);
  if (r.status == 404) fail("{}: HTTP 404: not found (check the repository name, revision and file)", what);
  fail("{}: HTTP {}", what, r.status);
}

std::string normalize_etag(std::string e) {
  if (e.rfind("W/", 0) == 0) e = e.substr(2);
  if (e.size() >= 2 && e.front() == '"' && e.back() == '"') e = e.substr(1, e.size() - 2);
  return e;
}

bool is_sha256(const std::string& s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
}

struct FileJob {
  std::string name, url, etag;
  uint64_t size = 0;
};

struct BodyFile {
  FILE* f = nullptr;
  CURL* h = nullptr;
  Progress* prog = nullptr;
  uint64_t have = 0;     // bytes already in the file (a Range request was sent)
  bool started = false;
  bool bad = false;  // an error status: its body is not file content
};

size_t on_body_file(char* p, size_t sz, size_t n, void* ud) {
  auto* b = static_cast<BodyFile*>(ud);
  long st = 0;
  curl_easy_getinfo(b->h, CURLINFO_RESPONSE_CODE, &st);
  if (st != 200 && st != 206) {
    b->bad = true;
    return sz * n;  // discard
  }
  if (!b->started) {
    b->started = true;
    // 200 instead of 206: the server ignored the Range request and sends the whole file.
    if (st == 200 && b->have > 0) {
      std::fflush(b->f);
      if (ftruncate(fileno(b->f), 0) != 0) return 0;
      std::fseek(b->f, 0, SEEK_SET);
    }
  }
  if (std::fwrite(p, 1, sz * n, b->f) != sz * n) return 0;
  if (b->prog) b->prog->add(sz * n);
  return sz * n;
}

uint64_t file_size_or0(const fs::path& p) {
  std::error_code ec;
  auto s = fs::file_size(p, ec);
  return ec ? 0 : uint64_t(s);
}

// Downloads one file into blobs/<etag>, resuming .incomplete across dropped connections.
void fetch_blob(const Client& c, const FileJob& j, const fs::path& blob, const std::string& repo, int retries,
                Progress& prog) {
  const fs::path part = blob.string() + ".incomplete";
  for (int attempt = 0;; ++attempt) {
    uint64_t have = file_size_or0(part);
    if (have > j.size) {
      fs::remove(part);
      have = 0;
    }
    if (attempt == 0) prog.add(have);
    Response r;
    CURL* h = c.make(j.url, r, true);
    FILE* f = std::fopen(part.c_str(), have ? "ab" : "wb");
    if (!f) fail("{}: cannot write: {}", part.string(), std::strerror(errno));
    BodyFile bf{f, h, &prog, have};
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body_file);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &bf);
    std::vector<std::string> extra;
    if (have > 0 && have < j.size) extra.push_back(fmt::format("Range: bytes={}-", have));
    const bool complete_already = have == j.size && j.size > 0;
    if (!complete_already) {
      c.run(h, c.headers(extra), r);
    } else {
      curl_easy_cleanup(h);
      r.status = 200;
    }
    std::fclose(f);
    if (!complete_already && (bf.bad || (r.code == CURLE_OK && r.status != 200 && r.status != 206))) {
      if (bf.bad || r.status >= 400) {
        if (r.status == 416) {  // our partial file is wrong: start over
          fs::remove(part);
          if (attempt < retries) continue;
        }
        http_fail(fmt::format("{}: {}", repo, j.name), r, repo);
      }
    }
    if (r.code != CURLE_OK) {
      if (attempt < retries) {
        std::this_thread::sleep_for(std::chrono::milliseconds(200 << std::min(attempt, 4)));
        continue;  // resume from what arrived
      }
      http_fail(fmt::format("{}: {}", repo, j.name), r, repo);
    }
    const uint64_t got = file_size_or0(part);
    if (got != j.size) {
      if (got < j.size && attempt < retries) continue;
      fs::remove(part);
      fail("{}: {}: received {} bytes, the hub announced {} (X-Linked-Size / Content-Length)", repo, j.name, got,
           j.size);
    }
    if (is_sha256(j.etag)) {
      const std::string sum = sha256_file(part);
      if (lower(sum) != lower(j.etag)) {
        fs::remove(part);
        fail("{}: {}: sha256 {} does not match the LFS etag {} (corrupted download; removed, run again)", repo, j.name,
             sum, j.etag);
      }
    }
    fs::rename(part, blob);
    return;
  }
}

void link_into_snapshot(const fs::path& snap, const std::string& name, const fs::path& blob) {
  const fs::path link = snap / name;
  fs::create_directories(link.parent_path());
  const fs::path target = fs::relative(blob, link.parent_path());
  std::error_code ec;
  if (fs::is_symlink(fs::symlink_status(link, ec))) {
    if (fs::read_symlink(link, ec) == target) return;
    fs::remove(link);
  } else if (fs::exists(link, ec)) {
    fs::remove(link);
  }
  fs::create_symlink(target, link);
}

}  // namespace

std::string default_token() {
  if (auto t = trim(env("HF_TOKEN")); !t.empty()) return t;
  fs::path file;
  if (auto p = env("HF_TOKEN_PATH"); !p.empty()) file = p;
  else if (auto h = env("HF_HOME"); !h.empty()) file = fs::path(h) / "token";
  else file = fs::path(env("HOME")) / ".cache/huggingface/token";
  std::ifstream in(file);
  std::string line;
  if (in) std::getline(in, line);
  return trim(line);
}

fs::path download(const std::string& repo, const DownloadOptions& o) {
  if (!parse_repo_id(repo)) fail("'{}' is not a Hugging Face repository name (ORG/NAME)", repo);
  if (offline()) fail("{}: HF_HUB_OFFLINE is set: rvec download does not touch the network", repo);
  Client c;
  c.endpoint = o.endpoint ? *o.endpoint : env("HF_ENDPOINT");
  if (c.endpoint.empty()) c.endpoint = "https://huggingface.co";
  while (!c.endpoint.empty() && c.endpoint.back() == '/') c.endpoint.pop_back();
  c.token = o.token ? *o.token : default_token();

  const std::string info_url = fmt::format("{}/api/models/{}/revision/{}", c.endpoint, repo, url_path(o.revision));
  Response info = c.get_string(info_url);
  if (info.code != CURLE_OK || info.status != 200) http_fail(fmt::format("{}@{}", repo, o.revision), info, repo);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(info.body);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: the hub's answer is not JSON: {}", info_url, e.what());
  }
  if (!j.is_object() || !j.contains("sha") || !j["sha"].is_string() || !j.contains("siblings") ||
      !j["siblings"].is_array())
    fail("{}: the hub's answer lacks 'sha' or 'siblings'", info_url);
  const std::string commit = j["sha"].get<std::string>();
  if (commit.empty() || commit.find('/') != std::string::npos || commit.find("..") != std::string::npos)
    fail("{}: bad commit '{}'", info_url, commit);
  std::vector<std::string> names;
  for (const auto& s : j["siblings"]) {
    if (!s.is_object() || !s.contains("rfilename") || !s["rfilename"].is_string()) continue;
    std::string n = s["rfilename"].get<std::string>();
    if (n.empty() || n[0] == '/' || n.find("..") != std::string::npos) fail("{}: unsafe file name '{}'", info_url, n);
    bool keep = o.include.empty();
    for (const auto& g : o.include) keep = keep || fnmatch(g.c_str(), n.c_str(), 0) == 0;
    if (keep) names.push_back(n);
  }
  if (names.empty()) fail("{}@{}: no file matches the --include patterns", repo, o.revision);

  const fs::path root = repo_cache_dir(repo), blobs = root / "blobs", snap = root / "snapshots" / commit;
  fs::create_directories(blobs);
  fs::create_directories(snap);
  fs::create_directories(root / "refs");

  // Metadata of every file first (sizes for the progress bar), then the bodies in parallel.
  std::vector<FileJob> jobs(names.size());
  std::atomic<size_t> next{0};
  std::mutex err_mu;
  std::string first_error;
  const int nthreads = std::max(1, std::min<int>(o.parallel, int(names.size())));
  auto pool = [&](auto&& work) {
    next = 0;
    std::vector<std::thread> ts;
    for (int t = 0; t < nthreads; ++t)
      ts.emplace_back([&] {
        for (size_t i; (i = next++) < jobs.size();) {
          try {
            work(i);
          } catch (const std::exception& e) {
            std::lock_guard lk(err_mu);
            if (first_error.empty()) first_error = e.what();
          }
        }
      });
    for (auto& t : ts) t.join();
    if (!first_error.empty()) throw Error(first_error);
  };
  pool([&](size_t i) {
    FileJob& fj = jobs[i];
    fj.name = names[i];
    const std::string url = fmt::format("{}/{}/resolve/{}/{}", c.endpoint, repo, commit, url_path(fj.name));
    Response h = c.head(url);
    if (h.code != CURLE_OK || h.status >= 400) http_fail(fmt::format("{}: {}", repo, fj.name), h, repo);
    std::string rc = h.header("x-repo-commit");
    if (!rc.empty() && rc != commit)
      fail("{}: {}: X-Repo-Commit {} differs from the listed commit {}", repo, fj.name, rc, commit);
    fj.etag = normalize_etag(!h.header("x-linked-etag").empty() ? h.header("x-linked-etag") : h.header("etag"));
    if (fj.etag.empty() || fj.etag.find('/') != std::string::npos || fj.etag.find("..") != std::string::npos)
      fail("{}: {}: the hub sent no usable ETag", repo, fj.name);
    const std::string sz = !h.header("x-linked-size").empty() ? h.header("x-linked-size") : h.header("content-length");
    try {
      fj.size = std::stoull(sz);
    } catch (const std::exception&) {
      fail("{}: {}: the hub sent no file size (X-Linked-Size / Content-Length)", repo, fj.name);
    }
    // The body is fetched from the resolve URL again, following its redirect: the token
    // goes to the hub only, and the storage URL's signature may have expired meanwhile.
    fj.url = url;
  });
  uint64_t total = 0;
  for (const auto& fj : jobs) total += fj.size;
  Progress prog("download " + repo, total, "B", o.quiet);
  pool([&](size_t i) {
    const FileJob& fj = jobs[i];
    const fs::path blob = blobs / fj.etag;
    if (file_size_or0(blob) == fj.size && fs::exists(blob)) {
      prog.add(fj.size);
    } else {
      fetch_blob(c, fj, blob, repo, o.retries, prog);
    }
    link_into_snapshot(snap, fj.name, blob);
  });
  prog.finish();
  if (o.revision != commit) {
    fs::create_directories((root / "refs" / o.revision).parent_path());  // refs/pr/1
    std::ofstream ref(root / "refs" / o.revision, std::ios::trunc);
    ref << commit;
    if (!ref) fail("{}: cannot write", (root / "refs" / o.revision).string());
  }
  return snap;
}

}  // namespace rvec::hub
