// LoRA adapters (arith/lora.h): extraction against hand-derived SVD facts (full rank reproduces
// the delta; the rank-k error is the tail energy of singular values the test constructs), the
// PEFT file layout as PEFT's save_pretrained / get_peft_model_state_dict write it, reading
// foreign adapters with PEFT's per-module rank / alpha / rsLoRA rules, and apply --lora equal
// to W + alpha · B·A · lora_alpha / r computed here.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <set>
#include <tuple>

#include "arith/lora.h"
#include "arith_helpers.h"
#include "core/error.h"
#include "core/input_file.h"
#include "io/safetensors.h"

using namespace rvec;
using namespace rvec::testing;
namespace lora = rvec::arith::lora;
using nlohmann::json;

namespace {

std::vector<float> randn(size_t n, uint64_t seed, float scale = 1) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> d(0, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

// Sylvester Hadamard matrix of order n (a power of 2), scaled to be orthogonal.
std::vector<double> hadamard(int n) {
  std::vector<double> h(size_t(n * n));
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) h[size_t(i * n + j)] = (__builtin_popcount(unsigned(i & j)) % 2 ? -1.0 : 1.0) / std::sqrt(n);
  return h;
}

// U diag(s) Vᵀ with U, V the orthogonal Hadamard matrices of orders m and n (m >= n).
std::vector<float> with_singular_values(int m, int n, const std::vector<double>& s) {
  auto u = hadamard(m), v = hadamard(n);
  std::vector<float> d(size_t(m * n));
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      double x = 0;
      for (int k = 0; k < n; ++k) x += u[size_t(i * m + k)] * s[size_t(k)] * v[size_t(j * n + k)];
      d[size_t(i * n + j)] = float(x);
    }
  return d;
}

double rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double e = 0, n = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    e += double(a[i] - b[i]) * (a[i] - b[i]);
    n += double(b[i]) * b[i];
  }
  return std::sqrt(e / n);
}

const lora::Entry& entry(const lora::Adapter& a, const std::string& target, size_t* idx = nullptr) {
  for (size_t i = 0; i < a.entries().size(); ++i)
    if (a.entries()[i].target == target) {
      if (idx) *idx = i;
      return a.entries()[i];
    }
  throw Error("no entry " + target);
}

// A small "vector": two layers of linear weights, norms, biases and embeddings.
std::vector<T> small_vector(uint64_t seed) {
  std::vector<T> ts;
  auto add = [&](const std::string& n, std::vector<int64_t> shape) {
    size_t k = 1;
    for (auto d : shape) k *= size_t(d);
    ts.push_back({n, DType::F32, shape, randn(k, seed + ts.size(), 0.01f)});
  };
  add("model.embed_tokens.weight", {16, 8});
  for (int l = 0; l < 2; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {8});
    add(p + "self_attn.q_proj.weight", {8, 8});
    add(p + "self_attn.q_proj.bias", {8});
    add(p + "self_attn.k_proj.weight", {4, 8});
    add(p + "self_attn.o_proj.weight", {8, 8});
    add(p + "mlp.down_proj.weight", {8, 12});
  }
  add("model.norm.weight", {8});
  return ts;
}

std::vector<float> tensor_of(const std::vector<T>& ts, const std::string& n) {
  for (auto& t : ts)
    if (t.name == n) return t.values;
  throw Error("no tensor " + n);
}

void write_adapter(const fs::path& dir, const json& cfg, const std::vector<T>& ts) {
  fs::create_directories(dir);
  std::vector<io::TensorSpec> specs;
  std::vector<std::vector<uint8_t>> enc;
  std::vector<const void*> ptrs;
  for (auto& t : ts) {
    specs.push_back({t.name, t.dtype, t.shape});
    enc.push_back(encode(t));
  }
  for (auto& e : enc) ptrs.push_back(e.data());
  io::write_safetensors_file(dir / "adapter_model.safetensors", specs, ptrs);
  write_file_atomic(dir / "adapter_config.json", cfg.dump());
}

}  // namespace

