// The hub client against a loopback mock of huggingface.co's protocol (cpp-httplib):
// /api/models/{repo}/revision/{rev} lists files; /{repo}/resolve/{rev}/{file} answers small
// files directly (ETag = git blob id) and LFS files with a 302 to /cdn/{sha256} carrying
// X-Linked-Etag / X-Linked-Size / X-Repo-Commit, as huggingface_hub expects.
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/atomic_output.h"
#include "core/error.h"
#include "core/sha256.h"
#include "hub/download.h"
#include "hub/hub.h"
#include "io/model_resolver.h"

namespace fs = std::filesystem;
using namespace rvec;

namespace {

const std::string kCommit = "0123456789abcdef0123456789abcdef01234567";

struct MockFile {
  std::string body;
  bool lfs = false;
  std::string served;  // what the CDN sends (differs from body: a corrupted blob)
};

class MockHub {
 public:
  std::map<std::string, MockFile> files;  // repo path -> file
  std::string token;                      // non-empty: the repo is gated
  std::atomic<int> requests{0}, drops_left{0}, range_requests{0};

  MockHub() {
    files["config.json"] = {R"({"architectures":["Qwen2ForCausalLM"]})", false, ""};
    std::string big(300000, '\0');
    for (size_t i = 0; i < big.size(); ++i) big[i] = char((i * 7919) % 251);
    files["model.safetensors"] = {big, true, ""};
    files["sub/tokenizer.json"] = {"{\"model\":{}}", false, ""};
    svr_.Get(R"(/api/models/([^/]+)/([^/]+)/revision/(.+))", [this](const httplib::Request& rq, httplib::Response& rs) {
      ++requests;
      if (!authorized(rq, rs)) return;
      if (rq.matches[1] == "org" && rq.matches[2] == "old") {  // a renamed repository
        rs.status = 307;
        rs.set_header("Location", "/api/models/org/model/revision/" + std::string(rq.matches[3]));
        return;
      }
      if (rq.matches[1] != "org" || rq.matches[2] != "model") return not_found(rs);
      nlohmann::json j{{"id", "org/model"}, {"sha", kCommit}, {"siblings", nlohmann::json::array()}};
      for (auto& [n, f] : files) j["siblings"].push_back({{"rfilename", n}});
      rs.set_content(j.dump(), "application/json");
    });
    svr_.Get(R"(/([^/]+)/([^/]+)/resolve/([^/]+)/(.+))", [this](const httplib::Request& rq, httplib::Response& rs) {
      ++requests;
      if (!authorized(rq, rs)) return;
      if (rq.matches[1] == "org" && rq.matches[2] == "old") {  // relative redirect, followed by HEAD too
        rs.status = 307;
        rs.set_header("Location", "/org/model/resolve/" + std::string(rq.matches[3]) + "/" + std::string(rq.matches[4]));
        return;
      }
      auto it = files.find(rq.matches[4]);
      if (rq.matches[1] != "org" || rq.matches[2] != "model" || it == files.end()) return not_found(rs);
      const MockFile& f = it->second;
      rs.set_header("X-Repo-Commit", kCommit);
      if (f.lfs) {
        const std::string sha = sha256_hex(f.body);
        rs.status = 302;
        // Another host name for the same server: libcurl keeps the token off other hosts.
        rs.set_header("Location", "http://localhost:" + std::to_string(port_) + "/cdn/" + sha);
        rs.set_header("X-Linked-Etag", "\"" + sha + "\"");
        rs.set_header("X-Linked-Size", std::to_string(f.body.size()));
        rs.set_header("ETag", "\"git-oid-of-the-pointer\"");
        return;
      }
      rs.set_header("ETag", "W/\"" + sha256_hex("blob " + f.body).substr(0, 40) + "\"");
      rs.set_content(f.body, "application/octet-stream");
    });
    svr_.Get(R"(/cdn/([0-9a-f]+))", [this](const httplib::Request& rq, httplib::Response& rs) {
      ++requests;
      if (rq.has_header("Authorization")) {  // the token must not follow the redirect to storage
        rs.status = 400;
        return;
      }
      for (auto& [n, f] : files) {
        if (!f.lfs || sha256_hex(f.body) != rq.matches[1]) continue;
        const std::string data = f.served.empty() ? f.body : f.served;
        if (rq.has_header("Range")) ++range_requests;
        if (drops_left > 0 && !rq.has_header("Range")) {
          --drops_left;  // send 40% of the body, then drop the connection
          rs.set_content_provider(data.size(), "application/octet-stream",
                                  [data](size_t off, size_t, httplib::DataSink& sink) {
                                    if (off > 0) return false;
                                    sink.write(data.data(), data.size() * 2 / 5);
                                    return false;
                                  });
          return;
        }
        rs.set_content(data, "application/octet-stream");  // httplib applies a Range header
        return;
      }
      not_found(rs);
    });
    port_ = svr_.bind_to_any_port("127.0.0.1");
    th_ = std::thread([this] { svr_.listen_after_bind(); });
    while (!svr_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~MockHub() {
    svr_.stop();
    th_.join();
  }
  std::string base() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  bool authorized(const httplib::Request& rq, httplib::Response& rs) {
    if (token.empty() || rq.get_header_value("Authorization") == "Bearer " + token) return true;
    rs.status = 401;
    rs.set_content("{\"error\":\"Access to model org/model is restricted.\"}", "application/json");
    return false;
  }
  static void not_found(httplib::Response& rs) {
    rs.status = 404;
    rs.set_content("{\"error\":\"Repository not found\"}", "application/json");
  }
  httplib::Server svr_;
  int port_ = 0;
  std::thread th_;
};

struct TempCache {
  fs::path dir = fs::temp_directory_path() / ("rvec_hub_test_" + std::to_string(::getpid()));
  TempCache() {
    fs::remove_all(dir);
    fs::create_directories(dir);
    setenv("HF_HUB_CACHE", dir.c_str(), 1);
    unsetenv("HF_HUB_OFFLINE");
    unsetenv("HF_TOKEN");
    setenv("HF_HOME", (dir / "home").c_str(), 1);  // no token file from the machine
  }
  ~TempCache() {
    fs::remove_all(dir);
    unsetenv("HF_HUB_CACHE");
    unsetenv("HF_HOME");
    unsetenv("HF_HUB_OFFLINE");
  }
};

hub::DownloadOptions opts(const MockHub& h) {
  hub::DownloadOptions o;
  o.endpoint = h.base();
  o.quiet = true;
  o.parallel = 3;
  return o;
}

std::string expect_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error";
  return "";
}

}  // namespace

TEST(HubNames, ParseRepoIds) {
  auto r = hub::parse_repo_id("Qwen/Qwen2.5-1.5B-Instruct");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->repo, "Qwen/Qwen2.5-1.5B-Instruct");
  EXPECT_EQ(r->revision, "main");
  r = hub::parse_repo_id("org/name@v1.0");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->revision, "v1.0");
  for (const char* bad : {"name", "a/b/c", "/abs/path", "./x", "a/..", "a/b@", "org/na me", "../x"})
    EXPECT_FALSE(hub::parse_repo_id(bad)) << bad;
}

