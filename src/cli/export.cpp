// `rvec export gguf MODEL -o FILE.gguf [--type f32|f16|bf16|q8_0]`: a GGUF file for llama.cpp.
// `rvec export gguf-lora ADAPTER -o FILE.gguf [--base MODEL] [--type f32|f16|bf16]`: a PEFT LoRA
// adapter as a llama.cpp LoRA GGUF (llama-cli --lora-scaled FILE.gguf ALPHA).
#include <fmt/format.h>

#include <memory>

#include "cli/command.h"
#include "export/gguf.h"

namespace {

struct Args {
  std::string model, out, type = "f16";
  bool force = false, quiet = false;
  std::string adapter, lora_out, lora_type = "f32", base;
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
  CLI::App* l = app.add_subcommand("gguf-lora", "A PEFT LoRA adapter as a llama.cpp LoRA GGUF (--lora-scaled)");
  l->add_option("ADAPTER", a->adapter, "PEFT adapter directory (adapter_config.json + adapter_model.safetensors)")
      ->required();
  l->add_option("-o,--output", a->lora_out, "Output .gguf file")->required();
  l->add_option("--base", a->base, "Base model (its config.json; default: the adapter's base_model_name_or_path)");
  l->add_option("--type", a->lora_type, "Tensor type: f32 (default), f16 or bf16");
  l->add_flag("--force", a->force, "Replace the output file if it exists");
  l->add_flag("-q,--quiet", a->quiet, "No progress bar");
  return [a, g, l] {
    if (l->parsed()) {
      rvec::gguf::LoraExportOptions o;
      o.type = rvec::gguf::parse_file_type(a->lora_type);
      if (!a->base.empty()) o.base = a->base;
      o.force = a->force;
      o.quiet = a->quiet;
      auto r = rvec::gguf::export_lora(a->adapter, a->lora_out, o);
      if (!r.dropped.empty()) {
        std::string list;
        for (size_t i = 0; i < r.dropped.size() && i < 5; ++i) list += " " + r.dropped[i];
        fmt::print(stderr,
                   "rvec: warning: {} full weights of the adapter (modules_to_save, biases) have no place in a "
                   "llama.cpp LoRA and were left out:{}{}\n",
                   r.dropped.size(), list, r.dropped.size() > 5 ? " ..." : "");
      }
      fmt::print("export: wrote {} ({} LoRA pairs, {}, alpha {}, {})\n", a->lora_out, r.pairs, r.arch, r.alpha,
                 a->lora_type);
      return 0;
    }
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