TEST(Lora, FullRankReproducesTheVector) {
  TmpDir tmp("lora");
  auto ts = small_vector(1);
  write_model(tmp / "vec", ts, qwen_config());
  lora::ExtractOptions o;
  o.out = tmp / "ad";
  o.rank = 64;  // above every min(out, in): capped, i.e. full rank
  o.skip_embeddings = true;
  o.quiet = true;
  auto rep = lora::extract_from_vector(tmp / "vec", std::nullopt, o);
  ASSERT_EQ(rep.modules.size(), 8u);
  for (auto& m : rep.modules) {
    EXPECT_EQ(m.rank, std::min(m.out, m.in)) << m.tensor;
    EXPECT_LT(m.rel_error, 1e-6) << m.tensor;
  }
  // Everything else was dropped and counted as lost.
  EXPECT_EQ(rep.skipped.size(), 1u + 2 * 2 + 1);
  EXPECT_GT(rep.total_rel_error, rep.rel_error);
  auto ad = lora::Adapter::open(tmp / "ad");
  ASSERT_EQ(ad->entries().size(), 8u);
  for (size_t i = 0; i < ad->entries().size(); ++i) {
    const auto& e = ad->entries()[i];
    EXPECT_EQ(e.kind, lora::Entry::Kind::LowRank);
    EXPECT_DOUBLE_EQ(e.scale, 1.0);  // lora_alpha = r for every module
    EXPECT_LT(rel_diff(ad->dense(i), tensor_of(ts, e.target)), 1e-6) << e.target;
  }
}

TEST(Lora, RankKErrorIsTheTailEnergyAndEnergyPicksTheRank) {
  TmpDir tmp("lora");
  const std::vector<double> s = {10, 5, 2, 1, 0.5, 0.1, 0.05, 0.01};
  double total = 0;
  for (double x : s) total += x * x;  // 130.2626
  // 16 x 8 delta with exactly these singular values.
  write_model(tmp / "vec", {{"model.layers.0.mlp.down_proj.weight", DType::F32, {16, 8}, with_singular_values(16, 8, s)}},
              qwen_config());
  for (int k : {1, 3, 6}) {
    lora::ExtractOptions o;
    o.out = tmp.path / fmt::format("r{}", k);
    o.rank = k;
    o.quiet = true;
    auto rep = lora::extract_from_vector(tmp / "vec", std::nullopt, o);
    double tail = 0;
    for (size_t i = size_t(k); i < s.size(); ++i) tail += s[i] * s[i];
    ASSERT_EQ(rep.modules.size(), 1u);
    EXPECT_EQ(rep.modules[0].rank, k);
    EXPECT_NEAR(rep.modules[0].rel_error, std::sqrt(tail / total), 1e-5) << k;
    EXPECT_NEAR(rep.modules[0].norm, std::sqrt(total), 1e-4);
    // The stored factors give the same error.
    auto ad = lora::Adapter::open(o.out);
    auto d = ad->dense(0);
    auto v = with_singular_values(16, 8, s);
    EXPECT_NEAR(rel_diff(d, v), std::sqrt(tail / total), 1e-5);
  }
  // Cumulative energy 100, 125, 129, 130, 130.25, ...: 0.95 of 130.2626 (123.75) needs 2 values,
  // 0.99 (128.96) needs 3, 0.997 (129.87) needs 4, 0.999 (130.13) needs 5.
  for (auto [e, want] : std::vector<std::pair<double, int>>{{0.95, 2}, {0.99, 3}, {0.997, 4}, {0.999, 5}}) {
    lora::ExtractOptions o;
    o.out = tmp.path / fmt::format("e{}", want);
    o.energy = e;
    o.quiet = true;
    EXPECT_EQ(lora::extract_from_vector(tmp / "vec", std::nullopt, o).modules[0].rank, want) << e;
  }
}

