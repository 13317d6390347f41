// Tokenizer encode throughput (MB/s of UTF-8 input) on GSM8K test questions.
//   bench_tokenizer [--tokenizer PATH] [--gsm8k FILE] [google-benchmark flags]
// Rates are per wall-clock second (UseRealTime), comparable with tools/tokenizer-oracle/bench.js.
// Defaults: tests/data/tokenizers/qwen2.5 and data/gsm8k/test.jsonl (env RVEC_GSM8K
// overrides; falls back to ../shared/data/gsm8k/test.jsonl when data/ has no copy).
#include "core/build_info.h"
#include <benchmark/benchmark.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "text/tokenizer.h"

namespace {

namespace fs = std::filesystem;
std::string g_tokenizer = std::string(RVEC_SOURCE_DIR) + "/tests/data/tokenizers/qwen2.5";
std::string g_gsm8k;

std::vector<std::string> load_questions() {
  std::vector<fs::path> cands;
  if (!g_gsm8k.empty()) cands.push_back(g_gsm8k);
  if (const char* e = std::getenv("RVEC_GSM8K")) cands.push_back(e);
  cands.push_back("data/gsm8k/test.jsonl");
  cands.push_back(fs::path(RVEC_SOURCE_DIR) / "data/gsm8k/test.jsonl");
  cands.push_back(fs::path(RVEC_SOURCE_DIR) / "../shared/data/gsm8k/test.jsonl");
  for (const auto& p : cands) {
    std::ifstream f(p);
    if (!f) continue;
    std::vector<std::string> qs;
    std::string line;
    while (std::getline(f, line))
      if (!line.empty()) qs.push_back(nlohmann::json::parse(line).at("question").get<std::string>());
    std::cerr << "bench_tokenizer: " << qs.size() << " questions from " << p.string() << "\n";
    return qs;
  }
  std::cerr << "bench_tokenizer: no GSM8K test.jsonl found (use --gsm8k FILE or RVEC_GSM8K)\n";
  std::exit(2);
}

rvec::text::Tokenizer load_tok() {
  fs::path p = g_tokenizer;
  return fs::is_directory(p) ? rvec::text::Tokenizer::from_model_dir(p) : rvec::text::Tokenizer::from_file(p);
}

// Warm: the per-word BPE cache is filled after the first pass (steady state of an eval run).
void BM_EncodeGsm8kWarm(benchmark::State& st) {
  static const auto qs = load_questions();
  static const auto tok = load_tok();
  size_t bytes = 0, tokens = 0;
  for (auto _ : st) {
    for (const auto& q : qs) {
      auto ids = tok.encode(q);
      tokens += ids.size();
      bytes += q.size();
      benchmark::DoNotOptimize(ids.data());
    }
  }
  st.SetBytesProcessed(int64_t(bytes));
  st.counters["tokens/s"] = benchmark::Counter(double(tokens), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_EncodeGsm8kWarm)->Unit(benchmark::kMillisecond)->UseRealTime();

// Cold: a fresh tokenizer (empty cache) per pass; includes no file loading.
void BM_EncodeGsm8kCold(benchmark::State& st) {
  static const auto qs = load_questions();
  std::string json_text;
  {
    fs::path p = g_tokenizer;
    if (fs::is_directory(p)) p /= "tokenizer.json";
    std::ifstream f(p, std::ios::binary);
    json_text.assign(std::istreambuf_iterator<char>(f), {});
  }
  size_t bytes = 0;
  std::optional<rvec::text::Tokenizer> tok;
  for (auto _ : st) {
    st.PauseTiming();
    tok.reset();  // destroy the previous one outside the timed region
    tok.emplace(rvec::text::Tokenizer::from_json_string(json_text, "bench"));
    st.ResumeTiming();
    for (const auto& q : qs) {
      auto ids = tok->encode(q);
      bytes += q.size();
      benchmark::DoNotOptimize(ids.data());
    }
  }
  st.SetBytesProcessed(int64_t(bytes));
}
BENCHMARK(BM_EncodeGsm8kCold)->Unit(benchmark::kMillisecond)->Iterations(3)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--tokenizer" && i + 1 < argc) {
      g_tokenizer = argv[++i];
    } else if (a == "--gsm8k" && i + 1 < argc) {
      g_gsm8k = argv[++i];
    } else {
      rest.push_back(argv[i]);
    }
  }
  int n = int(rest.size());
  benchmark::Initialize(&n, rest.data());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
