#include "backend/launcher.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>

#include "backend/http.h"
#include "core/error.h"

namespace fs = std::filesystem;

namespace rvec::backend {

namespace {

using Clock = std::chrono::steady_clock;

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fail("cannot create a socket to find a free port");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(fd);
    fail("cannot find a free port on 127.0.0.1");
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

std::string log_tail(const fs::path& p, size_t lines = 15) {
  std::ifstream in(p);
  std::vector<std::string> all;
  for (std::string l; std::getline(in, l);) all.push_back(l);
  std::string out;
  for (size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); i++) out += "  | " + all[i] + "\n";
  return out;
}

// Process groups of live servers, for the signal handler: a Ctrl-C of rvec must not leave GPU
// servers running (they are in their own groups, so the terminal's signal does not reach them).
constexpr int kMaxGroups = 256;
volatile sig_atomic_t g_groups[kMaxGroups];
std::mutex g_groups_mu;
std::once_flag g_handlers;

void on_fatal_signal(int sig) {
  for (int i = 0; i < kMaxGroups; i++)
    if (g_groups[i] > 0) ::kill(-pid_t(g_groups[i]), SIGTERM);
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

void track_group(pid_t pg, bool add) {
  std::call_once(g_handlers, [] {
    for (int s : {SIGINT, SIGTERM, SIGHUP}) {
      struct sigaction sa {};
      sa.sa_handler = on_fatal_signal;
      sigemptyset(&sa.sa_mask);
      ::sigaction(s, &sa, nullptr);
    }
  });
  std::lock_guard<std::mutex> lk(g_groups_mu);
  for (int i = 0; i < kMaxGroups; i++) {
    if (add && g_groups[i] == 0) {
      g_groups[i] = pg;
      return;
    }
    if (!add && g_groups[i] == pg) {
      g_groups[i] = 0;
      return;
    }
  }
}

}  // namespace

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string expand_launch_command(const std::string& tpl, const fs::path& model, int port, const std::string& gpu) {
  std::string out;
  for (size_t i = 0; i < tpl.size();) {
    auto sub = [&](const char* key, const std::string& val) {
      size_t n = std::char_traits<char>::length(key);
      if (tpl.compare(i, n, key) != 0) return false;
      out += val;
      i += n;
      return true;
    };
    if (sub("{model}", shell_quote(model.string())) || sub("{port}", std::to_string(port)) || sub("{gpu}", gpu))
      continue;
    out += tpl[i++];
  }
  return out;
}

ServerGroup::ServerGroup(const LaunchOptions& o, const fs::path& model) : o_(o), model_(model) {
  if (o_.command.empty()) fail("backend.launch: the command template is empty");
  if (o_.command.find("{port}") == std::string::npos)
    fail("backend.launch: the command must contain {{port}} (each instance listens on its own port): {}", o_.command);
  if (o_.instances < 1) fail("backend.instances must be at least 1 (got {})", o_.instances);
  fs::create_directories(o_.log_dir);
  inst_.resize(size_t(o_.instances));
  for (size_t i = 0; i < inst_.size(); i++) {
    Instance& in = inst_[i];
    in.port = o_.first_port > 0 ? o_.first_port + int(i) : free_port();
    in.gpu = o_.gpus.empty() ? "" : o_.gpus[i % o_.gpus.size()];
    in.command = expand_launch_command(o_.command, model_, in.port, in.gpu);
    in.log = o_.log_dir / fmt::format("{}-{}.log", o_.log_name, i);
  }
  try {
    for (auto& in : inst_) spawn(in);
    for (auto& in : inst_) wait_ready(in);
  } catch (...) {
    stop();
    throw;
  }
  monitor_ = std::thread([this] { monitor(); });
}

ServerGroup::~ServerGroup() { stop(); }

std::vector<std::string> ServerGroup::urls() const {
  std::vector<std::string> u;
  for (auto& in : inst_) u.push_back(fmt::format("http://127.0.0.1:{}", in.port));
  return u;
}

std::vector<pid_t> ServerGroup::pids() const {
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<pid_t> p;
  for (auto& in : inst_) p.push_back(in.pid);
  return p;
}

void ServerGroup::spawn(Instance& in) {
  int fd = ::open(in.log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) fail("{}: cannot open the server log", in.log.string());
  std::string header = fmt::format("==== rvec: starting (port {}{}): {}\n", in.port,
                                   in.gpu.empty() ? "" : ", CUDA_VISIBLE_DEVICES=" + in.gpu, in.command);
  if (::write(fd, header.data(), header.size()) < 0) {
  }
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fd);
    fail("fork failed starting: {}", in.command);
  }
  if (pid == 0) {
    ::setpgid(0, 0);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    if (!in.gpu.empty()) ::setenv("CUDA_VISIBLE_DEVICES", in.gpu.c_str(), 1);
    for (int s : {SIGINT, SIGTERM, SIGHUP}) ::signal(s, SIG_DFL);
    ::execl("/bin/sh", "sh", "-c", in.command.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::setpgid(pid, pid);  // also here: no race with the child's own call
  ::close(fd);
  {
    std::lock_guard<std::mutex> lk(mu_);
    in.pid = pid;
  }
  track_group(pid, true);
  if (!o_.quiet) fmt::print(stderr, "started server pid {} on port {} (log {})\n", pid, in.port, in.log.string());
}

void ServerGroup::wait_ready(Instance& in) {
  HttpClient h;
  auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o_.ready_timeout_s));
  std::string root = fmt::format("http://127.0.0.1:{}", in.port);
  int respawns = 0;
  while (true) {
    int status = 0;
    if (::waitpid(in.pid, &status, WNOHANG) == in.pid) {
      track_group(in.pid, false);
      ::kill(-in.pid, SIGKILL);  // anything it left in its group
      in.pid = -1;
      // Killed by a signal (the OOM killer, an operator's kill -9) while starting: start it again, twice at
      // most; a server that exits by itself (bad command, bad model) fails at once.
      if (WIFSIGNALED(status) && respawns < 2) {
        respawns++;
        restarts_++;
        if (!o_.quiet)
          fmt::print(stderr, "rvec: the server on port {} was killed while starting (signal {}); restarting it\n",
                     in.port, WTERMSIG(status));
        spawn(in);
        continue;
      }
      fail("the server exited before it was ready ({}): {}\nlog {}:\n{}",
           WIFEXITED(status) ? fmt::format("exit status {}", WEXITSTATUS(status))
                             : fmt::format("signal {}", WTERMSIG(status)),
           in.command, in.log.string(), log_tail(in.log));
    }
    for (const char* path : {"/health", "/v1/models"})
      if (h.request("GET", root + path, "", {}, 5).status == 200) return;
    if (Clock::now() > deadline)
      fail("the server on port {} was not ready within {} s (ready_timeout): {}\nlog {}:\n{}", in.port,
           o_.ready_timeout_s, in.command, in.log.string(), log_tail(in.log));
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
}

