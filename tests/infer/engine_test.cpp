// The engine against the golden fixtures (tests/data/fixtures, copied from
// ../shared/fixtures: logits of an independent float64 numpy forward pass and of
// llama.cpp), plus internal consistency checks.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include "core/atomic_output.h"
#include "core/cpu.h"
#include "core/error.h"
#include "infer/engine.h"
#include "infer/kernels.h"
#include "infer/npy.h"
#include "io/safetensors_writer.h"
#include "isa_guard.h"

using namespace rvec;
using namespace rvec::infer;
using rvec::testing::IsaGuard;
namespace fs = std::filesystem;

namespace {

const fs::path kFix = fs::path(RVEC_TESTDATA_DIR) / "fixtures";
// Qwen3 / OLMo2 fixtures have the numpy reference only (no llama.cpp logits).
const char* kFixtures[] = {"qwen2_tiny_tied_gqa14x2", "qwen2_tiny_untied_mha4x4", "qwen2_tiny_bf16_gqa8x2",
                           "qwen3_tiny_tied_hd32",    "qwen3_tiny_untied_bf16",   "olmo2_tiny_untied_gqa"};

std::vector<std::vector<int32_t>> sequences(const std::string& fx) {
  auto j = nlohmann::json::parse(read_file(kFix / fx / "tokens.json"));
  return j["sequences"].get<std::vector<std::vector<int32_t>>>();
}

// max |a - b| / max |b|
double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double md = 0, mb = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    md = std::max(md, double(std::abs(a[i] - b[i])));
    mb = std::max(mb, double(std::abs(b[i])));
  }
  return md / mb;
}

// A copy of a model directory with every tensor converted to `dt` (and optional edits).
fs::path convert_model(const fs::path& src, const fs::path& dst, DType dt) {
  fs::remove_all(dst);
  fs::create_directories(dst);
  auto dir = io::ModelDir::open(src);
  std::vector<io::TensorSpec> specs;
  std::vector<std::vector<uint8_t>> bufs;
  std::vector<const void*> ptrs;
  for (const auto* t : dir->tensors()) {
    specs.push_back({t->name, dt, t->shape});
    std::vector<float> f(t->numel());
    to_f32(t->dtype, t->data, f.data(), f.size());
    bufs.emplace_back(f.size() * dtype_size(dt));
    from_f32(dt, f.data(), bufs.back().data(), f.size());
  }
  for (auto& b : bufs) ptrs.push_back(b.data());
  io::write_safetensors_file(dst / "model.safetensors", specs, ptrs);
  for (const char* f : {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"})
    if (fs::exists(src / f)) fs::copy_file(src / f, dst / f);
  return dst;
}

fs::path tmpdir(const std::string& name) {
  return fs::temp_directory_path() / ("rvec_infer_test_" + std::to_string(::getpid()) + "_" + name);
}

}  // namespace

TEST(Npy, RoundTripAndFixtureShape) {
  std::vector<float> d{1, 2, 3, 4, 5, 6};
  const std::string bytes = npy_bytes(d.data(), {2, 3});
  // numpy's own header for this array (np.save, format 1.0, 64-byte aligned).
  EXPECT_EQ(bytes.substr(0, 10 + 118), std::string("\x93NUMPY\x01\x00\x76\x00", 10) +
                                            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }" +
                                            std::string(58, ' ') + "\n");
  auto a = parse_npy(bytes, "mem");
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a.data, d);
  auto b = read_npy(kFix / "qwen2_tiny_tied_gqa14x2" / "logits_ref_s0.npy");
  EXPECT_EQ(b.shape, (std::vector<int64_t>{10, 1024}));
  EXPECT_THROW(parse_npy("garbage", "g"), Error);
}

// The headline check: rvec's logits equal the float64 reference within 1e-4 of the
// logit scale, for every fixture, sequence and kernel ISA (exact f32 path).
TEST(EngineFixtures, LogitsMatchReferenceOnEveryIsa) {
  IsaGuard guard;
  for (const char* fx : kFixtures) {
    auto model = load_model(kFix / fx / "model");
    Engine eng(*model);
    auto seqs = sequences(fx);
    for (CpuIsa isa : cpu_isas_supported()) {
      set_cpu_isa_for_testing(isa);
      for (size_t s = 0; s < seqs.size(); ++s) {
        auto ref = read_npy(kFix / fx / ("logits_ref_s" + std::to_string(s) + ".npy"));
        auto got = eng.logits(seqs[s]);
        ASSERT_EQ(ref.shape, (std::vector<int64_t>{int64_t(seqs[s].size()), model->config().vocab_size}));
        double e = rel_err(got, ref.data);
        EXPECT_LE(e, 1e-4) << fx << " s" << s << " isa " << cpu_isa_name(cpu_isa());
        const fs::path lcp = kFix / fx / ("logits_llamacpp_s" + std::to_string(s) + ".npy");
        if (fs::exists(lcp)) {
          EXPECT_LE(rel_err(got, read_npy(lcp).data), 1e-4) << fx << " s" << s << " vs llama.cpp";
        }
      }
    }
  }
}

