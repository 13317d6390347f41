// `rvec compress VECTOR --method sparse|int8|lora [--density D [--scope tensor|global] | --rank R |
// --energy E] -o OUT`: a compact form of a task vector, with its storage and reconstruction error;
// `rvec compress --decompress COMPRESSED -o OUT` writes the dense vector it decodes to.
// lora writes a PEFT adapter (apply it with `rvec apply --lora`).
#include <fmt/format.h>

#include "arith/compress.h"
#include "cli/command.h"
#include "core/atomic_output.h"
#include "core/error.h"

namespace {
rvec::cli::Command cmd("compress", "Compact task vector (sparse top-|x|, int8 per-row, LoRA): size and reconstruction error",
                       [](CLI::App& app) {
  auto vec = std::make_shared<std::string>(), out = std::make_shared<std::string>(),
       report = std::make_shared<std::string>();
  auto o = std::make_shared<rvec::arith::CompressOptions>();
  o->method.clear();
  auto decompress = std::make_shared<bool>(false), json_out = std::make_shared<bool>(false),
       totals = std::make_shared<bool>(false);
  auto rank = std::make_shared<int>(0);
  auto energy = std::make_shared<double>(0);
  app.add_option("vector", *vec, "Task vector directory (or, with --decompress, a compressed one)")->required();
  app.add_option("--method,-m", o->method, "sparse | int8 | lora");
  CLI::Option* density = app.add_option("--density,-d", o->density, "sparse: fraction of entries kept, top |x| (default 0.1)");
  CLI::Option* scope =
      app.add_option("--scope", o->scope, "sparse: top-k per tensor (tensor, default) or over the whole vector (global)");
  CLI::Option* rank_opt = app.add_option("--rank,-r", *rank, "lora: rank");
  CLI::Option* energy_opt = app.add_option("--energy", *energy, "lora: smallest rank keeping this fraction of the energy");
  app.add_option("--out,-o", *out, "Output directory")->required();
  app.add_option("--report", *report, "Also write the JSON report here (it is always in OUT/compress_report.json)");
  app.add_flag("--decompress", *decompress, "Write the dense vector a compressed vector decodes to");
  app.add_flag("--json", *json_out, "Print the JSON report instead of the table");
  app.add_flag("--totals", *totals, "Table: only the total line");
  app.add_flag("--force,-f", o->force, "Replace an existing output");
  app.add_flag("--quiet,-q", o->quiet, "No progress on stderr");
  return [=] {
    // Options given on the command line that the chosen method does not use: refused, so that
    // a typo such as `-m int8 -d 0.05` cannot silently produce something else than asked for.
    auto given = [&](std::initializer_list<CLI::Option*> opts) {
      std::string names;
      for (auto* op : opts)
        if (op->count()) names += (names.empty() ? "" : ", ") + op->get_name();
      return names;
    };
    if (*decompress) {
      if (!o->method.empty()) rvec::fail("--decompress reads the method from the compressed vector; drop --method");
      const std::string extra = given({density, scope, rank_opt, energy_opt});
      if (!extra.empty()) rvec::fail("--decompress takes no {} (they are compression settings)", extra);
      rvec::arith::decompress(*vec, *out, o->force, o->quiet);
      fmt::print("decompressed {} -> {}\n", *vec, *out);
      return 0;
    }
    if (o->method.empty()) rvec::fail("--method is required: sparse, int8 or lora");
    if (o->method != "sparse" && o->method != "int8" && o->method != "lora")
      rvec::fail("--method {}: expected sparse, int8 or lora", o->method);
    if (o->method != "sparse") {
      const std::string extra = given({density, scope});
      if (!extra.empty()) rvec::fail("{}: options of --method sparse only, not of --method {}", extra, o->method);
    }
    if (o->method != "lora") {
      const std::string extra = given({rank_opt, energy_opt});
      if (!extra.empty()) rvec::fail("{}: options of --method lora only, not of --method {}", extra, o->method);
    } else {
      if (rank_opt->count() && energy_opt->count()) rvec::fail("--method lora: give --rank or --energy, not both");
      if (rank_opt->count()) o->rank = *rank;
      if (energy_opt->count()) o->energy = *energy;
    }
    o->out = *out;
    auto r = rvec::arith::compress(*vec, *o);
    const auto j = rvec::arith::to_json(r);
    if (!report->empty()) rvec::write_file_atomic(*report, j.dump(1) + "\n");
    if (*json_out)
      fmt::print("{}\n", j.dump(2));
    else
      fmt::print("{}", rvec::arith::to_table(r, !*totals));
    return 0;
  };
});
}  // namespace
