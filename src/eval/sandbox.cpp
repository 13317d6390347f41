// Sandbox for untrusted Python programs: see sandbox.h for the design.
//
// Everything a child process needs (argv, envp, paths, messages) is built before fork(): the evaluator is
// multi-threaded, so between fork() and execve() the children only make async-signal-safe system calls.
#include "eval/sandbox.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

#include "core/error.h"
#include "eval/sandbox_runner.h"

namespace rvec::eval {

namespace {

constexpr const char* kWorkInside = "/tmp/work";  // the work dir as the program sees it (namespace modes)
// Unshare mode builds the program's root on a tmpfs mounted here (in its private mount namespace), then
// pivots into it.
constexpr const char* kNewRoot = "/tmp";
constexpr int kReportFd = sandbox_runner::kReportFd;
static_assert(kReportFd == 5, "child fd layout: 0 header, 1/2 output, 3 status, 4 work dir, 5 report");

// ---------------------------------------------------------------- small host-side helpers

bool is_executable_file(const std::string& p) {
  struct stat st{};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(p.c_str(), X_OK) == 0;
}

std::string find_in_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string p = path ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t start = 0;
  while (start <= p.size()) {
    size_t end = p.find(':', start);
    if (end == std::string::npos) end = p.size();
    std::string dir = p.substr(start, end - start);
    if (!dir.empty() && is_executable_file(dir + "/" + name)) return dir + "/" + name;
    start = end + 1;
  }
  return {};
}

// Can a process with an arbitrary unprivileged uid execute `path`? (every directory o+x, file o+rx)
bool world_executable(const std::string& path) {
  std::error_code ec;
  std::filesystem::path p = std::filesystem::canonical(path, ec);
  if (ec) return false;
  struct stat st{};
  if (::stat(p.c_str(), &st) != 0 || (st.st_mode & S_IXOTH) == 0 || (st.st_mode & S_IROTH) == 0) return false;
  for (auto d = p.parent_path();; d = d.parent_path()) {
    if (::stat(d.c_str(), &st) != 0 || (st.st_mode & S_IXOTH) == 0) return false;
    if (d == d.root_path()) break;
  }
  return true;
}

bool starts_with_shebang(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  char b[2] = {0, 0};
  size_t n = std::fread(b, 1, 2, f);
  std::fclose(f);
  return n == 2 && b[0] == '#' && b[1] == '!';
}

// A wrapper script (pyenv shim, ...) is resolved to the interpreter it runs.
std::string resolve_interpreter(const std::string& path) {
  if (!starts_with_shebang(path)) return path;
  std::string cmd = "'" + path + "' -c 'import sys; print(sys.executable)' 2>/dev/null";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return path;
  char buf[4096];
  std::string out;
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  ::pclose(p);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return is_executable_file(out) ? out : path;
}

// Removes a directory tree even if the program made parts of it unreadable (chmod 000).
void remove_tree(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::remove_all(path, ec) != static_cast<std::uintmax_t>(-1) && !ec) return;
  // Make everything accessible, then retry.
  std::vector<std::string> stack{path};
  while (!stack.empty()) {
    std::string d = stack.back();
    stack.pop_back();
    ::chmod(d.c_str(), 0700);
    DIR* dir = ::opendir(d.c_str());
    if (!dir) continue;
    while (dirent* e = ::readdir(dir)) {
      std::string n = e->d_name;
      if (n == "." || n == "..") continue;
      std::string c = d + "/" + n;
      struct stat st{};
      if (::lstat(c.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) stack.push_back(c);
    }
    ::closedir(dir);
  }
  std::filesystem::remove_all(path, ec);
}

// Root in a user namespace that maps only part of the uid range (rootless containers) cannot switch to
// kSandboxUidBase + pid; it then uses nobody (65534), shared by concurrent runs.
constexpr uid_t kSandboxFallbackUid = 65534;

bool id_range_mapped(const char* map_file, unsigned long first, unsigned long count) {
  FILE* f = std::fopen(map_file, "r");
  if (!f) return true;  // no user namespaces: everything is "mapped"
  unsigned long inside, outside, len;
  bool ok = false;
  while (std::fscanf(f, "%lu %lu %lu", &inside, &outside, &len) == 3)
    if (inside <= first && first + count <= inside + len) ok = true;
  std::fclose(f);
  return ok;
}

bool per_run_uids_available() {
  static const bool ok = [] {
    constexpr unsigned long kPidSpan = 1ul << 22;  // PID_MAX_LIMIT on 64-bit
    return id_range_mapped("/proc/self/uid_map", kSandboxUidBase, kPidSpan) &&
           id_range_mapped("/proc/self/gid_map", kSandboxUidBase, kPidSpan);
  }();
  return ok;
}

// What a program sees of the host in the namespace modes: the Python installation, read-only, and
// nothing else (each mode adds an empty private /tmp and a minimal /dev). Paths are host paths, bound at
// the same path inside.
struct RootSpec {
  std::string exe;                                            // the interpreter (canonical path)
  std::vector<std::pair<std::string, std::string>> symlinks;  // (target, link): /lib -> usr/lib, ...
  std::vector<std::string> dirs, files;                       // bound read-only
};

std::string capture_output(const std::string& cmd) {
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return {};
  std::string out;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) {
    if (out.size() < (1u << 20)) out.append(buf, n);
  }
  ::pclose(p);
  return out;
}