// Weights read into huge-page memory are the same bytes: the same logits, bit for bit.
TEST(EngineFixtures, HugePageWeightsGiveTheSameLogits) {
  const char* fx = kFixtures[0];
  auto mapped = load_model(kFix / fx / "model");
  auto huge = load_model(kFix / fx / "model", io::Backing::HugePages);
  EXPECT_EQ(huge->dir().files()[0]->mapped().backing(), io::Backing::HugePages);
  Engine a(*mapped), b(*huge);
  for (const auto& seq : sequences(fx)) EXPECT_EQ(a.logits(seq), b.logits(seq));
}

// Every matrix stored as column blocks (RVEC_COLUMN_BLOCKS=WIDTH,MIN_COLS; model/column_blocks.h)
// still gives the reference logits, through the prefill shapes and token-by-token decode (the
// single-region gemv over blocks), on each kernel path.
TEST(EngineFixtures, ColumnBlockedWeightsMatchReferenceOnEveryIsa) {
  IsaGuard guard;
  struct EnvGuard {
    ~EnvGuard() { ::unsetenv("RVEC_COLUMN_BLOCKS"); }
  } env;
  ::setenv("RVEC_COLUMN_BLOCKS", "32,0", 1);
  for (const char* fx : kFixtures) {
    auto model = load_model(kFix / fx / "model");
    const auto& l0 = model->weights().layers[0];
    ASSERT_EQ(l0.down.w.kblock, 32) << fx;
    ASSERT_GT(l0.down.w.blocks(), 1) << fx;
    Engine eng(*model);
    const int64_t V = model->config().vocab_size;
    auto seqs = sequences(fx);
    for (CpuIsa isa : cpu_isas_supported()) {
      set_cpu_isa_for_testing(isa);
      for (size_t s = 0; s < seqs.size(); ++s) {
        auto ref = read_npy(kFix / fx / ("logits_ref_s" + std::to_string(s) + ".npy"));
        EXPECT_LE(rel_err(eng.logits(seqs[s]), ref.data), 1e-4) << fx << " s" << s << " " << cpu_isa_name(isa);
        KVCache kv;
        std::vector<float> got;
        for (int32_t t : seqs[s]) {
          auto l = eng.step({&kv}, {{t}})[0];
          ASSERT_EQ(int64_t(l.size()), V);
          got.insert(got.end(), l.begin(), l.end());
        }
        EXPECT_LE(rel_err(got, ref.data), 1e-4) << fx << " s" << s << " decode " << cpu_isa_name(isa);
      }
    }
  }
  ::setenv("RVEC_COLUMN_BLOCKS", "off", 1);
  EXPECT_EQ(load_model(kFix / kFixtures[0] / "model")->weights().layers[0].down.w.kblock, 0);
  ::setenv("RVEC_COLUMN_BLOCKS", "32x", 1);
  EXPECT_THROW(load_model(kFix / kFixtures[0] / "model"), rvec::Error);
}

TEST(EngineFixtures, HiddenStatesMatchReferencePerLayer) {
  for (const char* fx : kFixtures) {
    auto model = load_model(kFix / fx / "model");
    Engine eng(*model);
    auto seqs = sequences(fx);
    for (size_t s = 0; s < seqs.size(); ++s) {
      auto ref = read_npy(kFix / fx / ("hidden_ref_s" + std::to_string(s) + ".npy"));
      auto got = eng.hidden_states(seqs[s]);
      ASSERT_EQ(got.size(), ref.data.size());
      const int64_t per = ref.shape[1] * ref.shape[2];
      for (int64_t l = 0; l < ref.shape[0]; ++l) {
        std::vector<float> a(got.begin() + l * per, got.begin() + (l + 1) * per);
        std::vector<float> b(ref.data.begin() + l * per, ref.data.begin() + (l + 1) * per);
        EXPECT_LE(rel_err(a, b), 1e-4) << fx << " s" << s << " layer " << l;
      }
    }
  }
}