TEST(Lora, LowRankPlusNoiseKeepsTheSignal) {
  // Δ = rank-2 signal (singular values 8 and 4) + small noise: rank 2 leaves about the
  // noise's share of the energy.
  TmpDir tmp("lora");
  std::vector<double> s = {8, 4, 0, 0, 0, 0, 0, 0};
  auto d = with_singular_values(16, 8, s);
  auto noise = randn(d.size(), 7, 0.01f);
  double nn = 0, dd = 0;
  for (size_t i = 0; i < d.size(); ++i) {
    d[i] += noise[i];
    nn += double(noise[i]) * noise[i];
    dd += double(d[i]) * d[i];
  }
  write_model(tmp / "vec", {{"model.layers.0.mlp.up_proj.weight", DType::F32, {16, 8}, d}}, qwen_config());
  lora::ExtractOptions o;
  o.out = tmp / "ad";
  o.rank = 2;
  o.quiet = true;
  auto rep = lora::extract_from_vector(tmp / "vec", std::nullopt, o);
  // The noise's projection onto the 2 kept directions is removed too: error <= ‖noise‖ / ‖Δ‖.
  EXPECT_LE(rep.modules[0].rel_error, std::sqrt(nn / dd) * 1.0001);
  EXPECT_GT(rep.modules[0].rel_error, 0.5 * std::sqrt(nn / dd));
}

TEST(Lora, SmallRankUsesTheRandomisedSvdWithTheExactTailError) {
  // 128 x 64 delta with singular values 10 · 0.6^i: rank 4 (4 + 10 <= 64 / 4) takes the
  // randomised path; with this decay its error is the optimal (exact) tail energy to 1e-4
  // relative, the same as the full SVD that --exact-svd forces.
  TmpDir tmp("lora");
  std::vector<double> s(64);
  double total = 0, tail = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    s[i] = 10 * std::pow(0.6, double(i));
    total += s[i] * s[i];
    if (i >= 4) tail += s[i] * s[i];
  }
  const auto v = with_singular_values(128, 64, s);
  write_model(tmp / "vec", {{"model.layers.0.mlp.down_proj.weight", DType::F32, {128, 64}, v}}, qwen_config());
  for (bool exact : {false, true}) {
    lora::ExtractOptions o;
    o.out = tmp.path / (exact ? "exact" : "rand");
    o.rank = 4;
    o.exact_svd = exact;
    o.quiet = true;
    auto rep = lora::extract_from_vector(tmp / "vec", std::nullopt, o);
    ASSERT_EQ(rep.modules.size(), 1u);
    EXPECT_EQ(rep.modules[0].exact, exact);
    EXPECT_EQ(rep.modules[0].rank, 4);
    EXPECT_NEAR(rep.modules[0].rel_error / std::sqrt(tail / total), 1.0, 1e-4) << exact;
    auto ad = lora::Adapter::open(o.out);
    EXPECT_NEAR(rel_diff(ad->dense(0), v) / std::sqrt(tail / total), 1.0, 1e-4) << exact;
  }
  // Rank 20: 20 + 10 > 64 / 4, so the full SVD.
  lora::ExtractOptions o;
  o.out = tmp / "r20";
  o.rank = 20;
  o.quiet = true;
  EXPECT_TRUE(lora::extract_from_vector(tmp / "vec", std::nullopt, o).modules[0].exact);
}

