// rvec: task-vector arithmetic, inference and evaluation for HF checkpoints.
#include <algorithm>
#include <cstdio>
#include <map>

#include "cli/command.h"
#include "core/error.h"
#include "hub/hub.h"
#include "io/model_resolver.h"

namespace rvec::cli {

std::vector<CommandSpec>& registry() {
  static std::vector<CommandSpec> r;
  return r;
}

Command::Command(std::string name, std::string description, Setup setup) {
  registry().push_back({std::move(name), std::move(description), std::move(setup)});
}

}  // namespace rvec::cli

int main(int argc, char** argv) {
  using namespace rvec::cli;
  CLI::App app{"rvec: reasoning vectors — task-vector arithmetic, inference and evaluation for Hugging Face checkpoints"};
  app.set_version_flag("--version", std::string("rvec ") + RVEC_VERSION);
  app.require_subcommand(1);
  // Wherever a model directory is accepted, ORG/NAME[@REV] names a snapshot in the HF cache;
  // --download (accepted after any subcommand) fetches a missing one.
  bool download = false;
  app.add_flag("--download", download, "Download models named ORG/NAME[@REV] that are not in the HF cache");
  rvec::io::set_model_resolver([&download](const std::string& name) { return rvec::hub::resolve_model(name, download); });
  auto& cmds = registry();
  std::sort(cmds.begin(), cmds.end(), [](auto& a, auto& b) { return a.name < b.name; });
  std::map<CLI::App*, Runner> runners;
  for (auto& c : cmds) {
    CLI::App* sub = app.add_subcommand(c.name, c.description);
    runners[sub] = c.setup(*sub);
    // --download is the main app's; let it follow any (nested) subcommand.
    sub->fallthrough();
    for (CLI::App* nested : sub->get_subcommands({})) nested->fallthrough();
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    for (auto& [sub, run] : runners)
      if (sub->parsed()) return run();
  } catch (const rvec::Error& e) {
    std::fprintf(stderr, "rvec: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rvec: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