// bf16 fixture with bf16-rounded activations (vdpbf16ps): within 2e-2 of the reference,
// like llama.cpp's own bf16 computation.
TEST(EngineFixtures, Bf16DotPathWithinBf16Tolerance) {
  if (!cpu_has_bf16_dot()) GTEST_SKIP() << "no bf16 dot product (AVX512-BF16, Arm BF16)";
  const char* fx = "qwen2_tiny_bf16_gqa8x2";
  auto model = load_model(kFix / fx / "model");
  auto seqs = sequences(fx);
  set_matmul_precision(MatmulPrecision::BF16Dot);
  // With a bf16 KV cache the attention takes bf16 dot products too (head size 256 / 8 = 32).
  for (DType kv : {DType::F32, DType::BF16}) {
    Engine eng(*model, {.kv_dtype = kv});
    for (size_t s = 0; s < seqs.size(); ++s) {
      auto ref = read_npy(kFix / fx / ("logits_ref_s" + std::to_string(s) + ".npy"));
      auto got = eng.logits(seqs[s]);
      double e = rel_err(got, ref.data);
      EXPECT_LE(e, 2e-2) << s << " " << dtype_name(kv);
      EXPECT_GT(e, 1e-7) << s;  // the fast path is really in use
    }
  }
  set_matmul_precision(MatmulPrecision::F32);
}

// --kv-cache-dtype bf16 / f16: keys and values are rounded to nearest even when stored and
// widened when read, so the logits move by that rounding only: within bf16's relative error (8
// significant bits) and f16's (11) of the reference, f16 closer than bf16, and not the f32
// cache's logits (the narrow cache is really in use). Every ISA, every fixture architecture.
TEST(EngineFixtures, SixteenBitKvCachesWithinTheirRounding) {
  IsaGuard guard;
  for (const char* fx : kFixtures) {
    auto model = load_model(kFix / fx / "model");
    Engine f32(*model), bf16(*model, {.kv_dtype = DType::BF16}), f16(*model, {.kv_dtype = DType::F16});
    auto seqs = sequences(fx);
    for (CpuIsa isa : cpu_isas_supported()) {
      set_cpu_isa_for_testing(isa);
      double worst_bf16 = 0, worst_f16 = 0;
      for (size_t s = 0; s < seqs.size(); ++s) {
        const auto ref = read_npy(kFix / fx / ("logits_ref_s" + std::to_string(s) + ".npy")).data;
        const auto exact = f32.logits(seqs[s]), b = bf16.logits(seqs[s]), h = f16.logits(seqs[s]);
        const double eb = rel_err(b, ref), eh = rel_err(h, ref);
        EXPECT_LE(eb, 1e-2) << fx << " s" << s << " " << cpu_isa_name(isa);
        EXPECT_LE(eh, 2e-3) << fx << " s" << s << " " << cpu_isa_name(isa);
        EXPECT_GT(rel_err(b, exact), 1e-6) << fx << " s" << s;
        EXPECT_GT(rel_err(h, exact), 1e-7) << fx << " s" << s;
        worst_bf16 = std::max(worst_bf16, eb);
        worst_f16 = std::max(worst_f16, eh);
      }
      EXPECT_LT(worst_f16, worst_bf16) << fx << " " << cpu_isa_name(isa);
    }
  }
}

TEST(EngineConsistency, PrefillPlusDecodeEqualsFullPrefill) {
  const char* fx = "qwen2_tiny_tied_gqa14x2";
  auto model = load_model(kFix / fx / "model");
  Engine eng(*model);
  auto seq = sequences(fx)[1];
  const int64_t V = model->config().vocab_size;
  auto full = eng.logits(seq);
  KVCache kv;
  const size_t split = 11;
  auto pre = eng.step({&kv}, {std::vector<int32_t>(seq.begin(), seq.begin() + split)}, true)[0];
  ASSERT_EQ(pre.size(), split * V);
  std::vector<float> got = pre;
  for (size_t t = split; t < seq.size(); ++t) {
    auto l = eng.step({&kv}, {{seq[t]}})[0];
    got.insert(got.end(), l.begin(), l.end());
  }
  EXPECT_EQ(kv.size(), int64_t(seq.size()));
  EXPECT_LE(rel_err(got, full), 1e-5);
}