TEST(Lora, PeftLayoutKeysShapesAndConfig) {
  TmpDir tmp("lora");
  auto vec = small_vector(3);
  // A base so that embeddings / norms / biases can be stored as full weights.
  auto base = small_vector(100);
  for (auto& t : base)
    for (auto& x : t.values) x *= 100;
  write_model(tmp / "vec", vec, qwen_config());
  write_model(tmp / "base", base, qwen_config());
  // Make one module's delta rank 1 so that --energy gives ranks that differ.
  {
    auto v2 = vec;
    for (auto& t : v2)
      if (t.name == "model.layers.1.self_attn.k_proj.weight")
        for (int i = 0; i < 4; ++i)
          for (int j = 0; j < 8; ++j) t.values[size_t(i * 8 + j)] = float((i + 1) * (j - 3)) * 0.01f;
    fs::remove_all(tmp / "vec");
    write_model(tmp / "vec", v2, qwen_config());
    vec = v2;
  }
  lora::ExtractOptions o;
  o.out = tmp / "ad";
  o.energy = 0.9999;
  o.quiet = true;
  auto rep = lora::extract_from_vector(tmp / "vec", tmp / "base", o);
  const json cfg = json::parse(read_file(tmp / "ad" / "adapter_config.json"));
  EXPECT_EQ(cfg["peft_type"], "LORA");
  EXPECT_EQ(cfg["task_type"], "CAUSAL_LM");
  EXPECT_EQ(cfg["bias"], "lora_only");
  EXPECT_EQ(cfg["fan_in_fan_out"], false);
  EXPECT_EQ(cfg["use_dora"], false);
  EXPECT_EQ(cfg["use_rslora"], false);
  EXPECT_EQ(cfg["base_model_name_or_path"], (tmp / "base").string());
  EXPECT_EQ(cfg["target_modules"], json({"down_proj", "k_proj", "o_proj", "q_proj"}));
  // Layer modules by their name in the layer (PEFT matches by suffix), the others by path.
  EXPECT_EQ(cfg["modules_to_save"], json({"input_layernorm", "model.embed_tokens", "model.norm"}));
  const int r = cfg["r"];
  EXPECT_EQ(cfg["lora_alpha"], r);
  EXPECT_EQ(rep.r, r);
  // The rank-1 module is in rank_pattern with alpha_pattern equal to its rank.
  EXPECT_EQ(cfg["rank_pattern"]["model.layers.1.self_attn.k_proj"], 1);
  EXPECT_EQ(cfg["alpha_pattern"]["model.layers.1.self_attn.k_proj"], 1);
  for (auto& [k, v] : cfg["rank_pattern"].items()) EXPECT_EQ(cfg["alpha_pattern"][k], v);

  auto st = io::SafetensorsFile::open(tmp / "ad" / "adapter_model.safetensors");
  EXPECT_EQ(st->metadata().at("format"), "pt");
  std::set<std::string> keys;
  for (auto& t : st->tensors()) keys.insert(t.name);
  const std::string p = "base_model.model.model.layers.";
  for (int l = 0; l < 2; ++l) {
    const std::string L = p + std::to_string(l) + ".";
    for (auto [mod, out, in] : std::vector<std::tuple<std::string, int, int>>{
             {"self_attn.q_proj", 8, 8}, {"self_attn.k_proj", 4, 8}, {"self_attn.o_proj", 8, 8}, {"mlp.down_proj", 8, 12}}) {
      const auto* a = st->find(L + mod + ".lora_A.weight");
      const auto* b = st->find(L + mod + ".lora_B.weight");
      ASSERT_TRUE(a && b) << L + mod;
      const int rk = cfg["rank_pattern"].value("model.layers." + std::to_string(l) + "." + mod, r);
      EXPECT_EQ(a->shape, (std::vector<int64_t>{rk, in}));
      EXPECT_EQ(b->shape, (std::vector<int64_t>{out, rk}));
      keys.erase(a->name);
      keys.erase(b->name);
    }
    // bias "lora_only": the LoRA layer's bias sits on its base_layer; modules_to_save keys have
    // neither "modules_to_save" nor the adapter name.
    EXPECT_TRUE(keys.erase(L + "self_attn.q_proj.base_layer.bias"));
    EXPECT_TRUE(keys.erase(L + "input_layernorm.weight"));
  }
  EXPECT_TRUE(keys.erase("base_model.model.model.embed_tokens.weight"));
  EXPECT_TRUE(keys.erase("base_model.model.model.norm.weight"));
  EXPECT_TRUE(keys.empty()) << *keys.begin();
  // Full weights are the tuned values, base + Δ.
  auto full = [&](const std::string& k) {
    const auto* t = st->find(k);
    std::vector<float> v(t->numel());
    to_f32(t->dtype, t->data, v.data(), v.size());
    return v;
  };
  auto emb = full("base_model.model.model.embed_tokens.weight");
  auto eb = tensor_of(base, "model.embed_tokens.weight"), ev = tensor_of(vec, "model.embed_tokens.weight");
  for (size_t i = 0; i < emb.size(); ++i) EXPECT_FLOAT_EQ(emb[i], eb[i] + ev[i]);
}