// The interpreter, its standard library and site-packages (as it reports them), the directories of the
// shared libraries it loads (ldd), the loader cache, and the host's top-level compatibility symlinks.
RootSpec compute_root(const std::string& python) {
  namespace fs = std::filesystem;
  RootSpec r;
  std::error_code ec;
  auto canon = [&](const fs::path& p) {
    auto c = fs::canonical(p, ec);
    return ec ? std::string() : c.string();
  };
  for (const char* top : {"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"}) {
    struct stat st{};
    if (::lstat(top, &st) != 0 || !S_ISLNK(st.st_mode)) continue;
    char t[PATH_MAX];
    ssize_t n = ::readlink(top, t, sizeof t - 1);
    if (n > 0) r.symlinks.emplace_back(std::string(t, static_cast<size_t>(n)), top);
  }
  std::vector<std::string> dirs;
  std::string out = capture_output(
      "'" + python +
      "' -E -c 'import os, site, sys, sysconfig\n"
      "print(os.path.realpath(sys.executable))\n"
      "for k in (\"stdlib\", \"platstdlib\", \"purelib\", \"platlib\"): print(sysconfig.get_paths()[k])\n"
      "for p in site.getsitepackages(): print(p)' 2>/dev/null");
  size_t pos = 0;
  bool first = true;
  while (pos < out.size()) {
    size_t nl = out.find('\n', pos);
    if (nl == std::string::npos) nl = out.size();
    std::string line = out.substr(pos, nl - pos);
    pos = nl + 1;
    if (line.empty() || line[0] != '/') continue;
    if (first) {
      r.exe = canon(line);
      first = false;
    } else if (fs::is_directory(line, ec)) {
      dirs.push_back(canon(line));
    }
  }
  if (r.exe.empty()) r.exe = canon(python);
  if (!r.exe.empty()) r.files.push_back(r.exe);
  // Shared libraries: "libm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x...)" and the loader's own line.
  out = capture_output("ldd '" + r.exe + "' 2>/dev/null");
  for (size_t i = 0; (i = out.find('/', i)) != std::string::npos;) {
    size_t end = out.find_first_of(" \t\n(", i);
    std::string lib = out.substr(i, end == std::string::npos ? std::string::npos : end - i);
    i = end == std::string::npos ? out.size() : end;
    if (!fs::exists(lib, ec)) continue;
    dirs.push_back(canon(fs::path(lib).parent_path()));  // the loader's symlink (/usr/lib64/ld-linux...)
    dirs.push_back(canon(fs::path(canon(lib)).parent_path()));  // the library itself
  }
  if (fs::is_regular_file("/etc/ld.so.cache", ec)) r.files.push_back("/etc/ld.so.cache");
  // Distinct directories, none inside another.
  std::sort(dirs.begin(), dirs.end());
  for (const auto& d : dirs) {
    if (d.empty() || d == "/") continue;
    if (!r.dirs.empty() && (d == r.dirs.back() || d.rfind(r.dirs.back() + "/", 0) == 0)) continue;
    r.dirs.push_back(d);
  }
  std::erase_if(r.files, [&](const std::string& f) {
    return std::any_of(r.dirs.begin(), r.dirs.end(), [&](const std::string& d) { return f.rfind(d + "/", 0) == 0; });
  });
  return r;
}

const RootSpec& python_root(const std::string& python) {
  static std::mutex mu;
  static std::map<std::string, RootSpec> cache;
  std::lock_guard lock(mu);
  auto it = cache.find(python);
  if (it == cache.end()) it = cache.emplace(python, compute_root(python)).first;
  return it->second;
}

// ---------------------------------------------------------------- async-signal-safe child helpers

size_t cstrlen(const char* s) {
  size_t n = 0;
  while (s[n]) ++n;
  return n;
}

void write_all(int fd, const char* s, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, s, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return;
    }
    s += w;
    n -= static_cast<size_t>(w);
  }
}

// "rvec sandbox: setup failed at <step>: errno <n>" on stderr, exit 125.
[[noreturn]] void child_fail(const char* step) {
  int e = errno;
  char num[16];
  int i = sizeof num;
  num[--i] = '\0';
  do {
    num[--i] = static_cast<char>('0' + e % 10);
    e /= 10;
  } while (e > 0 && i > 0);
  const char* pre = "rvec sandbox: setup failed at ";
  write_all(2, pre, cstrlen(pre));
  write_all(2, step, cstrlen(step));
  write_all(2, ": errno ", 8);
  write_all(2, num + i, cstrlen(num + i));
  write_all(2, "\n", 1);
  ::_exit(125);
}

bool write_file(const char* path, const char* text) {
  int fd = ::open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  ssize_t n = ::write(fd, text, cstrlen(text));
  ::close(fd);
  return n == static_cast<ssize_t>(cstrlen(text));
}

void set_limit(int res, rlim_t soft, rlim_t hard, const char* what) {
  struct rlimit rl{soft, hard};
  if (::setrlimit(res, &rl) != 0) child_fail(what);
}

