// `rvec inspect PATH [--against PATH2] [--json] [--spectrum] [--rank] [--svg FILE]`: norms,
// relative norms, cosines and sign agreement; sparsity spectrum and effective ranks.
#include <fmt/format.h>

#include "arith/analysis.h"
#include "arith/inspect.h"
#include "core/atomic_output.h"
#include "core/error.h"
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
  auto ao = std::make_shared<rvec::arith::AnalysisOptions>();
  auto spectrum = std::make_shared<bool>(false), rank = std::make_shared<bool>(false);
  auto svg = std::make_shared<std::string>();
  app.add_flag("--spectrum", *spectrum, "Fraction of the L2 mass in the top 1/5/10/50% of entries (tensor, layer, total)");
  app.add_flag("--rank", *rank, "Effective rank (50/90/99% energy) of each linear layer's delta, randomised SVD");
  app.add_option("--rank-probe", ao->probe, "Singular values computed per matrix (default 64; exact SVD below)");
  app.add_option("--rank-power", ao->power, "Power iterations of the randomised SVD (default 2)");
  app.add_option("--svg", *svg, "Write an SVG of the per-layer spectrum and effective rank (implies both)");
  return [=] {
    if (*spectrum || *rank || !svg->empty()) {
      if (!against->empty()) rvec::fail("--spectrum/--rank/--svg analyse one vector; give --against in a separate run");
      ao->spectrum = *spectrum || !svg->empty();
      ao->rank = *rank || !svg->empty();
      auto r = rvec::arith::analyse(*path, *ao);
      if (!svg->empty()) rvec::write_file_atomic(*svg, rvec::arith::to_svg(r));
      if (*json_out)
        fmt::print("{}\n", rvec::arith::to_json(r).dump(2));
      else
        fmt::print("{}", rvec::arith::to_table(r));
      return 0;
    }
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