TEST(Lora, VectorWithEmbeddingsNeedsBaseOrSkip) {
  TmpDir tmp("lora");
  write_model(tmp / "vec", small_vector(4), qwen_config());
  lora::ExtractOptions o;
  o.out = tmp / "ad";
  o.rank = 2;
  o.quiet = true;
  try {
    lora::extract_from_vector(tmp / "vec", std::nullopt, o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--skip-embeddings"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(tmp / "ad"));
  o.energy = 0.5;
  EXPECT_THROW(lora::extract_from_vector(tmp / "vec", std::nullopt, o), Error);  // both rank and energy
}

TEST(Lora, ReadsForeignAdaptersWithPeftScales) {
  TmpDir tmp("lora");
  // rank_pattern / alpha_pattern as regexes matched like PEFT's get_pattern_key, rsLoRA,
  // an embedding LoRA (lora_embedding_A [r, vocab], _B [dim, r]) and a lora_B.bias.
  json cfg = {{"peft_type", "LORA"},
              {"r", 2},
              {"lora_alpha", 8},
              {"use_rslora", true},
              {"rank_pattern", {{"layers\\.1\\..*q_proj", 1}}},
              {"alpha_pattern", {{"embed_tokens", 3}}},
              {"target_modules", {"q_proj", "embed_tokens"}},
              {"lora_bias", true}};
  const std::string p = "base_model.model.model.";
  // layer 0 q_proj: r 2, scale 8 / sqrt 2; layer 1: r 1, scale 8 / 1.
  T a0{p + "layers.0.self_attn.q_proj.lora_A.weight", DType::F32, {2, 3}, {1, 2, 3, 4, 5, 6}};
  T b0{p + "layers.0.self_attn.q_proj.lora_B.weight", DType::F32, {2, 2}, {1, 0, -1, 2}};
  T bb{p + "layers.0.self_attn.q_proj.lora_B.bias", DType::F32, {2}, {0.5, -1}};
  T a1{p + "layers.1.self_attn.q_proj.lora_A.weight", DType::BF16, {1, 3}, {1, -1, 2}};
  T b1{p + "layers.1.self_attn.q_proj.lora_B.weight", DType::BF16, {2, 1}, {3, 0.5}};
  // Embedding: vocab 3, dim 2, r 2, alpha 3 -> scale 3 / sqrt 2.
  T ea{p + "embed_tokens.lora_embedding_A", DType::F32, {2, 3}, {1, 0, 2, 0, 1, -1}};
  T eb{p + "embed_tokens.lora_embedding_B", DType::F32, {2, 2}, {1, 2, 3, 4}};
  write_adapter(tmp / "ad", cfg, {a0, b0, bb, a1, b1, ea, eb});
  auto ad = lora::Adapter::open(tmp / "ad");
  ASSERT_EQ(ad->entries().size(), 4u);
  size_t i;
  const double s2 = std::sqrt(2.0);
  const auto& q0 = entry(*ad, "model.layers.0.self_attn.q_proj.weight", &i);
  EXPECT_EQ(q0.rank, 2);
  EXPECT_DOUBLE_EQ(q0.scale, 8 / s2);
  // B·A = [[1,2,3],[-1+8, -2+10, -3+12]] = [[1,2,3],[7,8,9]].
  auto d = ad->dense(i);
  const std::vector<double> ba0 = {1, 2, 3, 7, 8, 9};
  for (size_t k = 0; k < 6; ++k) EXPECT_NEAR(d[k], ba0[k] * 8 / s2, 1e-5);
  const auto& q1 = entry(*ad, "model.layers.1.self_attn.q_proj.weight", &i);
  EXPECT_EQ(q1.rank, 1);
  EXPECT_DOUBLE_EQ(q1.scale, 8.0);
  d = ad->dense(i);
  const std::vector<double> ba1 = {3, -3, 6, 0.5, -0.5, 1};
  for (size_t k = 0; k < 6; ++k) EXPECT_NEAR(d[k], ba1[k] * 8, 1e-5);
  const auto& bias = entry(*ad, "model.layers.0.self_attn.q_proj.bias", &i);
  EXPECT_EQ(bias.kind, lora::Entry::Kind::BiasDelta);
  d = ad->dense(i);
  EXPECT_NEAR(d[0], 0.5 * 8 / s2, 1e-6);
  EXPECT_NEAR(d[1], -8 / s2, 1e-6);
  // Embedding delta (B·A)ᵀ: B·A = [[1,2,0],[3,4,2]] -> [[1,3],[2,4],[0,2]] (vocab x dim).
  const auto& em = entry(*ad, "model.embed_tokens.weight", &i);
  EXPECT_TRUE(em.transposed);
  EXPECT_EQ(em.shape, (std::vector<int64_t>{3, 2}));
  d = ad->dense(i);
  const std::vector<double> emb = {1, 3, 2, 4, 0, 2};
  for (size_t k = 0; k < 6; ++k) EXPECT_NEAR(d[k], emb[k] * 3 / s2, 1e-5);
  // Partial ranges give the same values (streaming).
  std::vector<float> part(4, 0.0f);
  ad->add_elements(i, 1, 4, 1.0, part.data());
  for (size_t k = 0; k < 4; ++k) EXPECT_FLOAT_EQ(part[k], d[k + 1]);
}

TEST(Lora, RefusesWhatItCannotMerge) {
  TmpDir tmp("lora");
  T a{"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", DType::F32, {2, 3}, {1, 2, 3, 4, 5, 6}};
  T b{"base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", DType::F32, {2, 2}, {1, 0, 0, 1}};
  auto expect = [&](const std::string& name, const json& cfg, const std::vector<T>& ts, const std::string& words) {
    write_adapter(tmp / name, cfg, ts);
    try {
      lora::Adapter::open(tmp / name);
      ADD_FAILURE() << name << ": no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << name << ": " << e.what();
    }
  };
  const json ok = {{"peft_type", "LORA"}, {"r", 2}, {"lora_alpha", 2}};
  auto with = [&](const char* k, json v) {
    json c = ok;
    c[k] = std::move(v);
    return c;
  };
  expect("dora", with("use_dora", true), {a, b}, "DoRA");
  expect("fifo", with("fan_in_fan_out", true), {a, b}, "fan_in_fan_out");
  expect("ia3", with("peft_type", "IA3"), {a, b}, "only LORA");
  expect("rank", with("r", 4), {a, b}, "rank 2");
  expect("half", ok, {a}, "no matching lora_B");
  T named{"base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight", DType::F32, {2, 3}, a.values};
  expect("named", ok, {named, b}, "lora_A.default.weight");
  T mag{"base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector", DType::F32, {2}, {1, 1}};
  expect("magnitude", ok, {a, b, mag}, "DoRA");
  fs::create_directories(tmp / "bin");
  write_file_atomic(tmp / "bin" / "adapter_config.json", ok.dump());
  write_file_atomic(tmp / "bin" / "adapter_model.bin", "x");
  try {
    lora::Adapter::open(tmp / "bin");
    ADD_FAILURE() << "bin: no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("adapter_model.bin"), std::string::npos) << e.what();
  }
}

TEST(Lora, ApplyEqualsDenseArithmetic) {
  TmpDir tmp("lora");
  // Target: the small model's shapes with random values (F32 so the comparison is exact-ish).
  auto tgt = small_vector(11);
  write_model(tmp / "target", tgt, qwen_config());
  // A hand-made adapter: q_proj of layer 0 (r 2, lora_alpha 16 -> scale 8), layer 1's
  // down_proj (rank_pattern 1 -> scale 16), and model.norm in modules_to_save.
  json cfg = {{"peft_type", "LORA"}, {"r", 2}, {"lora_alpha", 16}, {"rank_pattern", {{"model.layers.1.mlp.down_proj", 1}}},
              {"modules_to_save", {"model.norm"}}};
  const std::string p = "base_model.model.model.";
  T qa{p + "layers.0.self_attn.q_proj.lora_A.weight", DType::F32, {2, 8}, randn(16, 21)};
  T qb{p + "layers.0.self_attn.q_proj.lora_B.weight", DType::BF16, {8, 2}, randn(16, 22)};
  T da{p + "layers.1.mlp.down_proj.lora_A.weight", DType::F32, {1, 12}, randn(12, 23)};
  T db{p + "layers.1.mlp.down_proj.lora_B.weight", DType::F32, {8, 1}, randn(8, 24)};
  T nw{p + "norm.weight", DType::F32, {8}, randn(8, 25)};
  write_adapter(tmp / "ad", cfg, {qa, qb, da, db, nw});
  const double alpha = 0.5;
  arith::Options o;
  o.out = tmp / "out";
  o.quiet = true;
  o.hash_inputs = false;
  lora::apply_adapters(tmp / "target", {}, {{tmp / "ad", alpha}}, o);
  auto out = io::ModelDir::open(tmp / "out");
  // Expected, computed here: W + alpha · scale · B·A (B rounded to bf16 as stored).
  auto bf = [](float x) { return bf16_to_f32(f32_to_bf16(x)); };
  auto expect_lowrank = [&](const std::string& name, const T& A, const T& B, double scale) {
    auto w = tensor_of(tgt, name);
    auto got = values(*out, name);
    const int64_t rows = B.shape[0], cols = A.shape[1], r = A.shape[0];
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) {
        double ba = 0;
        for (int64_t k = 0; k < r; ++k) {
          const float bv = B.dtype == DType::BF16 ? bf(B.values[size_t(i * r + k)]) : B.values[size_t(i * r + k)];
          ba += double(bv) * A.values[size_t(k * cols + j)];
        }
        EXPECT_NEAR(got[size_t(i * cols + j)], w[size_t(i * cols + j)] + alpha * scale * ba, 1e-5) << name;
      }
  };
  expect_lowrank("model.layers.0.self_attn.q_proj.weight", qa, qb, 16.0 / 2);
  expect_lowrank("model.layers.1.mlp.down_proj.weight", da, db, 16.0 / 1);
  // modules_to_save: alpha · full + (1 - alpha) · target.
  auto nt = tensor_of(tgt, "model.norm.weight");
  auto ng = values(*out, "model.norm.weight");
  for (size_t i = 0; i < 8; ++i) EXPECT_NEAR(ng[i], alpha * nw.values[i] + (1 - alpha) * nt[i], 1e-6);
  // Untouched tensors are copied bit for bit.
  auto o_proj = values(*out, "model.layers.0.self_attn.o_proj.weight");
  EXPECT_EQ(o_proj, tensor_of(tgt, "model.layers.0.self_attn.o_proj.weight"));
  // rvec.json records the adapter.
  auto rec = json::parse(read_file(tmp / "out" / "rvec.json"));
  EXPECT_EQ(rec["loras"][0]["alpha"], alpha);

  // An adapter entry the target lacks, or of another shape, is an error before anything is written.
  T bad{p + "layers.0.self_attn.v_proj.lora_A.weight", DType::F32, {2, 8}, randn(16, 1)};
  T badb{p + "layers.0.self_attn.v_proj.lora_B.weight", DType::F32, {4, 2}, randn(8, 2)};
  write_adapter(tmp / "bad", cfg, {bad, badb});
  o.out = tmp / "out2";
  try {
    lora::apply_adapters(tmp / "target", {}, {{tmp / "bad", 1.0}}, o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("v_proj"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(tmp / "out2"));
}

TEST(Lora, ExtractThenApplyMatchesTheVectorAndBaseTunedPath) {
  TmpDir tmp("lora");
  tiny_model(tmp / "base", 1, DType::F32);
  arith::write_perturbed(tmp / "base", 0.01, 2, tmp / "tuned", false, true);
  lora::ExtractOptions o;
  o.out = tmp / "ad";
  o.rank = 1024;  // full rank
  o.quiet = true;
  auto rep = lora::extract_from_models(tmp / "base", tmp / "tuned", o);
  EXPECT_LT(rep.total_rel_error, 1e-5);  // embeddings, norms and biases in full
  arith::Options ao;
  ao.out = tmp / "merged";
  ao.quiet = true;
  ao.hash_inputs = false;
  lora::apply_adapters(tmp / "base", {}, {{tmp / "ad", 1.0}}, ao);
  auto m = io::ModelDir::open(tmp / "merged"), t = io::ModelDir::open(tmp / "tuned");
  for (auto* x : t->tensors()) {
    auto a = values(*m, x->name), b = values(*t, x->name);
    double worst = 0;
    for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, double(std::abs(a[i] - b[i])));
    EXPECT_LT(worst, 1e-6) << x->name;
  }
}
