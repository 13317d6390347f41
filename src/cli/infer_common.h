// Options shared by the inference subcommands (generate, score, logits, bench).
#pragma once
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <fmt/core.h>

#include "core/error.h"
#include "infer/engine.h"
#include "infer/kernels.h"

namespace rvec::cli {

struct InferArgs {
  std::string model;
  int threads = 0;
  bool bf16_dot = false, hugepages = false;
  std::string kv_cache_dtype = "f32";
};

inline constexpr const char* kHugepagesHelp =
    "Copy the weights into memory on 2 MB transparent huge pages (fewer TLB misses while decoding; costs the "
    "weights' size in memory and a copy at start; falls back to mapping the files when they do not fit)";

// --kv-cache-dtype (every command that runs the engine).
inline void add_kv_cache_dtype_option(CLI::App& app, std::string& dtype) {
  app.add_option("--kv-cache-dtype", dtype,
                 "KV cache element type: f32 (exact), bf16 or f16 (half the memory, and half the bytes attention "
                 "reads per step; keys and values rounded to nearest even when stored)")
      ->check(CLI::IsMember({"f32", "bf16", "f16"}))
      ->capture_default_str();
}

inline void add_infer_options(CLI::App& app, InferArgs& a) {
  app.add_option("MODEL", a.model, "Hugging Face model directory (config.json + safetensors)")->required();
  app.add_option("--threads", a.threads, "Threads (default: all cores)");
  app.add_flag("--bf16-dot", a.bf16_dot,
               "Round activations to bf16 and use bf16 dot products (AVX512-BF16, Arm BF16) for bf16 weights in "
               "products of 5+ rows (faster prefill and batched decode, ~1e-2 relative; decode of 1-4 sequences "
               "stays exact; with --kv-cache-dtype bf16 on AVX512-BF16 the attention too; default: exact f32 "
               "arithmetic)");
  app.add_flag("--hugepages", a.hugepages, kHugepagesHelp);
  add_kv_cache_dtype_option(app, a.kv_cache_dtype);
}

inline DType kv_dtype(const InferArgs& a) { return infer::parse_kv_cache_dtype(a.kv_cache_dtype); }

// --kv-cache-gb for the commands that generate (generate, eval, experiment, serve).
inline void add_kv_cache_option(CLI::App& app, double& gb) {
  app.add_option("--kv-cache-gb", gb,
                 "KV cache cap in GiB over all running sequences; sequences that do not fit wait, one that never "
                 "fits is an error (default 0: half of the memory available at start)")
      ->check(CLI::NonNegativeNumber);
}

// --bf16-dot needs a bf16 dot product (AVX512-BF16, or Arm's BF16 extension) and RVEC_ISA not
// lowering it; without it every product stays exact f32, which is said on stderr so that a
// timing or a result is not mistaken for one.
inline void enable_bf16_dot() {
  infer::set_matmul_precision(infer::MatmulPrecision::BF16Dot);
  if (!infer::bf16_dot_supported())
    fmt::print(stderr, "note: --bf16-dot needs a bf16 dot product (AVX512-BF16, or BF16 on 64-bit ARM), which "
                       "this CPU (or RVEC_ISA, or this build) does not offer: the products stay exact f32\n");
}

inline void apply_infer_options(const InferArgs& a) {
  if (a.bf16_dot) enable_bf16_dot();
  if (a.hugepages) infer::set_default_weight_backing(io::Backing::HugePages);
}

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace rvec::cli
