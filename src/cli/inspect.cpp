// `rvec inspect PATH [--against PATH2] [--json]`: norms, relative norms, cosines.
#include <fmt/format.h>

#include "arith/inspect.h"
#include "cli/command.h"

namespace {
rvec::cli::Command cmd("inspect", "Per-tensor and per-layer norms of a task vector; relative norm or cosine against another",
                       [](CLI::App& app) {
  auto path = std::make_shared<std::string>(), against = std::make_shared<std::string>(),
       kind = std::make_shared<std::string>("auto");
  auto json_out = std::make_shared<bool>(false), layers_only = std::make_shared<bool>(false);
  app.add_option("path", *path, "Task vector (or model) directory")->required();
  app.add_option("--against", *against, "A model (relative norms) or another vector (cosine similarity)");
  app.add_option("--against-kind", *kind, "auto | model | vector (auto: vector when made by extract/random-vector)");
  app.add_flag("--json", *json_out, "JSON output");
  app.add_flag("--layers", *layers_only, "Only the per-layer table");
  return [=] {
    std::optional<std::filesystem::path> a;
    if (!against->empty()) a = *against;
    auto r = rvec::arith::inspect(*path, a, *kind);
    if (*json_out)
      fmt::print("{}\n", rvec::arith::to_json(r).dump(2));
    else
      fmt::print("{}", rvec::arith::to_table(r, !*layers_only));
    return 0;
  };
});
}  // namespace
