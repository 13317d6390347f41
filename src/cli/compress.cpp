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
  app.add_option("--density,-d", o->density, "sparse: fraction of entries kept, top |x| (default 0.1)");
  app.add_option("--scope", o->scope, "sparse: top-k per tensor (tensor, default) or over the whole vector (global)");
  app.add_option("--rank,-r", *rank, "lora: rank");
  app.add_option("--energy", *energy, "lora: smallest rank keeping this fraction of the energy");
  app.add_option("--out,-o", *out, "Output directory")->required();
  app.add_option("--report", *report, "Also write the JSON report here (it is always in OUT/compress_report.json)");
  app.add_flag("--decompress", *decompress, "Write the dense vector a compressed vector decodes to");
  app.add_flag("--json", *json_out, "Print the JSON report instead of the table");
  app.add_flag("--totals", *totals, "Table: only the total line");
  app.add_flag("--force,-f", o->force, "Replace an existing output");
  app.add_flag("--quiet,-q", o->quiet, "No progress on stderr");
  return [=] {
    if (*decompress) {
      if (!o->method.empty()) rvec::fail("--decompress reads the method from the compressed vector; drop --method");
      rvec::arith::decompress(*vec, *out, o->force, o->quiet);
      fmt::print("decompressed {} -> {}\n", *vec, *out);
      return 0;
    }
    if (o->method.empty()) rvec::fail("--method is required: sparse, int8 or lora");
    if (o->method == "lora") {
      if (*rank) o->rank = *rank;
      if (*energy) o->energy = *energy;
    } else if (*rank || *energy) {
      rvec::fail("--rank and --energy apply to --method lora");
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
