// `rvec lora extract VECTOR | --base B --tuned T (--rank R | --energy E) [--skip-embeddings] [--exact-svd] -o ADAPTER`:
// a PEFT LoRA adapter from a task vector by truncated SVD of each linear layer's delta.
#include <fmt/format.h>

#include <memory>

#include "arith/lora.h"
#include "cli/command.h"
#include "core/error.h"

namespace {

struct Args {
  std::string vector, base, tuned, out, dtype = "f32", base_name;
  int rank = 0;
  double energy = 0;
  bool skip = false, exact = false, force = false, quiet = false;
  uint64_t seed = 0;
};

rvec::cli::Command cmd("lora", "LoRA adapters (PEFT format): extract one from a task vector", [](CLI::App& app) {
  app.require_subcommand(1);
  auto a = std::make_shared<Args>();
  CLI::App* x = app.add_subcommand("extract", "Truncated SVD of each linear layer's delta -> PEFT adapter directory");
  x->add_option("VECTOR", a->vector, "Task vector directory (or give --base and --tuned)");
  x->add_option("--base", a->base, "Base model: with --tuned the delta is tuned - base; with VECTOR it supplies the "
                                   "full weights of embeddings / norms (modules_to_save)");
  x->add_option("--tuned", a->tuned, "Tuned model (with --base)");
  auto* r = x->add_option("--rank,-r", a->rank, "Rank of every module (capped at min(out, in))");
  auto* e = x->add_option("--energy", a->energy, "Per module, the smallest rank keeping this fraction of ||delta||_F^2");
  r->excludes(e);
  x->add_flag("--skip-embeddings", a->skip, "Drop embeddings, lm_head, norms and biases instead of saving them in full");
  x->add_flag("--exact-svd", a->exact,
              "Always the full LAPACK SVD (default: a randomised SVD when rank + 10 <= min(out, in) / 4)");
  x->add_option("--seed", a->seed, "Seed of the randomised SVD's Gaussian sketch (default 0)");
  x->add_option("--dtype", a->dtype, "lora_A / lora_B dtype: f32 (default), bf16 or f16");
  x->add_option("--base-model-name", a->base_name, "base_model_name_or_path in adapter_config.json (default: --base)");
  x->add_option("-o,--output", a->out, "Output adapter directory (created atomically)")->required();
  x->add_flag("--force", a->force, "Replace the output directory if it exists");
  x->add_flag("-q,--quiet", a->quiet, "No progress bar and no per-tensor table");
  return [a, x, r, e] {
    if (!x->parsed()) return 1;
    rvec::arith::lora::ExtractOptions o;
    o.out = a->out;
    if (r->count()) o.rank = a->rank;
    if (e->count()) o.energy = a->energy;
    if (!r->count() && !e->count()) rvec::fail("lora extract: give --rank R or --energy E");
    o.skip_embeddings = a->skip;
    o.exact_svd = a->exact;
    o.seed = a->seed;
    auto d = rvec::parse_torch_dtype(a->dtype);
    if (!d || !rvec::is_arith_dtype(*d)) rvec::fail("--dtype {}: expected f32, bf16 or f16", a->dtype);
    o.dtype = *d;
    o.base_model_name_or_path = a->base_name;
    o.force = a->force;
    o.quiet = a->quiet;
    rvec::arith::lora::ExtractReport rep;
    if (!a->vector.empty()) {
      if (!a->tuned.empty()) rvec::fail("lora extract: give VECTOR or --base B --tuned T, not both");
      std::optional<std::filesystem::path> base;
      if (!a->base.empty()) base = a->base;
      rep = rvec::arith::lora::extract_from_vector(a->vector, base, o);
    } else {
      if (a->base.empty() || a->tuned.empty()) rvec::fail("lora extract: give VECTOR, or both --base and --tuned");
      rep = rvec::arith::lora::extract_from_models(a->base, a->tuned, o);
    }
    if (a->quiet) {
      fmt::print("lora: wrote {} (r = {}, relative error {:.4e})\n", rep.out.string(), rep.r, rep.total_rel_error);
    } else {
      rvec::arith::lora::print_report(rep);
    }
    return 0;
  };
});

}  // namespace
