// Helpers for arithmetic tests: tiny models written with the streaming writer.
#pragma once
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "arith/testmodel.h"
#include "core/atomic_output.h"
#include "core/dtype.h"
#include "io/model_dir.h"
#include "io/safetensors_writer.h"

namespace rvec::testing {

namespace fs = std::filesystem;

// A fresh temporary directory removed at destruction.
struct TmpDir {
  fs::path path;
  explicit TmpDir(const std::string& tag = "t") {
    path = fs::temp_directory_path() /
           ("rvec-test-" + tag + "-" + std::to_string(getpid()) + "-" + std::to_string(counter()++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TmpDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path operator/(const std::string& s) const { return path / s; }
  static int& counter() {
    static int c = 0;
    return c;
  }
};

struct T {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<float> values;  // converted to dtype (RNE)
};

inline std::vector<uint8_t> encode(const T& t) {
  std::vector<uint8_t> b(t.values.size() * dtype_size(t.dtype));
  from_f32(t.dtype, t.values.data(), b.data(), t.values.size());
  return b;
}

// Writes config.json + model.safetensors (or shards when shard_size is small).
inline void write_model(const fs::path& dir, const std::vector<T>& ts, nlohmann::json config,
                        uint64_t shard_size = io::kDefaultShardSize) {
  fs::create_directories(dir);
  std::vector<io::TensorSpec> specs;
  std::vector<std::vector<uint8_t>> enc;
  for (auto& t : ts) {
    specs.push_back({t.name, t.dtype, t.shape});
    enc.push_back(encode(t));
  }
  io::SafetensorsWriter w(dir, specs, shard_size);
  for (auto& e : enc) w.append(e.data(), e.size());
  w.finish();
  write_file_atomic(dir / "config.json", config.dump());
}

inline nlohmann::json qwen_config(bool tied = true, int layers = 2) {
  return {{"architectures", {"Qwen2ForCausalLM"}}, {"model_type", "qwen2"}, {"tie_word_embeddings", tied},
          {"num_hidden_layers", layers}, {"torch_dtype", "bfloat16"}};
}

// All tensor values of a model as f32.
inline std::vector<float> values(const io::ModelDir& m, const std::string& name) {
  const auto& t = m.get(name);
  std::vector<float> v(t.numel());
  to_f32(t.dtype, t.data, v.data(), v.size());
  return v;
}

inline std::string bytes(const io::ModelDir& m, const std::string& name) {
  const auto& t = m.get(name);
  return std::string(reinterpret_cast<const char*>(t.data), t.nbytes());
}

// Every tensor of a and b identical in name, dtype, shape and bytes.
inline ::testing::AssertionResult same_tensors(const fs::path& a, const fs::path& b) {
  auto ma = io::ModelDir::open(a, false), mb = io::ModelDir::open(b, false);
  if (ma->tensors().size() != mb->tensors().size())
    return ::testing::AssertionFailure() << "tensor counts differ: " << ma->tensors().size() << " vs "
                                         << mb->tensors().size();
  for (auto* t : ma->tensors()) {
    auto* u = mb->find(t->name);
    if (!u) return ::testing::AssertionFailure() << "missing " << t->name;
    if (u->dtype != t->dtype || u->shape != t->shape)
      return ::testing::AssertionFailure() << t->name << ": dtype/shape differ";
    if (std::memcmp(t->data, u->data, t->nbytes()) != 0)
      return ::testing::AssertionFailure() << t->name << ": bytes differ";
  }
  return ::testing::AssertionSuccess();
}

// n standard normal values, deterministic for a seed.
inline std::vector<float> gaussian(size_t n, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(g);
  return v;
}

inline void tiny_model(const fs::path& out, uint64_t seed, DType dt = DType::BF16, bool tied = true,
                       uint64_t shard_size = io::kDefaultShardSize) {
  arith::TestModelOptions o;
  o.config = arith::tiny_config();
  o.config["tie_word_embeddings"] = tied;
  o.dtype = dt;
  o.seed = seed;
  o.quiet = true;
  o.shard_size = shard_size;
  o.tokenizer_dir = arith::data_dir() / "tokenizers/tiny1024";
  arith::write_test_model(out, o);
}

}  // namespace rvec::testing
