// `rvec export gguf MODEL -o FILE.gguf [--type f32|f16|bf16|q8_0]`: a GGUF file for llama.cpp.
#include <fmt/format.h>

#include <memory>

#include "cli/command.h"
#include "export/gguf.h"

namespace {

struct Args {
  std::string model, out, type = "f16";
  bool force = false, quiet = false;
};

rvec::cli::Command cmd("export", "Export a model to other formats (gguf: llama.cpp / Ollama)", [](CLI::App& app) {
  app.require_subcommand(1);
  auto a = std::make_shared<Args>();
  CLI::App* g = app.add_subcommand("gguf", "GGUF v3 for llama.cpp (qwen2, qwen3, llama, mistral, olmo2)");
  g->add_option("MODEL", a->model, "Model directory or ORG/NAME[@REV]")->required();
  g->add_option("-o,--output", a->out, "Output .gguf file")->required();
  g->add_option("--type", a->type, "Matrix type: f32, f16 (default), bf16 or q8_0 (1-D tensors stay f32)");
  g->add_flag("--force", a->force, "Replace the output file if it exists");
  g->add_flag("-q,--quiet", a->quiet, "No progress bar");
  return [a, g] {
    if (!g->parsed()) return 1;
    rvec::gguf::ExportOptions o;
    o.type = rvec::gguf::parse_file_type(a->type);
    o.force = a->force;
    o.quiet = a->quiet;
    rvec::gguf::export_model(a->model, a->out, o);
    fmt::print("export: wrote {} ({})\n", a->out, a->type);
    return 0;
  };
});

}  // namespace
