// `rvec testmodel`: random-weight HF models with real Qwen2/Llama shapes, and
// perturbed siblings of an existing model (--like DIR --perturb SCALE).
#include "core/build_info.h"
#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "arith/testmodel.h"
#include "cli/command.h"
#include "core/memory.h"
#include "model/config.h"
#include "core/atomic_output.h"
#include "core/error.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct Args {
  std::string out, config, preset, shape, arch, dtype = "bf16", tokenizer, like;
  uint64_t seed = 0;
  double perturb = 0, shard_size = double(rvec::io::kDefaultShardSize);
  int64_t head_dim = 0, layers = 0, vocab = 0, hidden = 0, intermediate = 0, heads = 0, kv_heads = 0;
  bool tied = false, untied = false, force = false, quiet = false, no_tokenizer = false;
};

std::optional<fs::path> find_qwen_tokenizer() {
  const fs::path src(RVEC_SOURCE_DIR);
  for (const fs::path& p : {rvec::arith::data_dir() / "tokenizers/qwen2.5", src / "tests/data/tokenizers/qwen2.5",
                            src / "../shared/data/tokenizers/qwen2.5"})
    if (fs::exists(p / "tokenizer.json")) return p;
  return std::nullopt;
}

rvec::cli::Command cmd("testmodel", "Write a random-weight model with real Qwen2/Llama shapes (or a perturbed sibling)",
                       [](CLI::App& app) {
  auto a = std::make_shared<Args>();
  app.add_option("-o,--output", a->out, "Output directory")->required();
  app.add_option("--config", a->config, "An HF config.json giving the shapes (e.g. data/configs/Qwen2.5-1.5B-Instruct.json)");
  app.add_option("--preset", a->preset, "tiny: hidden 64, 2 layers, vocab 1024, with a cut-down Qwen2.5 tokenizer");
  app.add_option("--shape", a->shape, "tiny | 0.5b | 1.5b | 7b (Qwen2.5 shapes)");
  app.add_option("--arch", a->arch, "qwen2 | qwen3 | llama | mistral | olmo2 (default: the config's)");
  app.add_option("--head-dim", a->head_dim, "Override head_dim (qwen3: independent of hidden / heads)");
  app.add_option("--dtype", a->dtype, "bf16 | f16 | f32 (default bf16)");
  app.add_option("--seed", a->seed, "Random seed (default 0)");
  app.add_option("--layers", a->layers, "Override num_hidden_layers");
  app.add_option("--vocab", a->vocab, "Override vocab_size");
  app.add_option("--hidden", a->hidden, "Override hidden_size");
  app.add_option("--intermediate", a->intermediate, "Override intermediate_size");
  app.add_option("--heads", a->heads, "Override num_attention_heads");
  app.add_option("--kv-heads", a->kv_heads, "Override num_key_value_heads");
  app.add_flag("--tied", a->tied, "tie_word_embeddings: true (no lm_head tensor)");
  app.add_flag("--untied", a->untied, "tie_word_embeddings: false (separate lm_head)");
  app.add_option("--tokenizer", a->tokenizer, "Copy tokenizer/generation files from this directory");
  app.add_flag("--no-tokenizer", a->no_tokenizer, "Write no tokenizer files");
  app.add_option("--like", a->like, "Make a perturbed sibling of this model instead");
  app.add_option("--perturb", a->perturb, "With --like: add SCALE * unit-variance noise to every weight");
  app.add_option("--shard-size", a->shard_size, "Bytes of tensor data per shard (default 5e9)");
  app.add_flag("--force", a->force, "Replace the output directory if it exists");
  app.add_flag("-q,--quiet", a->quiet, "No progress bar");
  return [a] {
    if (!(a->shard_size >= 1)) rvec::fail("--shard-size must be at least 1 byte");
    if (!a->like.empty()) {
      if (!(a->perturb > 0)) rvec::fail("--like needs --perturb SCALE > 0");
      rvec::arith::write_perturbed(a->like, a->perturb, a->seed, a->out, a->force, a->quiet, uint64_t(a->shard_size));
      fmt::print("testmodel: wrote {} ({} + {} noise, seed {})\n", a->out, a->like, a->perturb, a->seed);
      return 0;
    }
    rvec::arith::TestModelOptions o;
    std::string shape = a->shape.empty() ? a->preset : a->shape;
    bool tiny = false;
    if (!a->config.empty()) {
      if (!shape.empty()) rvec::fail("give --config or --shape/--preset, not both");
      try {
        o.config = json::parse(rvec::read_file(a->config));
      } catch (const json::exception& e) {
        rvec::fail("{}: invalid JSON: {}", a->config, e.what());
      }
    } else if (shape == "tiny") {
      o.config = rvec::arith::tiny_config();
      tiny = true;
    } else if (shape == "0.5b" || shape == "1.5b" || shape == "7b") {
      std::string n = shape == "0.5b" ? "0.5B" : shape == "1.5b" ? "1.5B" : "7B";
      o.config = json::parse(rvec::read_file(rvec::arith::data_dir() / "configs" / fmt::format("Qwen2.5-{}-Instruct.json", n)));
    } else if (shape.empty()) {
      rvec::fail("testmodel needs --config FILE, --shape tiny|0.5b|1.5b|7b or --preset tiny");
    } else {
      rvec::fail("unknown shape '{}' (expected tiny, 0.5b, 1.5b or 7b)", shape);
    }
    auto& c = o.config;
    if (!c.is_object()) rvec::fail("{}: not a JSON object", a->config);
    if (!a->arch.empty()) {
      if (a->arch == "qwen2") {
        c["architectures"] = {"Qwen2ForCausalLM"};
        c["model_type"] = "qwen2";
      } else if (a->arch == "llama") {
        c["architectures"] = {"LlamaForCausalLM"};
        c["model_type"] = "llama";
        c["attention_bias"] = false;
      } else if (a->arch == "mistral") {
        c["architectures"] = {"MistralForCausalLM"};
        c["model_type"] = "mistral";
      } else if (a->arch == "qwen3") {
        c["architectures"] = {"Qwen3ForCausalLM"};
        c["model_type"] = "qwen3";
        c["attention_bias"] = false;
      } else if (a->arch == "olmo2") {
        c["architectures"] = {"Olmo2ForCausalLM"};
        c["model_type"] = "olmo2";
        c["attention_bias"] = false;
        c.erase("head_dim");  // Olmo2Config has none: hidden / heads
      } else {
        rvec::fail("unknown --arch '{}' (expected qwen2, qwen3, llama, mistral or olmo2)", a->arch);
      }
    }
    if (a->layers) c["num_hidden_layers"] = a->layers, c["max_window_layers"] = a->layers;
    if (a->vocab) c["vocab_size"] = a->vocab;
    if (a->hidden) c["hidden_size"] = a->hidden;
    if (a->intermediate) c["intermediate_size"] = a->intermediate;
    if (a->heads) c["num_attention_heads"] = a->heads;
    if (a->kv_heads) c["num_key_value_heads"] = a->kv_heads;
    if (a->head_dim) c["head_dim"] = a->head_dim;
    // head_dim is written out for qwen3: Qwen3Config defaults it to 128, not hidden / heads.
    if (!c.contains("head_dim") && c.value("model_type", "") == "qwen3")
      c["head_dim"] = c.value("hidden_size", 0) / std::max(1, c.value("num_attention_heads", 1));
    if (a->tied && a->untied) rvec::fail("--tied and --untied exclude each other");
    if (a->tied) c["tie_word_embeddings"] = true;
    if (a->untied) c["tie_word_embeddings"] = false;
    auto dt = rvec::parse_torch_dtype(a->dtype);
    if (!dt || !rvec::is_arith_dtype(*dt)) rvec::fail("--dtype {}: expected bf16, f16 or f32", a->dtype);
    // The shape flags go through config.json's validation (bounded sizes, named keys), and
    // the output must fit on the disk before anything is written.
    const auto mc = rvec::model::ModelConfig::from_json(
        c, a->config.empty() ? std::string("testmodel (shape flags)") : a->config + " (with the shape flags)");
    const double H = mc.hidden_size, per_layer = H * mc.q_dim() * 2 + H * mc.kv_dim() * 2 +
                                                  3.0 * H * mc.intermediate_size + 2 * H;
    const double params = per_layer * mc.num_layers + double(mc.vocab_size) * H * (mc.tie_word_embeddings ? 1 : 2) + H;
    std::filesystem::path parent = std::filesystem::absolute(a->out).parent_path();
    while (!parent.empty() && !std::filesystem::exists(parent) && parent != parent.parent_path()) parent = parent.parent_path();
    rvec::check_disk_space(parent.string(), params * double(rvec::dtype_size(*dt)),
                           fmt::format("testmodel: {} layers x hidden {} (vocab {})", mc.num_layers, mc.hidden_size,
                                       mc.vocab_size));
    o.dtype = *dt;
    o.seed = a->seed;
    o.shard_size = uint64_t(a->shard_size);
    o.force = a->force;
    o.quiet = a->quiet;
    if (!a->tokenizer.empty()) {
      o.tokenizer_dir = a->tokenizer;
    } else if (!a->no_tokenizer) {
      if (tiny) {
        o.tokenizer_dir = rvec::arith::data_dir() / "tokenizers/tiny1024";
      } else if (auto q = find_qwen_tokenizer(); q && c.value("vocab_size", 0) >= 151643) {
        o.tokenizer_dir = *q;
      }
    }
    rvec::arith::write_test_model(a->out, o);
    fmt::print("testmodel: wrote {} ({}, {} layers, hidden {}, vocab {}, {}{})\n", a->out,
               c.value("model_type", std::string("?")), c.value("num_hidden_layers", 0), c.value("hidden_size", 0),
               c.value("vocab_size", 0), rvec::dtype_name(o.dtype),
               o.tokenizer_dir ? ", tokenizer from " + o.tokenizer_dir->string() : "");
    return 0;
  };
});
}  // namespace
