// `rvec sandbox-check`: which HumanEval sandbox modes work on this machine, which one rvec uses and what it
// protects, and a self-test of the chosen (or --mode) one: a passing and a failing program, early exits that
// must not pass, a timeout, host files and unix sockets, a write outside the work directory, a TCP
// connection to a socket rvec listens on, /dev/shm, raising the CPU limit, a fork bomb and a memory hog.
// `--humaneval` also runs the 164 HumanEval canonical solutions in every mode that works and times them.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <filesystem>
#include <optional>

#include "cli/command.h"
#include "core/error.h"
#include "eval/dataset.h"
#include "eval/humaneval_exec.h"
#include "eval/sandbox.h"

namespace {

using rvec::eval::ExecResult;
using rvec::eval::Sandbox;
using rvec::eval::SandboxMode;

struct Check {
  std::string name, program;
  std::function<bool(const ExecResult&)> ok;
  bool isolation = false;  // only meaningful with namespaces (or, for files, a uid of its own)
};

// All canonical solutions in each working mode: a check of the sandbox and a measure of its overhead.
int humaneval_bench(int workers) {
  rvec::eval::DataRoot root(rvec::eval::default_data_root());
  std::vector<rvec::eval::HumanEvalCandidate> cands;
  for (const auto& doc : root.load_jsonl("humaneval/HumanEval.jsonl")) {
    auto p = rvec::eval::humaneval_problem(doc);
    cands.push_back({p.prompt + p.canonical_solution, p.test, p.entry_point});
  }
  int bad = 0;
  fmt::print("HumanEval canonical solutions ({} programs, {} workers, default limits):\n", cands.size(), workers);
  for (auto& [m, why] : Sandbox::probe_all()) {
    if (!why.empty()) continue;
    Sandbox sb({}, m);
    auto t0 = std::chrono::steady_clock::now();
    auto res = rvec::eval::execute_humaneval(sb, cands, workers);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    int passed = 0;
    for (size_t i = 0; i < res.size(); ++i) {
      if (res[i].passed) {
        ++passed;
      } else {
        fmt::print("    problem {}: {}\n", i, res[i].status());
      }
    }
    bad += passed != static_cast<int>(res.size());
    fmt::print("  {:<13} {}/{} passed in {:.2f} s ({:.1f} ms per program)\n", sb.mode_name(), passed, res.size(), s,
               1000 * s / static_cast<double>(res.size()));
  }
  return bad ? 1 : 0;
}

int run(const std::string& mode_opt, double timeout) {
  fmt::print("python: {}\n", Sandbox::find_python());
  fmt::print("running as: {}\n", geteuid() == 0 ? "root (programs run as a per-run unprivileged uid)" : "non-root");
  for (auto& [m, why] : Sandbox::probe_all())
    fmt::print("  {:<13} {}\n", rvec::eval::sandbox_mode_name(m), why.empty() ? "works" : "unavailable: " + why);

  std::optional<SandboxMode> force;
  if (!mode_opt.empty()) {
    force = rvec::eval::parse_sandbox_mode(mode_opt);
    if (!force) rvec::fail("--mode {}: expected bwrap, unshare or rlimits", mode_opt);
  }
  rvec::eval::SandboxLimits lim;
  lim.timeout_s = timeout;
  lim.memory_bytes = 512ull << 20;
  Sandbox sb(lim, force);
  fmt::print("mode: {}\n", sb.mode_name());
  for (const auto& p : Sandbox::protections(sb.mode())) fmt::print("  - {}\n", p);

  // A socket rvec listens on: the sandbox must not reach it.
  int ls = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t alen = sizeof addr;
  int port = 0;
  if (ls >= 0 && ::bind(ls, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 && ::listen(ls, 4) == 0 &&
      ::getsockname(ls, reinterpret_cast<sockaddr*>(&addr), &alen) == 0)
    port = ntohs(addr.sin_port);

  auto canary = std::filesystem::current_path() / fmt::format("rvec-sandbox-canary-{}", ::getpid());
  std::string canary_s = canary.string();
  // A host file the program must not read, and a unix socket it must not reach (both world-accessible, in
  // the current directory).
  auto secret = std::filesystem::current_path() / fmt::format("rvec-sandbox-secret-{}", ::getpid());
  std::string secret_s = secret.string();
  {
    std::ofstream f(secret);
    f << "rvec-secret\n";
  }
  std::filesystem::permissions(secret, std::filesystem::perms::all, std::filesystem::perm_options::add);
  auto sock_path = std::filesystem::current_path() / fmt::format("rvec-sandbox-sock-{}", ::getpid());
  std::string sock_s = sock_path.string();
  int us = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un ua{};
  ua.sun_family = AF_UNIX;
  bool have_unix = us >= 0 && sock_s.size() < sizeof ua.sun_path;
  if (have_unix) {
    std::memcpy(ua.sun_path, sock_s.c_str(), sock_s.size() + 1);
    have_unix = ::bind(us, reinterpret_cast<sockaddr*>(&ua), sizeof ua) == 0 && ::listen(us, 4) == 0;
    if (have_unix) ::chmod(sock_s.c_str(), 0777);
  }
  std::vector<Check> checks = {
      {"passing program", "assert sum(range(10)) == 45\n", [](const ExecResult& r) { return r.passed; }},
      {"failing program", "assert 1 + 1 == 3, 'wrong'\n",
       [](const ExecResult& r) { return !r.passed && r.status() == "failed: AssertionError"; }},
      {"early exit: sys.exit(0)", "import sys\nsys.exit(0)\nassert False\n",
       [](const ExecResult& r) { return !r.passed && r.status() == "failed: SystemExit"; }},
      {"early exit: os._exit(0)", "import os\nos._exit(0)\n", [](const ExecResult& r) { return !r.passed; }},
      {"early exit: os.execv", "import os\nos.execv('/bin/true', ['true'])\n",
       [](const ExecResult& r) { return !r.passed; }},
      {"read a host file", fmt::format("open({:?}).read()\n", secret_s), [](const ExecResult& r) { return !r.passed; },
       true},
      {"connect to a host unix socket",
       fmt::format("import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect({:?})\n", sock_s),
       [](const ExecResult& r) { return !r.passed; }, true},
      {"fill /dev/shm (64 MB)",
       "with open('/dev/shm/x', 'wb') as f:\n    for _ in range(64):\n        f.write(b'x' * (1 << 20))\n",
       [](const ExecResult& r) { return !r.passed; }},
      {"raise the CPU-time limit",
       "import resource as r\ns, h = r.getrlimit(r.RLIMIT_CPU)\nr.setrlimit(r.RLIMIT_CPU, (h + 10, h + 10))\n",
       [](const ExecResult& r) { return !r.passed; }},
      {"infinite loop", "while True:\n    pass\n", [](const ExecResult& r) { return r.timed_out; }},
      {"write outside the work dir", fmt::format("open({:?}, 'w').write('x')\n", canary_s),
       [canary](const ExecResult&) { return !std::filesystem::exists(canary); }, true},
      {"connect to 127.0.0.1",
       fmt::format("import socket\nsocket.create_connection(('127.0.0.1', {}), timeout=0.5)\n", port),
       [](const ExecResult& r) { return !r.passed; }, true},
      {"fork bomb", "import os\nwhile True:\n    os.fork()\n", [](const ExecResult& r) { return !r.passed; }},
      {"memory hog", "x = bytearray(4 << 30)\n",
       [](const ExecResult& r) { return !r.passed && r.status().find("MemoryError") != std::string::npos; }},
  };
  std::vector<std::string> progs;
  for (auto& c : checks) progs.push_back(c.program);
  auto results = sb.run_many(progs, 0);
  std::error_code ec;
  if (ls >= 0) ::close(ls);
  if (us >= 0) ::close(us);
  std::filesystem::remove(secret, ec);
  std::filesystem::remove(sock_path, ec);
  bool weak = sb.mode() == SandboxMode::RlimitsOnly;
  int failures = 0;
  for (size_t i = 0; i < checks.size(); ++i) {
    bool ok = checks[i].ok(results[i]);
    std::string verdict = ok ? "ok" : (checks[i].isolation && weak ? "NOT ISOLATED (rlimits-only)" : "FAIL");
    if (!ok && !(checks[i].isolation && weak)) ++failures;
    fmt::print("  {:<30} {:<28} {} ({:.2f} s)\n", checks[i].name, verdict, results[i].status(), results[i].seconds);
  }
  std::filesystem::remove(canary, ec);
  if (failures)
    fmt::print("self-test: {} FAILED\n", failures);
  else
    fmt::print("self-test: passed\n");
  return failures ? 1 : 0;
}

rvec::cli::Command cmd("sandbox-check", "Show which HumanEval sandbox mode works here and run a self-test",
                       [](CLI::App& app) {
                         auto mode = std::make_shared<std::string>();
                         auto timeout = std::make_shared<double>(1.0);
                         app.add_option("--mode", *mode, "Force a mode: bwrap, unshare or rlimits");
                         app.add_option("--timeout", *timeout, "Wall-clock timeout per program (s)")->capture_default_str();
                         auto he = std::make_shared<bool>(false);
                         auto workers = std::make_shared<int>(4);
                         app.add_flag("--humaneval", *he,
                                      "Also run the 164 HumanEval canonical solutions in every working mode (timed)");
                         app.add_option("--workers", *workers, "Parallel programs for --humaneval")->capture_default_str();
                         return [mode, timeout, he, workers] {
                           int rc = run(*mode, *timeout);
                           if (*he) rc |= humaneval_bench(*workers);
                           return rc;
                         };
                       });

}  // namespace
