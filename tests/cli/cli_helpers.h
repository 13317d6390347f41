// Helpers for the end-to-end tests that run the rvec binary (RVEC_BIN) with stdout and
// stderr captured separately, and inspect what it wrote.
#pragma once
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace rvec::test_util {

struct CliRun {
  int rc;                // exit status (128 when the command did not exit normally)
  std::string out, err;  // what it wrote to stdout and to stderr
};

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// `rvec ARGS` (ARGS already quoted for /bin/sh); its output goes through files in `scratch`.
inline CliRun run_rvec_cli(const std::string& args, const std::filesystem::path& scratch) {
  std::filesystem::create_directories(scratch);
  const std::filesystem::path o = scratch / "stdout.txt", e = scratch / "stderr.txt";
  const std::string cmd = std::string(RVEC_BIN) + " " + args + " >" + o.string() + " 2>" + e.string();
  const int st = std::system(cmd.c_str());
  return {WIFEXITED(st) ? WEXITSTATUS(st) : 128, slurp(o), slurp(e)};
}

// A path single-quoted for /bin/sh (test paths contain no quotes).
inline std::string q(const std::filesystem::path& p) { return "'" + p.string() + "'"; }

// No output directory and no temporary sibling (OUT.rvec-tmp*) left behind.
inline bool nothing_written(const std::filesystem::path& out) {
  if (std::filesystem::exists(out)) return false;
  for (auto& e : std::filesystem::directory_iterator(out.parent_path()))
    if (e.path().filename().string().rfind(out.filename().string() + ".rvec-tmp", 0) == 0) return false;
  return true;
}

}  // namespace rvec::test_util
