// Managed servers: placeholder expansion, readiness on /health, CUDA_VISIBLE_DEVICES per
// instance, own process groups, restart after kill -9, SIGTERM/SIGKILL of the group on stop, and
// a server that exits before it is ready. The "server" is python3's http.server serving a
// folder that holds a file named `health`.
#include "backend/launcher.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "backend/http.h"
#include "core/error.h"
#include "test_util.h"

using namespace rvec;
namespace fs = std::filesystem;

namespace {
// Processes of group `pg` that are not zombies (an exited child of a dead shell stays a zombie
// until PID 1 reaps it, and a zombie still accepts kill(pid, 0)).
int live_in_group(pid_t pg) {
  int n = 0;
  for (auto& e : fs::directory_iterator("/proc")) {
    std::ifstream in(e.path() / "stat");
    std::string stat;
    if (!std::getline(in, stat)) continue;
    size_t rp = stat.rfind(')');
    if (rp == std::string::npos) continue;
    std::istringstream rest(stat.substr(rp + 2));
    char state;
    long ppid, pgrp;
    if (rest >> state >> ppid >> pgrp && pgrp == pg && state != 'Z') n++;
  }
  return n;
}
}  // namespace

TEST(Launcher, ExpandsPlaceholdersAndQuotesTheModelPath) {
  EXPECT_EQ(backend::expand_launch_command("vllm serve {model} --port {port}", "/m/it's", 8001, "3"),
            "vllm serve '/m/it'\\''s' --port 8001");
  EXPECT_EQ(backend::expand_launch_command("x --gpu {gpu} {port}{port}", "/m", 7, "0,1"), "x --gpu 0,1 77");
}

TEST(Launcher, StartsWaitsRestartsAndStopsProcessGroups) {
  test_util::TempDir dir("launcher");
  std::ofstream(dir.p / "health") << "ok";
  backend::LaunchOptions o;
  // The shell records the instance's GPU, then a child (same group) serves the folder.
  o.command = "echo \"$CUDA_VISIBLE_DEVICES\" > " + test_util::shell_quote((dir.p / "gpu-").string()) +
              "{port}; cd {model} && python3 -m http.server {port} --bind 127.0.0.1";
  o.instances = 2;
  o.gpus = {"2", "5"};
  o.ready_timeout_s = 30;
  o.stop_grace_s = 2;
  o.log_dir = dir.p / "logs";
  o.log_name = "toy";
  o.quiet = true;
  std::vector<pid_t> pids;
  {
    backend::ServerGroup g(o, dir.p);
    auto urls = g.urls();
    ASSERT_EQ(urls.size(), 2u);
    backend::HttpClient h;
    for (size_t i = 0; i < 2; i++) {
      EXPECT_EQ(h.request("GET", urls[i] + "/health", "", {}, 5).status, 200);
      std::string port = urls[i].substr(urls[i].rfind(':') + 1);
      std::ifstream in(dir.p / ("gpu-" + port));
      std::string gpu;
      std::getline(in, gpu);
      EXPECT_EQ(gpu, i == 0 ? "2" : "5");
    }
    pids = g.pids();
    for (pid_t p : pids) {
      EXPECT_EQ(::getpgid(p), p) << "each server leads its own process group";
      EXPECT_GE(live_in_group(p), 1);
    }
    EXPECT_TRUE(fs::exists(dir.p / "logs" / "toy-0.log"));
    // A server that dies is restarted on the same port.
    ::kill(-pids[0], SIGKILL);
    bool back = false;
    for (int k = 0; k < 100 && !back; k++) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      back = g.restarts() == 1 && h.request("GET", urls[0] + "/health", "", {}, 2).status == 200;
    }
    EXPECT_TRUE(back);
    pids = g.pids();
  }
  // Stopped: nothing of the groups runs (a SIGKILLed grandchild may take a moment to die).
  for (pid_t p : pids) {
    for (int k = 0; k < 100 && live_in_group(p) > 0; k++) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_EQ(live_in_group(p), 0);
  }
}

TEST(Launcher, AServerThatExitsBeforeReadyIsAnErrorQuotingItsLog) {
  test_util::TempDir dir("launcher_fail");
  backend::LaunchOptions o;
  o.command = "echo cannot load {model}; exit 3 # {port}";
  o.log_dir = dir.p;
  o.quiet = true;
  try {
    backend::ServerGroup g(o, "/no/such/model");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("exit status 3"), std::string::npos) << m;
    EXPECT_NE(m.find("cannot load /no/such/model"), std::string::npos) << m;
  }
}
