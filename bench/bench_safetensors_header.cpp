// safetensors header parsing time against the number of tensors (issue 10: it must be
// linear; the 100 MB header cap admits about 1.4 million tensors).
//   bench_safetensors_header [google-benchmark flags]
// BM_ParseHeader: io::parse_safetensors on a synthetic image of N one-element F32 tensors
// (full validation: JSON, duplicates, offsets, tiling). BM_CallbackParser: the previous
// approach (nlohmann's callback parser, used to spot duplicate names), kept here only as
// the quadratic baseline; it is run at small N because it takes minutes beyond 100k.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "io/safetensors.h"

namespace {

// u64 length + {"t0":{...},"t1":{...},...} + 4*N data bytes.
std::string make_image(int64_t n) {
  std::string h = "{";
  h.reserve(size_t(n) * 64);
  for (int64_t i = 0; i < n; ++i) {
    if (i) h += ',';
    h += "\"model.layers.t" + std::to_string(i) + "\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[" +
         std::to_string(4 * i) + "," + std::to_string(4 * i + 4) + "]}";
  }
  h += '}';
  std::string img(8, '\0');
  for (int b = 0; b < 8; ++b) img[size_t(b)] = char((uint64_t(h.size()) >> (8 * b)) & 0xff);
  img += h;
  img.append(size_t(4 * n), '\0');
  return img;
}

void BM_ParseHeader(benchmark::State& st) {
  const std::string img = make_image(st.range(0));
  for (auto _ : st) {
    auto h = rvec::io::parse_safetensors(reinterpret_cast<const uint8_t*>(img.data()), img.size(), "bench");
    benchmark::DoNotOptimize(h.tensors.data());
  }
  st.counters["header_MB"] = double(img.size()) / 1e6;
  st.SetComplexityN(st.range(0));
}
BENCHMARK(BM_ParseHeader)->RangeMultiplier(10)->Range(1000, 1000000)->Unit(benchmark::kMillisecond)
    ->Complexity(benchmark::oN)->UseRealTime();

void BM_CallbackParser(benchmark::State& st) {
  const std::string img = make_image(st.range(0));
  const char* hb = img.data() + 8;
  const size_t n = img.size() - 8 - size_t(4 * st.range(0));
  for (auto _ : st) {
    std::set<std::string> seen;
    auto j = nlohmann::json::parse(hb, hb + n, [&](int depth, nlohmann::json::parse_event_t ev, nlohmann::json& v) {
      if (ev == nlohmann::json::parse_event_t::key && depth == 1) seen.insert(v.get<std::string>());
      return true;
    });
    benchmark::DoNotOptimize(j.size());
  }
  st.SetComplexityN(st.range(0));
}
BENCHMARK(BM_CallbackParser)->Arg(2500)->Arg(5000)->Arg(10000)->Unit(benchmark::kMillisecond)
    ->Complexity(benchmark::oNSquared)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