// Past kAttPartition (512) positions a decode row's attention is split into partitions, computed
// as separate items on the team and merged per KV head: with two KV heads and 1100 positions
// (three partitions), the decoded logits equal the full prefill's, which takes each head whole.
TEST(EngineConsistency, LongContextDecodeEqualsFullPrefill) {
  const char* fx = "qwen2_tiny_tied_gqa14x2";
  auto model = load_model(kFix / fx / "model");
  Engine eng(*model);
  const int64_t V = model->config().vocab_size;
  std::mt19937 g(11);
  std::vector<int32_t> seq(1100);
  for (auto& t : seq) t = int32_t(g() % uint32_t(V));
  const auto full = eng.logits(seq);
  KVCache kv;
  const size_t split = 1090;
  eng.step({&kv}, {std::vector<int32_t>(seq.begin(), seq.begin() + split)});
  std::vector<float> got, want(full.begin() + split * V, full.end());
  for (size_t t = split; t < seq.size(); ++t) {
    auto l = eng.step({&kv}, {{seq[t]}})[0];
    got.insert(got.end(), l.begin(), l.end());
  }
  EXPECT_LE(rel_err(got, want), 1e-5);
}

TEST(EngineConsistency, BatchedDecodeEqualsOneAtATime) {
  const char* fx = "qwen2_tiny_untied_mha4x4";
  auto model = load_model(kFix / fx / "model");
  for (DType kv_dtype : {DType::F32, DType::BF16}) {  // also with a bf16 KV cache
    Engine eng(*model, {.kv_dtype = kv_dtype});
    auto seqs = sequences(fx);
    // Three sequences of different lengths, prefilled together, then decoded together.
    std::vector<KVCache> kv(3);
    std::vector<std::vector<int32_t>> prompts{{seqs[0].begin(), seqs[0].begin() + 4},
                                              {seqs[1].begin(), seqs[1].begin() + 9},
                                              {seqs[2].begin(), seqs[2].begin() + 2}};
    eng.step({&kv[0], &kv[1], &kv[2]}, prompts);
    std::vector<std::vector<float>> batched(3);
    for (int t = 0; t < 5; ++t) {
      auto out = eng.step({&kv[0], &kv[1], &kv[2]}, {{seqs[0][4 + t]}, {seqs[1][9 + t]}, {seqs[2][2 + t]}});
      for (int i = 0; i < 3; ++i) batched[i].insert(batched[i].end(), out[i].begin(), out[i].end());
    }
    for (int i = 0; i < 3; ++i) {
      KVCache one;
      eng.step({&one}, {prompts[i]});
      std::vector<float> single;
      const size_t p = prompts[i].size();
      for (int t = 0; t < 5; ++t) {
        auto l = eng.step({&one}, {{seqs[i][p + t]}})[0];
        single.insert(single.end(), l.begin(), l.end());
      }
      // The products' last bits depend on the batch's row count (the kernels differ), and a key
      // or value that lands on the other side of a bf16 rounding boundary moves by 2^-9 relative.
      EXPECT_LE(rel_err(batched[i], single), kv_dtype == DType::F32 ? 1e-5 : 1e-3)
          << i << " " << dtype_name(kv_dtype);
    }
  }
}

TEST(EngineConsistency, Bf16CopyAgreesWithF32WithinBf16Error) {
  const char* fx = "qwen2_tiny_tied_gqa14x2";
  auto dst = convert_model(kFix / fx / "model", tmpdir("bf16"), DType::BF16);
  auto f32 = load_model(kFix / fx / "model");
  auto bf = load_model(dst);
  EXPECT_EQ(bf->weights().layers[0].q.w.dtype, DType::BF16);
  Engine e1(*f32), e2(*bf);
  auto seq = sequences(fx)[1];
  double e = rel_err(e2.logits(seq), e1.logits(seq));
  EXPECT_LE(e, 2e-2);
  EXPECT_GT(e, 1e-6);  // the copy really is rounded
  // F16 copy: same, tighter.
  auto dst16 = convert_model(kFix / fx / "model", tmpdir("f16"), DType::F16);
  auto f16 = load_model(dst16);
  Engine e3(*f16);
  EXPECT_LE(rel_err(e3.logits(seq), e1.logits(seq)), 5e-3);
  fs::remove_all(dst);
  fs::remove_all(dst16);
}