TEST(HubCache, DirectoryFromEnvironment) {
  setenv("HF_HUB_CACHE", "/c1", 1);
  setenv("HF_HOME", "/h", 1);
  EXPECT_EQ(hub::cache_dir(), fs::path("/c1"));
  EXPECT_EQ(hub::repo_cache_dir("Qwen/Qwen3-8B"), fs::path("/c1/models--Qwen--Qwen3-8B"));
  unsetenv("HF_HUB_CACHE");
  EXPECT_EQ(hub::cache_dir(), fs::path("/h/hub"));
  unsetenv("HF_HOME");
  const char* h = std::getenv("HOME");
  const std::string home = h ? h : "";
  setenv("HOME", "/home/u", 1);
  EXPECT_EQ(hub::cache_dir(), fs::path("/home/u/.cache/huggingface/hub"));
  setenv("HOME", home.c_str(), 1);
}

TEST(HubDownload, WritesTheHfCacheLayoutAndResolvesInPlace) {
  TempCache tc;
  MockHub h;
  h.drops_left = 1;  // the LFS file's first transfer is cut off: resumed with a Range request
  fs::path snap = hub::download("org/model", opts(h));
  const fs::path root = tc.dir / "models--org--model";
  EXPECT_EQ(snap, root / "snapshots" / kCommit);
  EXPECT_EQ(read_file(root / "refs" / "main"), kCommit);
  for (auto& [name, f] : h.files) {
    const fs::path p = snap / name;
    ASSERT_TRUE(fs::is_symlink(p)) << name;
    EXPECT_TRUE(fs::read_symlink(p).is_relative()) << name;
    EXPECT_EQ(fs::canonical(p).parent_path(), fs::canonical(root / "blobs")) << name;
    EXPECT_EQ(read_file(p), f.body) << name;
  }
  EXPECT_TRUE(fs::exists(root / "blobs" / sha256_hex(h.files["model.safetensors"].body)));
  EXPECT_EQ(h.range_requests, 1);
  for (auto& e : fs::directory_iterator(root / "blobs"))
    EXPECT_EQ(e.path().extension(), "") << e.path();  // no .incomplete left

  // ORG/NAME resolves to the snapshot itself (no copy), with and without @main.
  EXPECT_EQ(hub::resolve_model("org/model", false), snap);
  EXPECT_EQ(hub::resolve_model("org/model@main", false), snap);
  EXPECT_EQ(hub::resolve_model("org/model@" + kCommit, false), snap);
  // A second download transfers no file body again.
  const int before = h.requests;
  hub::download("org/model", opts(h));
  EXPECT_EQ(h.requests - before, 1 + int(h.files.size()));  // listing + one HEAD per file
}

