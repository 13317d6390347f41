// Options shared by the arithmetic subcommands (extract, apply, merge, random-vector).
#pragma once
#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <vector>

#include "arith/arith.h"
#include "core/error.h"

namespace rvec::cli {

struct ArithArgs {
  arith::Options o;
  std::string out, dtype, donor;
  std::vector<std::string> scales;
  double shard_size = double(io::kDefaultShardSize);
  bool no_hash = false;

  void add(CLI::App& app, bool selection = true, bool dtype_opt = true) {
    app.add_option("-o,--output", out, "Output directory (created atomically)")->required();
    app.add_flag("--force", o.force, "Replace the output directory if it exists");
    app.add_option("--shard-size", shard_size, "Bytes of tensor data per output shard (default 5e9)");
    app.add_option("--donor", donor, "Model directory to copy config.json and tokenizer files from");
    app.add_flag("-q,--quiet", o.quiet, "No progress bar or warnings");
    app.add_flag("--no-hash", no_hash, "Do not record sha256 of the inputs in rvec.json");
    if (dtype_opt) app.add_option("--dtype", dtype, "Output dtype: bf16, f16 or f32 (default: the target's)");
    if (selection) {
      app.add_option("--include", o.include, "Regex: only tensors matching it take part (others copied from the target)");
      app.add_option("--exclude", o.exclude, "Regex: tensors matching it are copied from the target");
      app.add_option("--scale", scales, "REGEX=FACTOR: multiply the vector part of matching tensors (repeatable)");
      app.add_flag("--strict", o.strict, "Non-finite results are an error");
      app.add_flag("--strict-vocab", o.strict_vocab, "Vocabulary-row mismatches are an error");
      app.add_flag("--mergekit-compat", o.mergekit_compat,
                   "Round to bf16 after every product and sum, like mergekit with dtype: bfloat16");
    }
  }
  const arith::Options& finish() {
    o.out = out;
    if (!(shard_size >= 1)) fail("--shard-size must be at least 1 byte");
    o.shard_size = uint64_t(shard_size);
    if (!donor.empty()) o.donor = donor;
    o.hash_inputs = !no_hash;
    if (!dtype.empty()) {
      auto d = parse_torch_dtype(dtype);
      if (!d || !is_arith_dtype(*d)) fail("--dtype {}: expected bf16, f16 or f32", dtype);
      o.out_dtype = d;
    }
    o.scales.clear();
    for (const auto& s : scales) {
      auto eq = s.rfind('=');
      if (eq == std::string::npos || eq == 0) fail("--scale {}: expected REGEX=FACTOR", s);
      try {
        size_t pos = 0;
        std::string num = s.substr(eq + 1);
        double f = std::stod(num, &pos);
        if (pos != num.size()) throw std::invalid_argument("x");
        o.scales.emplace_back(s.substr(0, eq), f);
      } catch (const std::exception&) {
        fail("--scale {}: '{}' is not a number", s, s.substr(eq + 1));
      }
    }
    return o;
  }
};

}  // namespace rvec::cli