// The same weights as a LlamaForCausalLM with attention_bias (zero o_proj bias) give the
// Qwen2 reference logits: the Llama code path binds and runs the same computation.
TEST(EngineFixtures, LlamaArchitectureWithAttentionBiasMatchesQwen2Reference) {
  const char* fx = "qwen2_tiny_untied_mha4x4";
  fs::path src = kFix / fx / "model", dst = tmpdir("llama");
  fs::remove_all(dst);
  fs::create_directories(dst);
  auto dir = io::ModelDir::open(src);
  auto cfg = dir->config();
  cfg["architectures"] = {"LlamaForCausalLM"};
  cfg["model_type"] = "llama";
  cfg["attention_bias"] = true;
  write_file_atomic(dst / "config.json", cfg.dump());
  std::vector<io::TensorSpec> specs;
  std::vector<const void*> ptrs;
  std::vector<std::vector<float>> zeros;
  for (const auto* t : dir->tensors()) {
    specs.push_back({t->name, t->dtype, t->shape});
    ptrs.push_back(t->data);
  }
  for (int l = 0; l < cfg["num_hidden_layers"].get<int>(); ++l) {
    zeros.emplace_back(cfg["hidden_size"].get<int>(), 0.f);
    specs.push_back({"model.layers." + std::to_string(l) + ".self_attn.o_proj.bias", DType::F32,
                     {cfg["hidden_size"].get<int64_t>()}});
    ptrs.push_back(zeros.back().data());
  }
  io::write_safetensors_file(dst / "model.safetensors", specs, ptrs);
  auto model = load_model(dst);
  EXPECT_EQ(model->config().arch, model::Arch::Llama);
  Engine eng(*model);
  auto seqs = sequences(fx);
  auto ref = read_npy(kFix / fx / "logits_ref_s1.npy");
  EXPECT_LE(rel_err(eng.logits(seqs[1]), ref.data), 1e-4);
  fs::remove_all(dst);
}

TEST(EngineGenerate, GreedyMatchesArgmaxOfLogitsAndStops) {
  const char* fx = "qwen2_tiny_tied_gqa14x2";
  auto model = load_model(kFix / fx / "model");
  EXPECT_EQ(model->eos_ids(), (std::vector<int32_t>{1023}));
  Engine eng(*model, {.threads = 0, .max_batch = 2, .max_context = 4096});
  auto prompt = sequences(fx)[1];
  const int64_t V = model->config().vocab_size;
  // Expected greedy continuation by repeated full forward passes.
  std::vector<int32_t> ctx = prompt, expect;
  for (int i = 0; i < 6; ++i) {
    auto lg = eng.logits(ctx);
    const float* last = lg.data() + (ctx.size() - 1) * V;
    int32_t t = int32_t(std::max_element(last, last + V) - last);
    expect.push_back(t);
    ctx.push_back(t);
  }
  // Several requests (more than max_batch, so some join later) all give the same answer.
  std::vector<GenerationRequest> reqs(5);
  for (auto& r : reqs) {
    r.prompt = prompt;
    r.max_new_tokens = 6;
  }
  reqs[3].max_new_tokens = 2;
  reqs[4].prompt = sequences(fx)[0];
  std::map<size_t, GenerationResult> res;
  eng.generate(reqs, [&](size_t i, GenerationResult r) { res[i] = std::move(r); });
  ASSERT_EQ(res.size(), 5u);
  for (size_t i : {0, 1, 2}) {
    EXPECT_EQ(res[i].tokens, expect) << i;
    EXPECT_EQ(res[i].finish_reason, "length");
    EXPECT_EQ(res[i].text, model->tokenizer()->decode(expect));
  }
  EXPECT_EQ(res[3].tokens, std::vector<int32_t>(expect.begin(), expect.begin() + 2));

  // Stop token: the second greedy token as a stop token ends generation there.
  GenerationRequest st;
  st.prompt = prompt;
  st.max_new_tokens = 6;
  st.stop_tokens = {expect[1]};
  if (expect[0] != expect[1]) {
    eng.generate({st}, [&](size_t, GenerationResult r) {
      EXPECT_EQ(r.finish_reason, "stop_token");
      EXPECT_EQ(r.tokens, std::vector<int32_t>(expect.begin(), expect.begin() + 2));
      EXPECT_EQ(r.text, model->tokenizer()->decode(std::vector<int32_t>{expect[0]}));
    });
  }
  // Stop string: the text of the third token cuts the output before it.
  std::string t012 = model->tokenizer()->decode(std::vector<int32_t>(expect.begin(), expect.begin() + 3));
  std::string t01 = model->tokenizer()->decode(std::vector<int32_t>(expect.begin(), expect.begin() + 2));
  std::string stop = t012.substr(t01.size());
  if (!stop.empty() && t01.find(stop) == std::string::npos) {
    GenerationRequest ss;
    ss.prompt = prompt;
    ss.max_new_tokens = 6;
    ss.stop_strings = {"\x01never", stop};
    eng.generate({ss}, [&](size_t, GenerationResult r) {
      EXPECT_EQ(r.finish_reason, "stop_string");
      EXPECT_EQ(r.text, t01);
      EXPECT_EQ(r.tokens.size(), 3u);
    });
  }
}