TEST(HubDownload, ResumesAnIncompleteFileAndIncludeFilters) {
  TempCache tc;
  MockHub h;
  const std::string& body = h.files["model.safetensors"].body;
  const fs::path blobs = tc.dir / "models--org--model" / "blobs";
  fs::create_directories(blobs);
  std::ofstream(blobs / (sha256_hex(body) + ".incomplete"), std::ios::binary) << body.substr(0, 1000);
  auto o = opts(h);
  o.include = {"*.safetensors"};
  fs::path snap = hub::download("org/model", o);
  EXPECT_EQ(h.range_requests, 1);
  EXPECT_EQ(read_file(snap / "model.safetensors"), body);
  EXPECT_FALSE(fs::exists(snap / "config.json"));
}

TEST(HubDownload, CorruptedBlobIsDetectedBySha256) {
  TempCache tc;
  MockHub h;
  auto& f = h.files["model.safetensors"];
  f.served = f.body;
  f.served[1234] ^= 1;
  std::string m = expect_error([&] { hub::download("org/model", opts(h)); });
  EXPECT_NE(m.find("sha256"), std::string::npos) << m;
  EXPECT_NE(m.find("model.safetensors"), std::string::npos) << m;
  const fs::path blobs = tc.dir / "models--org--model" / "blobs";
  EXPECT_FALSE(fs::exists(blobs / sha256_hex(f.body)));
  EXPECT_FALSE(fs::exists(blobs / (sha256_hex(f.body) + ".incomplete")));
}

TEST(HubDownload, GatedNotFoundAndNetworkErrors) {
  TempCache tc;
  MockHub h;
  h.token = "secret";
  std::string m = expect_error([&] { hub::download("org/model", opts(h)); });
  EXPECT_NE(m.find("401"), std::string::npos) << m;
  EXPECT_NE(m.find("HF_TOKEN"), std::string::npos) << m;
  auto o = opts(h);
  o.token = "secret";
  EXPECT_NO_THROW(hub::download("org/model", o));  // and the token stays off the CDN (it answers 400)
  setenv("HF_TOKEN", "secret", 1);
  EXPECT_NO_THROW(hub::download("org/model", opts(h)));
  unsetenv("HF_TOKEN");
  m = expect_error([&] { hub::download("org/missing", o); });
  EXPECT_NE(m.find("404"), std::string::npos) << m;
  auto dead = opts(h);
  dead.endpoint = "http://127.0.0.1:1";
  m = expect_error([&] { hub::download("org/model", dead); });
  EXPECT_NE(m.find("network error"), std::string::npos) << m;
}

TEST(HubOffline, NeverTouchesTheNetwork) {
  TempCache tc;
  MockHub h;
  hub::download("org/model", opts(h));
  const int before = h.requests;
  setenv("HF_HUB_OFFLINE", "1", 1);
  EXPECT_EQ(hub::resolve_model("org/model", true), tc.dir / "models--org--model" / "snapshots" / kCommit);
  std::string m = expect_error([&] { hub::resolve_model("org/other", true); });
  EXPECT_NE(m.find("HF_HUB_OFFLINE"), std::string::npos) << m;
  m = expect_error([&] { hub::download("org/model", opts(h)); });
  EXPECT_NE(m.find("HF_HUB_OFFLINE"), std::string::npos) << m;
  EXPECT_EQ(h.requests, before);
  unsetenv("HF_HUB_OFFLINE");
  // Without --download a missing model names the command that fetches it.
  m = expect_error([&] { hub::resolve_model("org/other@v2", false); });
  EXPECT_NE(m.find("rvec download org/other --revision v2"), std::string::npos) << m;
  // With --download it is fetched (HF_ENDPOINT points at the mock).
  setenv("HF_ENDPOINT", h.base().c_str(), 1);
  io::set_model_resolver([](const std::string& n) { return hub::resolve_model(n, true); });
  fs::remove_all(tc.dir / "models--org--model");
  EXPECT_EQ(io::resolve_model_path("org/model"), tc.dir / "models--org--model" / "snapshots" / kCommit);
  io::set_model_resolver({});
  unsetenv("HF_ENDPOINT");
}

TEST(HubDownload, RenamedRepositoryRelativeRedirects) {
  TempCache tc;
  MockHub h;
  fs::path snap = hub::download("org/old", opts(h));
  EXPECT_EQ(snap, tc.dir / "models--org--old" / "snapshots" / kCommit);
  EXPECT_EQ(read_file(snap / "model.safetensors"), h.files["model.safetensors"].body);
  EXPECT_EQ(read_file(snap / "config.json"), h.files["config.json"].body);
}