void close_from(int first) {
  if (::syscall(SYS_close_range, static_cast<unsigned>(first), ~0u, 0u) == 0) return;
  struct rlimit rl{};
  long max = (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
                 ? static_cast<long>(std::min<rlim_t>(rl.rlim_cur, 1 << 20))
                 : 65536;
  for (long fd = first; fd < max; ++fd) ::close(static_cast<int>(fd));
}

void reset_signals() {
  sigset_t all;
  sigemptyset(&all);
  ::sigprocmask(SIG_SETMASK, &all, nullptr);
  struct sigaction sa{};
  sa.sa_handler = SIG_DFL;
  for (int s = 1; s < NSIG; ++s) {
    if (s == SIGKILL || s == SIGSTOP) continue;
    ::sigaction(s, &sa, nullptr);
  }
}

// Everything prepared before fork().
struct Plan {
  SandboxMode mode;
  bool root;
  uid_t uid;
  gid_t gid;
  std::string workdir;  // host path
  std::vector<std::string> args, env;
  std::vector<char*> argv, envp;
  std::string uid_map, gid_map, tmpfs_opts, shm_opts, workdir_fd_path;
  bool per_run_uid;  // root: uid kSandboxUidBase + pid (else kSandboxFallbackUid)
  rlim_t cpu, mem, fsize, nproc;
  // Unshare mode's new root, all paths under kNewRoot: directories and files to create as mount points,
  // symlinks (target, link) and bind mounts (host source, mount point, read-only?).
  struct Bind {
    std::string src, dst;
    bool read_only;
  };
  std::vector<std::string> root_dirs, root_files;
  std::vector<std::pair<std::string, std::string>> root_links;
  std::vector<Bind> root_binds;
  std::string root_tmp, root_work, root_shm, root_old;
};

// Limits applied to the payload (and, except NPROC in bwrap mode, inherited from the first child).
void apply_limits(const Plan& p, bool with_nproc) {
  set_limit(RLIMIT_CORE, 0, 0, "setrlimit(RLIMIT_CORE)");
  set_limit(RLIMIT_CPU, p.cpu, p.cpu, "setrlimit(RLIMIT_CPU)");  // hard = soft: the program cannot raise it
  set_limit(RLIMIT_AS, p.mem, p.mem, "setrlimit(RLIMIT_AS)");
  set_limit(RLIMIT_FSIZE, p.fsize, p.fsize, "setrlimit(RLIMIT_FSIZE)");
  set_limit(RLIMIT_NOFILE, 1024, 1024, "setrlimit(RLIMIT_NOFILE)");
  if (with_nproc) set_limit(RLIMIT_NPROC, p.nproc, p.nproc, "setrlimit(RLIMIT_NPROC)");
}

void drop_to(uid_t uid) {
  gid_t g = uid;
  if (::setgroups(0, nullptr) != 0) child_fail("setgroups");
  if (::setresgid(g, g, g) != 0) child_fail("setresgid");
  if (::setresuid(uid, uid, uid) != 0) child_fail("setresuid");
}

// Child (first process of the run). fds: 0 = the runner's header (a pipe), 1/2 = capture pipes, 3 = status
// pipe (unshare), 4 = work dir, 5 = the runner's report pipe. Never returns.
[[noreturn]] void child_main(const Plan& p) {
  reset_signals();
  if (::setsid() < 0) child_fail("setsid");
  uid_t sandbox_uid = !p.root            ? p.uid
                      : p.per_run_uid ? static_cast<uid_t>(kSandboxUidBase + static_cast<unsigned>(::getpid()))
                                      : kSandboxFallbackUid;
  if (p.root && ::fchown(4, sandbox_uid, sandbox_uid) != 0) child_fail("fchown(workdir)");

  if (p.mode == SandboxMode::Bwrap) {
    ::close(3);
    ::close(4);
    // With a uid of its own the process count can be limited right here; otherwise RLIMIT_NPROC is set
    // inside the sandbox's user namespace by the launcher (so that it counts only this run).
    apply_limits(p, p.per_run_uid);
    if (p.root) drop_to(sandbox_uid);
    ::execve(p.argv[0], p.argv.data(), p.envp.data());
    child_fail("execve(bwrap)");
  }

  if (p.mode == SandboxMode::RlimitsOnly) {
    ::close(3);
    if (::fchdir(4) != 0) child_fail("chdir(workdir)");
    ::close(4);
    apply_limits(p, p.root);  // RLIMIT_NPROC only means something for a uid of our own
    if (p.root) drop_to(sandbox_uid);
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) child_fail("prctl(NO_NEW_PRIVS)");
    ::execve(p.argv[0], p.argv.data(), p.envp.data());
    child_fail("execve(python)");
  }

  // Unshare mode.
  int flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS;
  if (!p.root) flags |= CLONE_NEWUSER;
  if (::unshare(flags) != 0) child_fail("unshare");
  if (!p.root) {
    if (!write_file("/proc/self/setgroups", "deny")) child_fail("write /proc/self/setgroups");
    if (!write_file("/proc/self/uid_map", p.uid_map.c_str())) child_fail("write /proc/self/uid_map");
    if (!write_file("/proc/self/gid_map", p.gid_map.c_str())) child_fail("write /proc/self/gid_map");
  }
  pid_t init = ::fork();
  if (init < 0) child_fail("fork(init)");
  if (init > 0) {  // stays outside the PID namespace, exits with the init's status
    ::close(0);
    ::close(3);
    ::close(4);
    ::close(kReportFd);
    int st = 0;
    while (::waitpid(init, &st, 0) < 0) {
      if (errno != EINTR) ::_exit(124);
    }
    ::_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
  }
  // PID 1 of the new namespace: build the program's root on a tmpfs, with only the Python installation
  // (read-only), a private /tmp with the work dir, a minimal /dev and no /proc, then pivot into it.
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) child_fail("mount(/, MS_PRIVATE)");
  // The work dir must be reopened in this mount namespace to be bind-mounted (before /tmp is covered).
  {
    ::close(4);
    int w = ::open(p.workdir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (w < 0) child_fail("open(workdir)");
    if (w != 4 && (::dup2(w, 4) < 0 || ::close(w) != 0)) child_fail("dup2(workdir)");
  }
  if (::mount("tmpfs", kNewRoot, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755") != 0)
    child_fail("mount(tmpfs new root)");
  for (const auto& d : p.root_dirs)
    if (::mkdir(d.c_str(), 0755) != 0 && errno != EEXIST) child_fail("mkdir(new root)");
  for (const auto& [target, link] : p.root_links)
    if (::symlink(target.c_str(), link.c_str()) != 0) child_fail("symlink(new root)");
  for (const auto& f : p.root_files) {
    int fd = ::open(f.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) child_fail("create(mount point)");
    ::close(fd);
  }
  for (const auto& b : p.root_binds) {
    if (::mount(b.src.c_str(), b.dst.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) child_fail("mount(bind)");
    struct mount_attr a{};
    a.attr_set = b.read_only ? (MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV) : MOUNT_ATTR_NOSUID;
    if (::syscall(SYS_mount_setattr, AT_FDCWD, b.dst.c_str(), AT_RECURSIVE, &a, sizeof a) != 0)
      child_fail("mount_setattr(bind)");
  }
  if (::mount("tmpfs", p.root_tmp.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, p.tmpfs_opts.c_str()) != 0)
    child_fail("mount(tmpfs /tmp)");
  if (::mkdir(p.root_work.c_str(), 0755) != 0) child_fail("mkdir(/tmp/work)");
  if (::mount(p.workdir_fd_path.c_str(), p.root_work.c_str(), nullptr, MS_BIND, nullptr) != 0)
    child_fail("mount(bind workdir)");
  ::close(4);
  if (::mount("tmpfs", p.root_shm.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, p.shm_opts.c_str()) != 0)
    child_fail("mount(tmpfs /dev/shm)");
  if (::mkdir(p.root_old.c_str(), 0700) != 0) child_fail("mkdir(old root)");
  if (::syscall(SYS_pivot_root, kNewRoot, p.root_old.c_str()) != 0) child_fail("pivot_root");
  if (::chdir("/") != 0) child_fail("chdir(/)");
  if (::umount2("/.old", MNT_DETACH) != 0) child_fail("umount(old root)");
  if (::rmdir("/.old") != 0) child_fail("rmdir(old root)");
  struct mount_attr ro{};
  ro.attr_set = MOUNT_ATTR_RDONLY;
  if (::syscall(SYS_mount_setattr, AT_FDCWD, "/", 0, &ro, sizeof ro) != 0) child_fail("mount_setattr(/, read-only)");
  ::sethostname("sandbox", 7);

  pid_t payload = ::fork();
  if (payload < 0) child_fail("fork(payload)");
  if (payload == 0) {
    ::close(3);  // fd 0 (header) and kReportFd stay: the runner uses them
    if (::chdir(kWorkInside) != 0) child_fail("chdir(/tmp/work)");
    apply_limits(p, true);
    if (p.root) drop_to(sandbox_uid);
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) child_fail("prctl(NO_NEW_PRIVS)");
    ::execve(p.argv[0], p.argv.data(), p.envp.data());
    child_fail("execve(python)");
  }
  // init: reap everything; report the payload's wait status on fd 3 and leave (which kills the namespace).
  ::close(0);
  ::close(kReportFd);
  for (;;) {
    int st = 0;
    pid_t w = ::waitpid(-1, &st, 0);
    if (w == payload) {
      write_all(3, reinterpret_cast<const char*>(&st), sizeof st);
      ::_exit(0);
    }
    if (w < 0 && errno != EINTR) ::_exit(124);
  }
}

// Keeps the last `cap` bytes of a stream without growing beyond 2*cap.
struct Tail {
  size_t cap;
  std::string buf;
  void add(const char* d, size_t n) {
    if (cap == 0) return;
    if (n >= cap) {
      buf.assign(d + (n - cap), cap);
      return;
    }
    buf.append(d, n);
    if (buf.size() > 2 * cap) buf.erase(0, buf.size() - cap);
  }
  std::string take() {
    if (buf.size() > cap) buf.erase(0, buf.size() - cap);
    return std::move(buf);
  }
};

struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  void reset() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

// Kills every process of `uid` (as that uid: kill(-1) reaches exactly those).
void kill_all_of_uid(uid_t uid) {
  pid_t k = ::fork();
  if (k == 0) {
    if (::setresgid(uid, uid, uid) == 0 && ::setresuid(uid, uid, uid) == 0) ::kill(-1, SIGKILL);
    ::_exit(0);
  }
  if (k > 0) {
    int st;
    while (::waitpid(k, &st, 0) < 0 && errno == EINTR) {
    }
  }
}

std::string tmp_base() {
  const char* t = std::getenv("TMPDIR");
  std::string d = (t && *t) ? t : "/tmp";
  struct stat st{};
  if (::stat(d.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) d = "/tmp";
  return d;
}

ExecResult run_once(const std::string& program, SandboxMode mode, const SandboxLimits& lim,
                    const std::string& python, const std::string& bwrap) {
  using clock = std::chrono::steady_clock;
  auto t0 = clock::now();
  ExecResult res;

  std::string tmpl = tmp_base() + "/rvec-sbx-XXXXXX";
  std::vector<char> tb(tmpl.begin(), tmpl.end());
  tb.push_back('\0');
  if (!::mkdtemp(tb.data())) fail("{}: cannot create a sandbox directory: {}", tmpl, std::strerror(errno));
  std::string workdir = tb.data();
  struct Cleanup {
    std::string dir;
    ~Cleanup() { remove_tree(dir); }
  } cleanup{workdir};
  {
    std::string prog = workdir + "/prog.py";
    int fd = ::open(prog.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) fail("{}: cannot write: {}", prog, std::strerror(errno));
    const char* d = program.data();
    size_t n = program.size();
    while (n > 0) {
      ssize_t w = ::write(fd, d, n);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) {
        int e = errno;
        ::close(fd);
        fail("{}: cannot write: {}", prog, std::strerror(e));
      }
      d += w;
      n -= static_cast<size_t>(w);
    }
    ::close(fd);
  }

  Plan p;
  p.mode = mode;
  p.root = ::geteuid() == 0;
  p.uid = ::getuid();
  p.gid = ::getgid();
  p.workdir = workdir;
  p.per_run_uid = p.root && per_run_uids_available();
  p.cpu = static_cast<rlim_t>(std::max(1.0, std::ceil(lim.cpu_s)));
  p.mem = lim.memory_bytes;
  p.fsize = lim.file_bytes;
  p.nproc = static_cast<rlim_t>(std::max(1, lim.max_procs));
  p.uid_map = fmt::format("{} {} 1\n", p.uid, p.uid);
  p.gid_map = fmt::format("{} {} 1\n", p.gid, p.gid);
  p.tmpfs_opts = fmt::format("size={},mode=1777", std::max<size_t>(lim.file_bytes * 4, 1 << 20));
  p.shm_opts = fmt::format("size={},mode=1777", std::max<size_t>(lim.file_bytes, 1 << 20));
  p.workdir_fd_path = "/proc/self/fd/4";

  const bool ns = mode != SandboxMode::RlimitsOnly;
  const std::string home = ns ? kWorkInside : workdir;
  p.env = {"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + home, "TMPDIR=" + std::string(ns ? "/tmp" : workdir),
           "LANG=C.UTF-8", "LC_ALL=C.UTF-8", "PYTHONHASHSEED=0", "PYTHONDONTWRITEBYTECODE=1"};
  const std::string& runner = sandbox_runner::source();
  if (ns) {
    const RootSpec& root = python_root(python);
    if (root.exe.empty()) fail("sandbox: cannot resolve the interpreter {}", python);
    const std::string tmp_size = std::to_string(std::max<size_t>(lim.file_bytes * 4, 1 << 20));
    const std::string shm_size = std::to_string(std::max<size_t>(lim.file_bytes, 1 << 20));
    if (mode == SandboxMode::Bwrap) {
      p.args = {bwrap, "--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
                "--unshare-cgroup-try", "--die-with-parent", "--new-session"};
      for (const auto& [target, link] : root.symlinks) p.args.insert(p.args.end(), {"--symlink", target, link});
      for (const auto& d : root.dirs) p.args.insert(p.args.end(), {"--ro-bind", d, d});
      for (const auto& f : root.files) p.args.insert(p.args.end(), {"--ro-bind", f, f});
      p.args.insert(p.args.end(), {"--dev", "/dev", "--size", shm_size, "--tmpfs", "/dev/shm", "--remount-ro", "/dev",
                                   "--size", tmp_size, "--tmpfs", "/tmp", "--bind", workdir, kWorkInside, "--chdir",
                                   kWorkInside, "--hostname", "sandbox", "--remount-ro", "/", "--"});
      if (!p.per_run_uid) {
        for (std::string a : {root.exe, std::string("-S"), std::string("-E"), std::string("-c"),
                              fmt::format("import os,resource as r,sys\nr.setrlimit(r.RLIMIT_NPROC,({0},{0}))\n"
                                          "os.execv(sys.argv[1],sys.argv[1:])",
                                          p.nproc)})
          p.args.push_back(a);
      }
    } else {
      // Unshare: the same view, built by the child (see child_main) from these paths under kNewRoot.
      const std::string nr = kNewRoot;
      auto add_dirs = [&](const std::string& path) {  // every ancestor of path, then path itself
        for (size_t i = 1; i <= path.size(); ++i)
          if (i == path.size() || path[i] == '/') {
            std::string d = nr + path.substr(0, i);
            if (std::find(p.root_dirs.begin(), p.root_dirs.end(), d) == p.root_dirs.end()) p.root_dirs.push_back(d);
          }
      };
      for (const auto& [target, link] : root.symlinks) p.root_links.emplace_back(target, nr + link);
      for (const auto& d : root.dirs) {
        add_dirs(d);
        p.root_binds.push_back({d, nr + d, true});
      }
      for (const auto& f : root.files) {
        add_dirs(std::filesystem::path(f).parent_path().string());
        p.root_files.push_back(nr + f);
        p.root_binds.push_back({f, nr + f, true});
      }
      add_dirs("/dev/shm");
      add_dirs("/tmp");
      for (const char* dev : {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"}) {
        p.root_files.push_back(nr + dev);
        p.root_binds.push_back({dev, nr + dev, false});
      }
      p.root_tmp = nr + "/tmp";
      p.root_work = nr + kWorkInside;
      p.root_shm = nr + "/dev/shm";
      p.root_old = nr + "/.old";
    }
    p.args.insert(p.args.end(), {root.exe, "-c", runner});
  } else {
    p.args = {python, "-c", runner};
  }
  for (auto& a : p.args) p.argv.push_back(a.data());
  p.argv.push_back(nullptr);
  for (auto& e : p.env) p.envp.push_back(e.data());
  p.envp.push_back(nullptr);

  // The runner's header goes into a pipe before the fork (it fits the pipe buffer), so the child reads it
  // and then EOF; the report comes back over another pipe.
  const sandbox_runner::Tokens tokens = sandbox_runner::make_tokens();
  int hdr[2], rep[2], out[2], err[2], stat_pipe[2];
  if (::pipe2(hdr, O_CLOEXEC) != 0) fail("sandbox: pipe: {}", std::strerror(errno));
  Fd hdr_r(hdr[0]), hdr_w(hdr[1]);
  {
    std::string h = sandbox_runner::header(tokens);
    if (::write(hdr_w.fd, h.data(), h.size()) != static_cast<ssize_t>(h.size()))
      fail("sandbox: pipe write: {}", std::strerror(errno));
    hdr_w.reset();
  }
  if (::pipe2(rep, O_CLOEXEC) != 0) fail("sandbox: pipe: {}", std::strerror(errno));
  Fd rep_r(rep[0]), rep_w(rep[1]);
  if (::pipe2(out, O_CLOEXEC) != 0) fail("sandbox: pipe: {}", std::strerror(errno));
  Fd out_r(out[0]), out_w(out[1]);
  if (::pipe2(err, O_CLOEXEC) != 0) fail("sandbox: pipe: {}", std::strerror(errno));
  Fd err_r(err[0]), err_w(err[1]);
  if (::pipe2(stat_pipe, O_CLOEXEC) != 0) fail("sandbox: pipe: {}", std::strerror(errno));
  Fd st_r(stat_pipe[0]), st_w(stat_pipe[1]);
  Fd wd(::open(workdir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (wd.fd < 0) fail("{}: cannot open: {}", workdir, std::strerror(errno));

  pid_t pid = ::fork();
  if (pid < 0) fail("sandbox: fork: {}", std::strerror(errno));
  if (pid == 0) {
    // Move the fds to 0..5 without clobbering each other: first lift them above 10.
    int fds[6] = {hdr_r.fd, out_w.fd, err_w.fd, st_w.fd, wd.fd, rep_w.fd};
    for (int& f : fds) {
      int g = ::fcntl(f, F_DUPFD, 10);
      if (g < 0) ::_exit(125);
      f = g;
    }
    for (int i = 0; i < 6; ++i)
      if (::dup2(fds[i], i) < 0) ::_exit(125);
    close_from(6);
    child_main(p);
  }
  out_w.reset();
  err_w.reset();
  st_w.reset();
  wd.reset();
  hdr_r.reset();
  rep_w.reset();

  Fd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  Tail so{lim.output_cap, {}}, se{lim.output_cap, {}};
  auto deadline = t0 + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(lim.timeout_s));
  bool exited = false;
  std::vector<char> buf(64 << 10);

  sandbox_runner::ReportScanner report(tokens);
  auto pump = [&](int ms) {
    pollfd fds[4];
    int n = 0;
    if (out_r.fd >= 0) fds[n++] = {out_r.fd, POLLIN, 0};
    if (err_r.fd >= 0) fds[n++] = {err_r.fd, POLLIN, 0};
    if (rep_r.fd >= 0) fds[n++] = {rep_r.fd, POLLIN, 0};
    int pidx = -1;
    if (!exited && pidfd.fd >= 0) {
      pidx = n;
      fds[n++] = {pidfd.fd, POLLIN, 0};
    }
    if (n == 0) {
      if (ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
      return;
    }
    int r = ::poll(fds, static_cast<nfds_t>(n), ms);
    if (r <= 0) return;
    for (int i = 0; i < n; ++i) {
      if (i == pidx) {
        if (fds[i].revents) exited = true;
        continue;
      }
      if (!fds[i].revents) continue;
      Fd& f = fds[i].fd == out_r.fd ? out_r : fds[i].fd == err_r.fd ? err_r : rep_r;
      ssize_t k = ::read(f.fd, buf.data(), buf.size());
      if (k > 0) {
        if (&f == &rep_r) {
          report.add(buf.data(), static_cast<size_t>(k));
        } else {
          (&f == &out_r ? so : se).add(buf.data(), static_cast<size_t>(k));
        }
      } else if (k == 0 || (errno != EINTR && errno != EAGAIN)) {
        f.reset();
      }
    }
  };
  auto check_exited = [&] {
    if (exited) return;
    siginfo_t si{};
    if (::waitid(P_PID, static_cast<id_t>(pid), &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid)
      exited = true;
  };

  while (!exited) {
    auto now = clock::now();
    if (now >= deadline) {
      res.timed_out = true;
      ::killpg(pid, SIGKILL);
      ::kill(pid, SIGKILL);
      break;
    }
    int ms = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count()) + 1;
    if (pidfd.fd < 0) ms = std::min(ms, 5);
    pump(ms);
    check_exited();
  }
  // The first process is gone (or killed): kill what is left of its process group before reaping it
  // (so that the group id cannot have been reused), then reap.
  ::killpg(pid, SIGKILL);
  int wst = 0;
  while (::waitpid(pid, &wst, 0) < 0 && errno == EINTR) {
  }
  if (mode == SandboxMode::RlimitsOnly && p.per_run_uid)
    kill_all_of_uid(static_cast<uid_t>(kSandboxUidBase + static_cast<unsigned>(pid)));
  // Drain what is still in the pipes (a process that escaped the group in rlimits-only mode may hold them
  // open: give up after a short grace period).
  auto grace = clock::now() + std::chrono::milliseconds(200);
  while ((out_r.fd >= 0 || err_r.fd >= 0 || rep_r.fd >= 0) && clock::now() < grace) pump(20);

  // The payload's own wait status (unshare mode reports it through the status pipe).
  int st = wst;
  bool have = true;
  if (mode == SandboxMode::Unshare) {
    int s = 0;
    ssize_t k = ::read(st_r.fd, &s, sizeof s);
    if (k == static_cast<ssize_t>(sizeof s)) {
      st = s;
    } else {
      have = false;
    }
  }
  if (WIFEXITED(st)) {
    res.exit_code = WEXITSTATUS(st);
    // bwrap exits with 128 + signal when the program was killed by one.
    if (mode == SandboxMode::Bwrap && res.exit_code > 128 && res.exit_code < 128 + NSIG) {
      res.signal = res.exit_code - 128;
      res.exit_code = -1;
    }
  } else if (WIFSIGNALED(st)) {
    res.signal = WTERMSIG(st);
  }
  if (!have && !res.timed_out && res.exit_code == 0) res.exit_code = -1;
  // The verdict is the runner's report alone: the exit status is the program's to choose (sys.exit(0),
  // os._exit(0), exec of another program ...). A report that arrived before a timeout counts.
  res.passed = report.passed();
  res.reported = report.reported();
  res.error = report.error();
  res.stdout_tail = so.take();
  res.stderr_tail = se.take();
  res.seconds = std::chrono::duration<double>(clock::now() - t0).count();
  return res;
}

// ---------------------------------------------------------------- mode probing

const char* kProbeProgram =
    "import os, socket, sys\n"
    "open('probe.txt', 'w').write('x')\n"
    "assert open('probe.txt').read() == 'x'\n"
    "print('rvec-probe', os.getpid())\n";

std::string probe_mode(SandboxMode mode) {
  std::string python;
  try {
    python = Sandbox::find_python();
  } catch (const Error& e) {
    return e.what();
  }
  std::string bwrap;
  if (mode == SandboxMode::Bwrap) {
    bwrap = find_in_path("bwrap");
    if (bwrap.empty() && is_executable_file("/usr/bin/bwrap")) bwrap = "/usr/bin/bwrap";
    if (bwrap.empty()) return "bwrap not found (Debian package bubblewrap)";
  }
  SandboxLimits lim;
  lim.timeout_s = 10;
  ExecResult r;
  try {
    r = run_once(kProbeProgram, mode, lim, python, bwrap);
  } catch (const Error& e) {
    return e.what();
  }
  if (!r.passed) {
    std::string why = r.status();
    return why.rfind("failed: ", 0) == 0 ? why.substr(8) : why;
  }
  if (r.stdout_tail.rfind("rvec-probe ", 0) != 0) return "unexpected probe output: " + r.stdout_tail;
  if (mode != SandboxMode::RlimitsOnly) {
    int pid = std::atoi(r.stdout_tail.c_str() + 11);
    if (pid <= 0 || pid > 16) return fmt::format("program is not in a new PID namespace (pid {})", pid);
  }
  return {};
}

struct ProbeCache {
  std::mutex mu;
  std::map<SandboxMode, std::string> result;
};
ProbeCache& probe_cache() {
  static ProbeCache c;
  return c;
}

std::string probe_cached(SandboxMode mode) {
  auto& c = probe_cache();
  std::lock_guard lock(c.mu);
  auto it = c.result.find(mode);
  if (it != c.result.end()) return it->second;
  std::string r = probe_mode(mode);
  c.result[mode] = r;
  return r;
}

std::string bwrap_path() {
  std::string b = find_in_path("bwrap");
  if (b.empty() && is_executable_file("/usr/bin/bwrap")) b = "/usr/bin/bwrap";
  return b;
}

}  // namespace

// ---------------------------------------------------------------- public API

std::string sandbox_mode_name(SandboxMode m) {
  switch (m) {
    case SandboxMode::Bwrap: return "bwrap";
    case SandboxMode::Unshare: return "unshare";
    case SandboxMode::RlimitsOnly: return "rlimits-only";
  }
  return "?";
}

std::optional<SandboxMode> parse_sandbox_mode(const std::string& name) {
  if (name == "bwrap") return SandboxMode::Bwrap;
  if (name == "unshare") return SandboxMode::Unshare;
  if (name == "rlimits" || name == "rlimits-only") return SandboxMode::RlimitsOnly;
  return std::nullopt;
}

std::string ExecResult::status() const {
  if (passed) return "passed";
  if (timed_out) return "timed out";
  if (!error.empty()) return "failed: " + error;
  if (signal == SIGKILL || signal == SIGXCPU) return fmt::format("killed by limit: CPU time ({})", sigabbrev_np(signal));
  if (signal != 0) return fmt::format("failed: killed by signal {} ({})", signal, ::strsignal(signal));
  if (exit_code == 125) {  // the sandbox itself could not start the program: say why (last stderr line)
    std::string_view s = stderr_tail;
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.remove_suffix(1);
    size_t nl = s.find_last_of('\n');
    return "failed: " + std::string(nl == std::string_view::npos ? s : s.substr(nl + 1));
  }
  if (reported) return "failed";
  return fmt::format("failed: exited before completion (exit code {})", exit_code);
}

std::vector<std::string> Sandbox::protections(SandboxMode mode) {
  std::vector<std::string> p = {
      "verdict: passes only when exec() of the program returns normally (runner report with per-run secret tokens)",
      "rlimits (hard = soft): CPU time, address space, file size, open files, processes, no core files",
      "wall-clock timeout: the process group is killed",
  };
  if (mode == SandboxMode::RlimitsOnly) {
    p.push_back("NO file-system isolation: the program can read every file the evaluator's user can read");
    p.push_back("NO network isolation: the program can open TCP and unix-domain sockets");
    return p;
  }
  p.push_back("file system: only the Python installation (read-only), an empty private /tmp, a minimal /dev; no "
              "/proc, no other host file or unix socket");
  p.push_back("network: a new network namespace (no interfaces but an unconfigured loopback)");
  p.push_back("processes: new PID, IPC and UTS namespaces; the whole namespace is killed at the end");
  p.push_back("/dev/shm and /tmp: size-limited tmpfs");
  return p;
}

std::string Sandbox::find_python() {
  auto root_ok = [](const std::string& p) { return ::geteuid() != 0 || world_executable(p); };
  if (const char* env = std::getenv("RVEC_PYTHON"); env && *env) {
    std::string p = env;
    if (p.find('/') == std::string::npos) p = find_in_path(p);
    if (p.empty() || !is_executable_file(p)) fail("RVEC_PYTHON={}: not an executable file", env);
    p = resolve_interpreter(p);
    if (!root_ok(p))
      fail("RVEC_PYTHON={}: {} is not executable by other users (the sandbox runs programs as an unprivileged uid)",
           env, p);
    return p;
  }
  std::vector<std::string> cands = {"/usr/bin/python3", "/usr/local/bin/python3"};
  if (auto p = find_in_path("python3"); !p.empty()) cands.push_back(p);
  std::string rejected;
  for (const auto& c : cands) {
    if (!is_executable_file(c)) continue;
    std::string r = resolve_interpreter(c);
    if (root_ok(r)) return r;
    rejected += " " + r;
  }
  if (!rejected.empty())
    fail("python3 found ({}) but not executable by other users; the sandbox runs programs as an unprivileged "
         "uid: install python3 system-wide or set RVEC_PYTHON",
         rejected.substr(1));
  fail("python3 not found (looked at /usr/bin/python3, /usr/local/bin/python3 and PATH): install python3 or set "
       "RVEC_PYTHON to the interpreter that runs HumanEval programs");
}

std::string Sandbox::probe(SandboxMode mode) { return probe_cached(mode); }

std::vector<std::pair<SandboxMode, std::string>> Sandbox::probe_all() {
  std::vector<std::pair<SandboxMode, std::string>> r;
  for (auto m : {SandboxMode::Bwrap, SandboxMode::Unshare, SandboxMode::RlimitsOnly}) r.emplace_back(m, probe_cached(m));
  return r;
}

Sandbox::Sandbox(SandboxLimits limits, std::optional<SandboxMode> force) : limits_(limits) {
  python_ = find_python();
  if (!force) {
    if (const char* env = std::getenv("RVEC_SANDBOX"); env && *env) {
      force = parse_sandbox_mode(env);
      if (!force) fail("RVEC_SANDBOX={}: expected bwrap, unshare or rlimits", env);
    }
  }
  if (force) {
    std::string why = probe_cached(*force);
    if (!why.empty()) fail("sandbox mode {} does not work here: {}", sandbox_mode_name(*force), why);
    mode_ = *force;
    return;
  }
  static std::once_flag warned;
  for (auto m : {SandboxMode::Bwrap, SandboxMode::Unshare, SandboxMode::RlimitsOnly}) {
    std::string why = probe_cached(m);
    if (!why.empty()) continue;
    mode_ = m;
    if (m == SandboxMode::RlimitsOnly) {
      std::call_once(warned, [&] {
        std::fprintf(stderr,
                     "\n*** WARNING: rvec's sandbox could not isolate programs here (bwrap: %s; unshare: %s).\n"
                     "*** Generated code runs with rlimits only: NO network or file-system isolation.\n\n",
                     probe_cached(SandboxMode::Bwrap).c_str(), probe_cached(SandboxMode::Unshare).c_str());
      });
    }
    return;
  }
  fail("no sandbox mode works here: rlimits-only: {}", probe_cached(SandboxMode::RlimitsOnly));
}

std::string Sandbox::mode_name() const { return sandbox_mode_name(mode_); }

ExecResult Sandbox::run_python(const std::string& program) const {
  static const std::string bwrap = bwrap_path();
  return run_once(program, mode_, limits_, python_, bwrap);
}

std::vector<ExecResult> Sandbox::run_many(const std::vector<std::string>& programs, int n_workers,
                                          const std::function<void(size_t, const ExecResult&)>& callback) const {
  std::vector<ExecResult> results(programs.size());
  if (programs.empty()) return results;
  size_t workers = n_workers > 0 ? static_cast<size_t>(n_workers) : std::max(1u, std::thread::hardware_concurrency());
  workers = std::min(workers, programs.size());
  std::atomic<size_t> next{0};
  std::mutex cb_mu, err_mu;
  std::exception_ptr error;
  auto work = [&] {
    for (;;) {
      size_t i = next.fetch_add(1);
      if (i >= programs.size()) return;
      try {
        results[i] = run_python(programs[i]);
        if (callback) {
          std::lock_guard lock(cb_mu);
          callback(i, results[i]);
        }
      } catch (...) {
        std::lock_guard lock(err_mu);
        if (!error) error = std::current_exception();
        next = programs.size();
        return;
      }
    }
  };
  std::vector<std::thread> threads;
  for (size_t w = 1; w < workers; ++w) threads.emplace_back(work);
  work();
  for (auto& t : threads) t.join();
  if (error) std::rethrow_exception(error);
  return results;
}

}  // namespace rvec::eval
