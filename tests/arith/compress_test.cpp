// Compact vectors (arith/compress.h): the documented layout read back directly, sparse
// top-k with its tie-break, int8 values checked by hand and against the scale/2 bound,
// round trips, apply of a compressed vector against apply of its decompressed form, and
// malformed inputs.
#include "arith/compress.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "arith/arith.h"
#include "arith_helpers.h"
#include "core/error.h"

using namespace rvec;
using namespace rvec::testing;
using nlohmann::json;

namespace {

const std::string kA = "model.layers.0.mlp.down_proj.weight";
const std::string kB = "model.norm.weight";

arith::CompressOptions copts(const fs::path& out, const std::string& method, double density = 1,
                             const std::string& scope = "tensor") {
  arith::CompressOptions o;
  o.method = method;
  o.density = density;
  o.scope = scope;
  o.out = out;
  o.quiet = true;
  return o;
}

arith::Options aopts(const fs::path& out) {
  arith::Options o;
  o.out = out;
  o.quiet = true;
  o.hash_inputs = false;
  return o;
}

std::vector<uint64_t> u32s(const io::ModelDir& m, const std::string& name) {
  const auto& t = m.get(name);
  EXPECT_EQ(t.dtype, DType::U32) << name;
  std::vector<uint64_t> v(t.numel());
  for (size_t i = 0; i < v.size(); ++i) {
    uint32_t u;
    std::memcpy(&u, t.data + 4 * i, 4);
    v[i] = u;
  }
  return v;
}

// Expects fn to throw rvec::Error whose message contains every piece.
template <class F>
void expect_error(F&& fn, std::initializer_list<std::string> pieces) {
  try {
    fn();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    for (const auto& p : pieces) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(Compress, SparseKeepsTopKWithPositionTieBreakInTheDocumentedLayout) {
  TmpDir d("cmp");
  // |x|: 0.5 3 3 1 1 | 2 0 3 0.5 1  (ties at 3: positions 1, 2, 7; at 1: positions 3, 4, 9)
  const std::vector<float> x = {0.5f, -3, 3, 1, -1, 2, 0, 3, -0.5f, 1};
  write_model(d / "v", {{kA, DType::BF16, {2, 5}, x}}, qwen_config());
  struct Case {
    double density;
    std::vector<uint64_t> idx;
  } cases[] = {{0.3, {1, 2, 7}}, {0.4, {1, 2, 5, 7}}, {0.5, {1, 2, 3, 5, 7}}, {0.6, {1, 2, 3, 4, 5, 7}}, {0.05, {}}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.density);
    const fs::path out = d / ("s" + std::to_string(c.density));
    auto r = arith::compress(d / "v", copts(out, "sparse", c.density));
    auto m = io::ModelDir::open(out);
    EXPECT_EQ(u32s(*m, kA + ".sparse_idx"), c.idx);
    const auto& val = m->get(kA + ".sparse_val");
    EXPECT_EQ(val.dtype, DType::BF16);  // the vector's dtype
    std::vector<float> want;
    for (auto i : c.idx) want.push_back(x[i]);
    EXPECT_EQ(values(*m, kA + ".sparse_val"), want);
    const auto& md = m->files()[0]->metadata();
    EXPECT_EQ(md.at("rvec_compressed"), "sparse");
    EXPECT_EQ(md.at("rvec_compressed_version"), "1");
    EXPECT_EQ(json::parse(md.at(kA + ".shape")), json::array({2, 5}));
    EXPECT_EQ(md.at(kA + ".dtype"), "BF16");
    // Error: the dropped entries' share of ‖x‖² (‖x‖² = 0.25+9+9+1+1+4+0+9+0.25+1 = 34.5).
    double kept = 0;
    for (float v : want) kept += double(v) * v;
    EXPECT_NEAR(r.total.rel_err(), std::sqrt((34.5 - kept) / 34.5), 1e-12);
    EXPECT_EQ(r.total.kept, c.idx.size());
    EXPECT_EQ(r.total.bytes, c.idx.size() * (4 + 2));
    EXPECT_EQ(r.total.dense_bytes, 20u);
  }
}

TEST(Compress, GlobalScopeRanksAcrossTensorsInFileOrder) {
  TmpDir d("cmp");
  // Entries of |x| = 2: A[1], B[0], B[2]; with k = 2 the tie goes to the earlier tensor first.
  write_model(d / "v", {{kA, DType::F32, {1, 3}, {0, 2, 1}}, {kB, DType::F32, {3}, {2, 0.5f, -2}}}, qwen_config());
  arith::compress(d / "v", copts(d / "g", "sparse", 2.0 / 6 + 1e-9, "global"));
  auto m = io::ModelDir::open(d / "g");
  EXPECT_EQ(u32s(*m, kA + ".sparse_idx"), (std::vector<uint64_t>{1}));
  EXPECT_EQ(u32s(*m, kB + ".sparse_idx"), (std::vector<uint64_t>{0}));
  arith::compress(d / "v", copts(d / "g4", "sparse", 4.0 / 6 + 1e-9, "global"));
  auto m4 = io::ModelDir::open(d / "g4");
  EXPECT_EQ(u32s(*m4, kA + ".sparse_idx"), (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(u32s(*m4, kB + ".sparse_idx"), (std::vector<uint64_t>{0, 2}));
  // Per tensor, the same density keeps floor(d·n) of each.
  arith::compress(d / "v", copts(d / "t", "sparse", 2.0 / 3 + 1e-9));
  auto mt = io::ModelDir::open(d / "t");
  EXPECT_EQ(u32s(*mt, kA + ".sparse_idx"), (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(u32s(*mt, kB + ".sparse_idx"), (std::vector<uint64_t>{0, 2}));
}

TEST(Compress, SparseDensityOneRoundTripsExactly) {
  TmpDir d("cmp");
  tiny_model(d / "a", 1);
  tiny_model(d / "b", 2);
  arith::extract(d / "a", d / "b", aopts(d / "v"));  // mixed BF16/F32 tensors
  arith::compress(d / "v", copts(d / "s", "sparse", 1.0));
  arith::decompress(d / "s", d / "back", false, true);
  EXPECT_TRUE(same_tensors(d / "v", d / "back"));
  // apply reads the compressed vector directly, bit for bit as the dense one.
  arith::apply(d / "a", {{d / "s", 0.7}}, aopts(d / "x1"));
  arith::apply(d / "a", {{d / "v", 0.7}}, aopts(d / "x2"));
  EXPECT_TRUE(same_tensors(d / "x1", d / "x2"));
}

TEST(Compress, Int8HandCheckedValues) {
  TmpDir d("cmp");
  // Row 0: absmax 2.54 -> scale 0.02, q = 127, -50, 25, 0. Row 1: zero -> scale 0, q 0.
  // Row 2: absmax 4 -> scale 4/127; 1/(4/127) = 31.75 -> 32, 0.1 -> 3.175 -> 3, 3 -> 95.25 -> 95.
  write_model(d / "v", {{kA, DType::F32, {3, 4}, {2.54f, -1, 0.5f, 0, 0, 0, 0, 0, -4, 1, 0.1f, 3}}}, qwen_config());
  auto r = arith::compress(d / "v", copts(d / "q", "int8"));
  auto m = io::ModelDir::open(d / "q");
  const auto& q = m->get(kA + ".q");
  ASSERT_EQ(q.dtype, DType::I8);
  EXPECT_EQ(q.shape, (std::vector<int64_t>{3, 4}));
  std::vector<int> qs(12);
  for (size_t i = 0; i < 12; ++i) qs[i] = int(reinterpret_cast<const int8_t*>(q.data)[i]);
  EXPECT_EQ(qs, (std::vector<int>{127, -50, 25, 0, 0, 0, 0, 0, -127, 32, 3, 95}));
  auto sc = values(*m, kA + ".scale");
  ASSERT_EQ(sc.size(), 3u);
  EXPECT_FLOAT_EQ(sc[0], 0.02f);
  EXPECT_EQ(sc[1], 0.0f);
  EXPECT_FLOAT_EQ(sc[2], 4.0f / 127);
  EXPECT_EQ(m->files()[0]->metadata().at(kA + ".dtype"), "F32");
  EXPECT_EQ(r.total.bytes, 12u + 3 * 4);
  // Decoded values: q · scale.
  arith::decompress(d / "q", d / "back", false, true);
  auto back = values(*io::ModelDir::open(d / "back"), kA);
  EXPECT_FLOAT_EQ(back[9], 32 * (4.0f / 127));
  EXPECT_FLOAT_EQ(back[1], -50 * 0.02f);
}

TEST(Compress, Int8ErrorWithinHalfAScalePerRowAndApplyMatchesDecompressed) {
  TmpDir d("cmp");
  std::vector<float> x = gaussian(48 * 40, 5);
  for (size_t i = 0; i < 40; ++i) x[7 * 40 + i] *= 100;  // one row on another scale
  std::vector<float> n = gaussian(40, 6);
  write_model(d / "v", {{kA, DType::F32, {48, 40}, x}, {kB, DType::BF16, {40}, n}}, qwen_config());
  write_model(d / "t", {{kA, DType::BF16, {48, 40}, gaussian(48 * 40, 7)}, {kB, DType::BF16, {40}, gaussian(40, 8)}},
              qwen_config());
  auto r = arith::compress(d / "v", copts(d / "q", "int8"));
  arith::decompress(d / "q", d / "back", false, true);
  auto m = io::ModelDir::open(d / "q");
  auto sc = values(*m, kA + ".scale");
  auto back = values(*io::ModelDir::open(d / "back"), kA);
  double err = 0, ss = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const float s = sc[i / 40];
    EXPECT_LE(std::fabs(x[i] - back[i]), s / 2 * (1 + 1e-5)) << i;
    err += (double(x[i]) - back[i]) * (double(x[i]) - back[i]);
    ss += double(x[i]) * x[i];
  }
  EXPECT_NEAR(r.tensors[0].rel_err(), std::sqrt(err / ss), 1e-9);
  EXPECT_GT(r.tensors[0].rel_err(), 0);
  EXPECT_EQ(values(*m, kB + ".scale").size(), 1u);  // a 1-D tensor is one row
  arith::apply(d / "t", {{d / "q", -0.5}}, aopts(d / "x1"));
  arith::apply(d / "t", {{d / "back", -0.5}}, aopts(d / "x2"));
  EXPECT_TRUE(same_tensors(d / "x1", d / "x2"));
  // And for a sparse vector (global scope) through merge --expr.
  arith::compress(d / "v", copts(d / "s", "sparse", 0.2, "global"));
  arith::decompress(d / "s", d / "sback", false, true);
  arith::merge_expr("t + 2*s", {{"t", d / "t"}, {"s", d / "s"}}, aopts(d / "y1"));
  arith::merge_expr("t + 2*s", {{"t", d / "t"}, {"s", d / "sback"}}, aopts(d / "y2"));
  EXPECT_TRUE(same_tensors(d / "y1", d / "y2"));
}

TEST(Compress, MalformedCompressedVectorsNameTheTensor) {
  TmpDir d("cmp");
  write_model(d / "t", {{kA, DType::F32, {2, 3}, {1, 2, 3, 4, 5, 6}}}, qwen_config());
  const std::string shape = "[2,3]";
  auto pack = [&](const std::string& name, std::map<std::string, std::string> md, std::vector<io::TensorSpec> specs,
                  std::vector<std::vector<uint8_t>> data) {
    fs::path p = d / name;
    fs::create_directories(p);
    std::vector<const void*> ptrs;
    for (auto& x : data) ptrs.push_back(x.data());
    io::write_safetensors_file(p / "model.safetensors", specs, ptrs, md);
    write_file_atomic(p / "config.json", qwen_config().dump());
    return p;
  };
  auto le32 = [](std::vector<uint32_t> v) {
    std::vector<uint8_t> b(v.size() * 4);
    std::memcpy(b.data(), v.data(), b.size());
    return b;
  };
  auto f32 = [](std::vector<float> v) {
    std::vector<uint8_t> b(v.size() * 4);
    std::memcpy(b.data(), v.data(), b.size());
    return b;
  };
  std::map<std::string, std::string> sp = {{"rvec_compressed", "sparse"}, {"rvec_compressed_version", "1"},
                                           {kA + ".shape", shape}, {kA + ".dtype", "F32"}};
  std::vector<io::TensorSpec> specs = {{kA + ".sparse_idx", DType::U32, {2}}, {kA + ".sparse_val", DType::F32, {2}}};
  auto apply_to = [&](const fs::path& v) { arith::apply(d / "t", {{v, 1.0}}, aopts(d / ("o-" + v.filename().string()))); };

  auto wrong = sp;
  wrong["rvec_compressed"] = "zstd";
  expect_error([&] { apply_to(pack("tag", wrong, specs, {le32({0, 1}), f32({1, 1})})); }, {"zstd", "rvec_compressed"});
  auto ver = sp;
  ver["rvec_compressed_version"] = "2";
  expect_error([&] { apply_to(pack("ver", ver, specs, {le32({0, 1}), f32({1, 1})})); }, {"version '2'"});
  expect_error([&] { apply_to(pack("range", sp, specs, {le32({0, 6}), f32({1, 1})})); },
               {kA, "index 6", "out of range"});
  expect_error([&] { apply_to(pack("order", sp, specs, {le32({3, 3}), f32({1, 1})})); }, {kA, "ascending"});
  auto noshape = sp;
  noshape.erase(kA + ".shape");
  expect_error([&] { apply_to(pack("noshape", noshape, specs, {le32({0, 1}), f32({1, 1})})); }, {kA, ".shape"});
  // The shape recorded differs from the target's: apply names the tensor and both shapes.
  auto other = sp;
  other[kA + ".shape"] = "[3,2]";
  expect_error([&] { apply_to(pack("shape", other, specs, {le32({0, 1}), f32({1, 1})})); }, {kA, "[3, 2]", "[2, 3]"});
  std::map<std::string, std::string> q8 = {{"rvec_compressed", "int8"}, {"rvec_compressed_version", "1"},
                                           {kA + ".shape", shape}, {kA + ".dtype", "F32"}};
  expect_error(
      [&] {
        apply_to(pack("q", q8, {{kA + ".q", DType::I8, {2, 2}}, {kA + ".scale", DType::F32, {2}}},
                      {std::vector<uint8_t>(4, 1), f32({1, 1})}));
      },
      {kA, "q has shape [2, 2]", "[2, 3]"});
  expect_error(
      [&] {
        apply_to(pack("scale", q8, {{kA + ".q", DType::I8, {2, 3}}, {kA + ".scale", DType::F32, {3}}},
                      {std::vector<uint8_t>(6, 1), f32({1, 1, 1})}));
      },
      {kA, "scale must be F32 with 2 entries"});
  expect_error([&] { apply_to(pack("stray", q8, {{"extra.bias", DType::F32, {1}}}, {f32({1})})); },
               {"extra.bias", "int8 layout"});
  for (const char* n : {"tag", "ver", "range", "order", "noshape", "shape", "q", "scale", "stray"})
    EXPECT_FALSE(fs::exists(d / (std::string("o-") + n))) << n;
  // A compressed vector is not a target, and cannot be compressed again or sparsified.
  arith::compress(d / "t", copts(d / "ok", "int8"));
  expect_error([&] { arith::apply(d / "ok", {{d / "t", 1.0}}, aopts(d / "o1")); }, {"compressed vector"});
  expect_error([&] { arith::compress(d / "ok", copts(d / "o2", "int8")); }, {"already a compressed vector"});
  arith::SparsifyOptions so;
  so.method = "ties";
  so.density = 0.5;
  expect_error([&] { arith::apply_sparse(d / "t", {{d / "ok", 1.0}}, so, aopts(d / "o3")); }, {"compressed vector"});
  expect_error([&] { arith::compress(d / "t", copts(d / "o4", "sparse", 0)); }, {"--density 0"});
  expect_error([&] { arith::compress(d / "t", copts(d / "o5", "zip")); }, {"--method zip"});
}