void ServerGroup::monitor() {
  while (!stopping_) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    for (auto& in : inst_) {
      if (stopping_) return;
      pid_t pid;
      {
        std::lock_guard<std::mutex> lk(mu_);
        pid = in.pid;
      }
      int status = 0;
      if (pid <= 0 || ::waitpid(pid, &status, WNOHANG) != pid) continue;
      track_group(pid, false);
      ::kill(-pid, SIGKILL);  // anything the server left in its group
      if (stopping_) return;
      if (!o_.quiet)
        fmt::print(stderr, "\nrvec: the server on port {} died ({}); restarting it (log {})\n", in.port,
                   WIFEXITED(status) ? fmt::format("exit status {}", WEXITSTATUS(status))
                                     : fmt::format("signal {}", WTERMSIG(status)),
                   in.log.string());
      try {
        spawn(in);
        restarts_++;
      } catch (const std::exception& e) {
        if (!o_.quiet) fmt::print(stderr, "rvec: restart failed: {}\n", e.what());
      }
      // Requests meanwhile fail over to the other instances or are retried by the client.
    }
  }
}

void ServerGroup::stop() {
  if (stopping_.exchange(true)) {
    if (monitor_.joinable()) monitor_.join();
    return;
  }
  if (monitor_.joinable()) monitor_.join();
  std::vector<pid_t> live;
  {
    std::lock_guard<std::mutex> lk(mu_);
    for (auto& in : inst_)
      if (in.pid > 0) live.push_back(in.pid);
  }
  for (pid_t p : live) ::kill(-p, SIGTERM);
  auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o_.stop_grace_s));
  std::vector<bool> reaped(live.size(), false);
  while (true) {
    bool all = true;
    for (size_t i = 0; i < live.size(); i++) {
      if (reaped[i]) continue;
      int st;
      if (::waitpid(live[i], &st, WNOHANG) == live[i]) reaped[i] = true;
      else all = false;
    }
    if (all || Clock::now() > deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  for (size_t i = 0; i < live.size(); i++) {
    ::kill(-live[i], SIGKILL);  // the group: workers a server forked
    if (!reaped[i]) ::waitpid(live[i], nullptr, 0);
    track_group(live[i], false);
  }
  std::lock_guard<std::mutex> lk(mu_);
  for (auto& in : inst_) in.pid = -1;
}

}  // namespace rvec::backend
