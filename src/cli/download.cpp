// `rvec download ORG/NAME [--revision R] [--include GLOB]...`: fetch a model into the HF cache.
#include <fmt/format.h>

#include "cli/command.h"
#include "hub/download.h"

namespace {

struct Args {
  std::string repo;
  rvec::hub::DownloadOptions o;
  std::string endpoint;
};

rvec::cli::Command cmd("download", "Download a Hugging Face model into the HF cache (resumable, sha256-checked)",
                       [](CLI::App& app) {
  auto a = std::make_shared<Args>();
  app.add_option("REPO", a->repo, "ORG/NAME (a trailing @REVISION works too)")->required();
  app.add_option("--revision", a->o.revision, "Branch, tag or commit (default main)");
  app.add_option("--include", a->o.include, "Only files matching this glob (repeatable), e.g. '*.json'");
  app.add_option("--parallel", a->o.parallel, "Files downloaded at once (default 8)");
  app.add_option("--endpoint", a->endpoint, "Hub URL (default $HF_ENDPOINT, else https://huggingface.co)");
  app.add_flag("-q,--quiet", a->o.quiet, "No progress bar");
  return [a] {
    std::string repo = a->repo;
    if (auto at = repo.find('@'); at != std::string::npos) {
      a->o.revision = repo.substr(at + 1);
      repo.resize(at);
    }
    if (!a->endpoint.empty()) a->o.endpoint = a->endpoint;
    auto snap = rvec::hub::download(repo, a->o);
    fmt::print("{}\n", snap.string());
    return 0;
  };
});

}  // namespace
