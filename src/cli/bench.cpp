// `rvec bench MODEL [--prompt-tokens 128] [--gen-tokens 64] [--batch 1] [--threads N] [--json]`:
// like llama-bench: prefill of `batch` prompts of random tokens, then `gen-tokens` decode
// steps of all `batch` sequences together; tokens/s are aggregates over the batch.
#include <fmt/format.h>
#include <omp.h>

#include <nlohmann/json.hpp>
#include <cstring>
#include <random>

#include "cli/command.h"
#include "cli/infer_common.h"
#include "core/cpu.h"

namespace {

// Copy bandwidth (bytes read + bytes written per second) of 256 MB buffers with all
// threads, the best of 3: the memory-bandwidth bound of a decode step is this divided
// by the weight bytes it reads.
double copy_bandwidth() {
  const size_t n = size_t(256) << 20;
  std::vector<char> a(n, 1), b(n, 2);
  double best = 0;
  for (int r = 0; r < 3; ++r) {
    auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel
    {
      const size_t nt = size_t(omp_get_num_threads()), t = size_t(omp_get_thread_num());
      const size_t per = n / nt, beg = t * per, len = t + 1 == nt ? n - beg : per;
      std::memcpy(b.data() + beg, a.data() + beg, len);
    }
    best = std::max(best, 2.0 * double(n) / rvec::cli::seconds_since(t0));
  }
  return best;
}

struct Args {
  rvec::cli::InferArgs common;
  int prompt_tokens = 128, gen_tokens = 64, batch = 1, reps = 1;
  bool json = false, no_bandwidth = false;
};

rvec::cli::Command cmd(
    "bench", "Measure prefill and decode throughput (tokens/s) on random tokens", [](CLI::App& app) {
      auto a = std::make_shared<Args>();
      rvec::cli::add_infer_options(app, a->common);
      app.add_option("--prompt-tokens", a->prompt_tokens, "Prompt length per sequence")->capture_default_str();
      app.add_option("--gen-tokens", a->gen_tokens, "Decode steps")->capture_default_str();
      app.add_option("--batch", a->batch, "Sequences processed together")->capture_default_str();
      app.add_option("--reps", a->reps, "Repetitions (the best is reported)")->capture_default_str();
      app.add_flag("--json", a->json, "Print one JSON object");
      app.add_flag("--no-bandwidth", a->no_bandwidth, "Skip the memory copy-bandwidth measurement");
      return [a]() -> int {
        using namespace rvec;
        cli::apply_infer_options(a->common);
        if (a->prompt_tokens < 1 || a->gen_tokens < 0 || a->batch < 1 || a->reps < 1)
          fail("bench: --prompt-tokens, --batch and --reps must be >= 1, --gen-tokens >= 0");
        auto model = infer::load_model(a->common.model);
        const auto& c = model->config();
        infer::Engine eng(*model, {.threads = a->common.threads, .max_batch = a->batch,
                                   .max_context = size_t(a->prompt_tokens + a->gen_tokens + 1)});
        std::mt19937 rng(42);
        std::uniform_int_distribution<int32_t> dist(0, c.vocab_size - 1);
        double best_pp = 0, best_tg = 0;
        for (int rep = 0; rep < a->reps; ++rep) {
          std::vector<infer::KVCache> caches(a->batch);
          std::vector<infer::KVCache*> ptrs;
          std::vector<std::vector<int32_t>> prompts(a->batch);
          for (int b = 0; b < a->batch; ++b) {
            ptrs.push_back(&caches[b]);
            for (int t = 0; t < a->prompt_tokens; ++t) prompts[b].push_back(dist(rng));
          }
          auto t0 = std::chrono::steady_clock::now();
          auto lg = eng.step(ptrs, prompts);
          double pp_s = cli::seconds_since(t0);
          std::vector<std::vector<int32_t>> next(a->batch);
          auto argmax = [&](const std::vector<float>& l) {
            return int32_t(std::max_element(l.begin(), l.end()) - l.begin());
          };
          for (int b = 0; b < a->batch; ++b) next[b] = {argmax(lg[b])};
          auto t1 = std::chrono::steady_clock::now();
          for (int g = 0; g < a->gen_tokens; ++g) {
            lg = eng.step(ptrs, next);
            for (int b = 0; b < a->batch; ++b) next[b] = {argmax(lg[b])};
          }
          double tg_s = cli::seconds_since(t1);
          best_pp = std::max(best_pp, double(a->batch) * a->prompt_tokens / pp_s);
          if (a->gen_tokens > 0) best_tg = std::max(best_tg, double(a->batch) * a->gen_tokens / tg_s);
        }
        const uint64_t wbytes = model->weights().matmul_bytes_per_token();
        const bool bfdot = infer::matmul_precision() == infer::MatmulPrecision::BF16Dot;
        int threads = a->common.threads > 0 ? a->common.threads : omp_get_max_threads();
        const double bw = a->no_bandwidth ? 0.0 : copy_bandwidth();
        // Decode must read every weight once per step (for the whole batch).
        const double bound = bw > 0 ? bw / double(wbytes) * a->batch : 0.0;
        nlohmann::json j{{"model", a->common.model},
                         {"architecture", c.architecture},
                         {"threads", threads},
                         {"batch", a->batch},
                         {"prompt_tokens", a->prompt_tokens},
                         {"gen_tokens", a->gen_tokens},
                         {"prefill_tokens_per_s", best_pp},
                         {"decode_tokens_per_s", best_tg},
                         {"weight_bytes_per_decode_step", wbytes},
                         {"copy_bandwidth_bytes_per_s", bw},
                         {"decode_bandwidth_bound_tokens_per_s", bound},
                         {"isa", std::string(cpu_isa_name(cpu_isa())) + (cpu_has_avx512_bf16() ? "+bf16" : "")},
                         {"matmul", bfdot ? "bf16dot" : "f32"}};
        if (a->json) {
          fmt::print("{}\n", j.dump());
        } else {
          fmt::print("model {} ({}), {} threads, batch {}, matmul {}\n", a->common.model, c.architecture, threads,
                     a->batch, bfdot ? "bf16dot" : "f32");
          fmt::print("prefill pp{}: {:.1f} tok/s\n", a->prompt_tokens, best_pp);
          if (a->gen_tokens > 0)
            fmt::print("decode  tg{}: {:.1f} tok/s (aggregate), weights {:.0f} MB read per step\n", a->gen_tokens,
                       best_tg, double(wbytes) / 1e6);
          if (bw > 0)
            fmt::print("memory copy bandwidth {:.1f} GB/s -> decode bound {:.1f} tok/s (batch {})\n", bw / 1e9, bound,
                       a->batch);
        }
        return 0;
      };
    });

}  // namespace