TEST(EngineGenerate, SamplingIsReproduciblePerSeed) {
  const char* fx = "qwen2_tiny_tied_gqa14x2";
  auto model = load_model(kFix / fx / "model");
  Engine eng(*model, {.threads = 0, .max_batch = 4, .max_context = 4096});
  GenerationRequest r;
  r.prompt = sequences(fx)[0];
  r.max_new_tokens = 12;
  r.sampling = {.temperature = 1.0f, .top_p = 0.9f, .top_k = 50, .seed = 7};
  std::vector<GenerationRequest> reqs{r, r, r};
  reqs[1].sampling.seed = 8;
  std::map<size_t, std::vector<int32_t>> out;
  eng.generate(reqs, [&](size_t i, GenerationResult g) { out[i] = g.tokens; });
  EXPECT_EQ(out[0], out[2]);  // same seed, same tokens, whatever the batch
  EXPECT_NE(out[0], out[1]);
  std::vector<int32_t> alone;
  eng.generate({r}, [&](size_t, GenerationResult g) { alone = g.tokens; });
  EXPECT_EQ(alone, out[0]);
}

TEST(Sampling, TopKTopPAndGreedy) {
  std::vector<float> l{0.f, 2.f, 1.f, 2.f};
  EXPECT_EQ(sample_token(l.data(), 4, {}, 0.5), 1);  // greedy: first max
  // top_k = 1: always the best token regardless of u.
  for (double u : {0.0, 0.3, 0.999}) EXPECT_EQ(sample_token(l.data(), 4, {1.f, 1.f, 1, 0}, u), 1);
  // Probabilities at T=1: e^0, e^2, e^1, e^2 over Z; without top-k/top-p filtering the
  // draw walks the vocabulary in id order: [0, p0) -> 0, [p0, p0+p1) -> 1, ...
  const double Z = 1 + 2 * std::exp(2.0) + std::exp(1.0);
  const double p0 = 1 / Z, p1 = std::exp(2.0) / Z, p2 = std::exp(1.0) / Z;
  EXPECT_EQ(sample_token(l.data(), 4, {1.f, 1.f, 0, 0}, p0 * 0.99), 0);
  EXPECT_EQ(sample_token(l.data(), 4, {1.f, 1.f, 0, 0}, p0 * 1.01), 1);
  EXPECT_EQ(sample_token(l.data(), 4, {1.f, 1.f, 0, 0}, (p0 + p1 + p2) * 0.99), 2);
  EXPECT_EQ(sample_token(l.data(), 4, {1.f, 1.f, 0, 0}, 0.999), 3);
  // Temperature 0.5 sharpens: p(1) = e^4 / (1 + 2e^4 + e^2).
  const double q0 = 1 / (1 + 2 * std::exp(4.0) + std::exp(2.0));
  EXPECT_EQ(sample_token(l.data(), 4, {0.5f, 1.f, 0, 0}, q0 * 0.99), 0);
  EXPECT_EQ(sample_token(l.data(), 4, {0.5f, 1.f, 0, 0}, q0 * 1.01), 1);
  // top_p = 0.5: candidates sorted by probability (1, 3, 2, 0); p1 = 0.395 < 0.5 <= p1 + p3,
  // so only 1 and 3 remain, each with probability 1/2.
  EXPECT_EQ(sample_token(l.data(), 4, {1.f, 0.5f, 0, 0}, 0.999), 3);
  EXPECT_EQ(sample_token(l.data(), 4, {1.f, 0.5f, 0, 0}, 0.49), 1);
}

