// Managed inference servers (vLLM, SGLang, llama.cpp server, rvec serve) for one model: started
// from a command template, each instance in its own process group with its own port and
// CUDA_VISIBLE_DEVICES, ready once /health or /v1/models answers 200, restarted when it dies,
// stopped with SIGTERM and then SIGKILL of the group. Each instance's output goes to a log file.
#pragma once
#include <sys/types.h>

#include <atomic>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace rvec::backend {

struct LaunchOptions {
  // Shell command; {model} (shell-quoted path), {port} and {gpu} are substituted.
  std::string command;
  int instances = 1;
  std::vector<std::string> gpus;  // instance i gets gpus[i % size] ("" / empty: CUDA_VISIBLE_DEVICES untouched)
  int first_port = 0;             // 0: free ports picked on 127.0.0.1
  double ready_timeout_s = 900;
  double stop_grace_s = 30;       // SIGTERM, then SIGKILL after this long
  std::filesystem::path log_dir;  // <log_dir>/<log_name>-<i>.log
  std::string log_name = "server";
  bool quiet = false;
};

// 'it'\''s' : a single-quoted word for /bin/sh.
std::string shell_quote(const std::string& s);
// The command for one instance (exposed for tests).
std::string expand_launch_command(const std::string& tpl, const std::filesystem::path& model, int port,
                                  const std::string& gpu);

class ServerGroup {
 public:
  // Starts every instance and waits until all are ready; rvec::Error (naming the log file and
  // quoting its end) when one exits or is not ready within ready_timeout_s.
  ServerGroup(const LaunchOptions& opts, const std::filesystem::path& model);
  ~ServerGroup();  // stop()
  ServerGroup(const ServerGroup&) = delete;
  ServerGroup& operator=(const ServerGroup&) = delete;

  std::vector<std::string> urls() const;  // http://127.0.0.1:PORT per instance
  void stop();
  int restarts() const { return restarts_; }
  std::vector<pid_t> pids() const;

 private:
  struct Instance {
    int port = 0;
    std::string gpu, command;
    std::filesystem::path log;
    pid_t pid = -1;
  };
  void spawn(Instance& in);
  void wait_ready(Instance& in);
  void monitor();

  LaunchOptions o_;
  std::filesystem::path model_;
  std::vector<Instance> inst_;
  mutable std::mutex mu_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> restarts_{0};
  std::thread monitor_;
};

}  // namespace rvec::backend