TEST(EngineScore, LoglikelihoodMatchesLogSoftmaxOfLogits) {
  const char* fx = "qwen2_tiny_untied_mha4x4";
  auto model = load_model(kFix / fx / "model");
  Engine eng(*model, {.threads = 0, .max_batch = 8, .max_context = 4096});
  auto seq = sequences(fx)[1];
  auto ref = read_npy(kFix / fx / "logits_ref_s1.npy");
  const int64_t V = ref.shape[1];
  std::vector<std::pair<std::vector<int32_t>, std::vector<int32_t>>> reqs;
  std::vector<double> expect_lp;
  std::vector<bool> expect_greedy;
  for (size_t split : {1u, 5u, 20u}) {
    for (size_t len : {1u, 3u}) {
      std::vector<int32_t> ctx(seq.begin(), seq.begin() + split), cont(seq.begin() + split, seq.begin() + split + len);
      double lp = 0;
      bool greedy = true;
      for (size_t j = 0; j < len; ++j) {
        const float* l = ref.data.data() + (split - 1 + j) * V;
        double mx = *std::max_element(l, l + V), s = 0;
        for (int64_t v = 0; v < V; ++v) s += std::exp(double(l[v]) - mx);
        lp += double(l[cont[j]]) - mx - std::log(s);
        greedy = greedy && std::max_element(l, l + V) - l == cont[j];
      }
      reqs.push_back({ctx, cont});
      expect_lp.push_back(lp);
      expect_greedy.push_back(greedy);
    }
  }
  std::map<size_t, Engine::Loglik> got;
  eng.loglikelihood(reqs, [&](size_t i, Engine::Loglik r) { got[i] = r; });
  ASSERT_EQ(got.size(), reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_NEAR(got[i].logprob, expect_lp[i], 1e-3) << i;
    EXPECT_EQ(got[i].is_greedy, expect_greedy[i]) << i;
  }
}

TEST(EngineErrors, BadTokensAndUnsupportedModels) {
  auto model = load_model(kFix / "qwen2_tiny_tied_gqa14x2" / "model");
  Engine eng(*model);
  EXPECT_THROW(eng.logits({5, 2000}), Error);
  EXPECT_THROW(load_model(kFix / "does_not_exist"), Error);
}

// Requests sharing a context (multiple choice) reuse one prefilled KV cache; the results
// equal scoring each request on its own.
TEST(EngineScore, SharedContextsGiveTheSameResultsAsSeparateCalls) {
  const char* fx = "qwen2_tiny_tied_gqa14x2";
  auto model = load_model(kFix / fx / "model");
  Engine eng(*model, {.threads = 0, .max_batch = 2, .max_context = 4096});
  auto seq = sequences(fx)[1];
  std::vector<int32_t> ctx(seq.begin(), seq.begin() + 12), other(seq.begin(), seq.begin() + 5);
  std::vector<std::pair<std::vector<int32_t>, std::vector<int32_t>>> reqs{
      {ctx, {seq[12]}}, {other, {seq[5], seq[6]}}, {ctx, {seq[13], seq[14], seq[15]}},
      {ctx, {7, 8}},    {ctx, {seq[12], seq[13]}}};
  std::map<size_t, Engine::Loglik> together;
  eng.loglikelihood(reqs, [&](size_t i, Engine::Loglik r) { together[i] = r; });
  ASSERT_EQ(together.size(), reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i) {
    Engine::Loglik alone{};
    eng.loglikelihood({reqs[i]}, [&](size_t, Engine::Loglik r) { alone = r; });
    EXPECT_NEAR(together[i].logprob, alone.logprob, 1e-5) << i;
    EXPECT_EQ(together[i].is_greedy, alone.is_greedy) << i;
  }
  // Independent check of request 4 against the reference logits of the full sequence.
  auto ref = read_npy(kFix / fx / "logits_ref_s1.npy");
  const int64_t V = ref.shape[1];
  double lp = 0;
  for (int j = 0; j < 2; ++j) {
    const float* l = ref.data.data() + (11 + j) * V;
    double mx = *std::max_element(l, l + V), s = 0;
    for (int64_t v = 0; v < V; ++v) s += std::exp(double(l[v]) - mx);
    lp += double(l[seq[12 + j]]) - mx - std::log(s);
  }
  EXPECT_NEAR(together[4].logprob, lp, 1e-3);
}

TEST(EngineGenerate, SharedPromptPrefixGivesTheSameTokens) {
  // Few-shot-like prompts: a common 40-token prefix, then different questions (one prompt
  // is the prefix plus one token; one is too long for the context and is left-truncated,
  // so it cannot use the shared prefix).
  const char* fx = "qwen2_tiny_tied_gqa14x2";
  auto model = load_model(kFix / fx / "model");
  auto seq = sequences(fx)[0];
  std::vector<int32_t> prefix;
  for (int i = 0; i < 40; ++i) prefix.push_back(seq[size_t(i) % seq.size()] + i % 3);
  std::vector<GenerationRequest> reqs;
  for (int q = 0; q < 5; ++q) {
    GenerationRequest r;
    r.prompt = prefix;
    for (int t = 0; t <= q * 3; ++t) r.prompt.push_back(int32_t(7 + 11 * q + t));
    r.max_new_tokens = 8;
    reqs.push_back(r);
  }
  reqs[4].prompt.insert(reqs[4].prompt.end(), 200, 5);  // 256-token context: truncated
  auto run = [&](bool share, int batch) {
    Engine eng(*model, {.threads = 0, .max_batch = batch, .max_context = 256, .share_prefix = share});
    std::map<size_t, std::vector<int32_t>> out;
    eng.generate(reqs, [&](size_t i, GenerationResult g) { out[i] = g.tokens; });
    return out;
  };
  auto plain = run(false, 4), shared = run(true, 4), shared1 = run(true, 1);
  ASSERT_EQ(plain.size(), reqs.size());
  EXPECT_EQ(shared, plain);
  EXPECT_EQ(shared1, plain);
  // and the same as each prompt alone
  Engine eng(*model, {.threads = 0, .max_batch = 1, .max_context = 256, .share_prefix = false});
  for (size_t i = 0; i < reqs.size(); ++i)
    eng.generate({reqs[i]}, [&](size_t, GenerationResult g) { EXPECT_EQ(g.tokens, plain[i]) << i; });
}

// The new architectures' distinguishing pieces matter at this tolerance: the fixtures'
// meta.json records how far the reference moves without them (q/k norms, OLMo2's
// post-block norms), and each is far above 1e-4.
TEST(EngineFixtures, NewArchitectureFeaturesAreVisibleInTheReference) {
  for (const char* fx : {"qwen3_tiny_tied_hd32", "qwen3_tiny_untied_bf16", "olmo2_tiny_untied_gqa"}) {
    auto meta = nlohmann::json::parse(read_file(kFix / fx / "meta.json"));
    for (const auto& r : meta["reference"]) {
      EXPECT_GT(r["rel_change_without_qknorm"].get<double>(), 1e-2) << fx;
      if (std::string(fx).rfind("olmo2", 0) == 0) {
        EXPECT_GT(r["rel_change_without_postnorm"].get<double>(), 1e-2) << fx;
      }
    }
    auto model = load_model(kFix / fx / "model");
    const auto& c = model->config();
    if (std::string(fx).rfind("qwen3", 0) == 0) {
      EXPECT_EQ(c.qk_norm, model::QkNorm::PerHead);
      EXPECT_FALSE(c.qkv_bias);
    } else {
      EXPECT_EQ(c.qk_norm, model::QkNorm::Full);
      EXPECT_TRUE(c.post_block_norms);
    }
  }
  // Qwen3 with head_dim independent of hidden / heads (4 heads x 32 = 128 != hidden 96).
  auto m = load_model(kFix / "qwen3_tiny_tied_hd32" / "model");
  EXPECT_NE(m->config().head_dim * m->config().num_heads, m->config().hidden_size);
}

TEST(EngineConsistency, NewArchitecturesPrefillPlusDecodeEqualsFullPrefill) {
  for (const char* fx : {"qwen3_tiny_tied_hd32", "olmo2_tiny_untied_gqa"}) {
    auto model = load_model(kFix / fx / "model");
    Engine eng(*model);
    auto seq = sequences(fx)[1];
    auto full = eng.logits(seq);
    KVCache kv;
    const size_t split = 7;
    auto got = eng.step({&kv}, {std::vector<int32_t>(seq.begin(), seq.begin() + split)}, true)[0];
    for (size_t t = split; t < seq.size(); ++t) {
      auto l = eng.step({&kv}, {{seq[t]}})[0];
      got.insert(got.end(), l.begin(), l.end());
    }
    EXPECT_LE(rel_err(got, full), 1e-5) << fx;
  }
}
