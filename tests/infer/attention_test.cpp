// The tiled attention kernel (infer/attention.h) against hand-derived cases and a double-precision
// naive reference (whole score rows, one softmax), on every ISA, up to 5000 positions; and the
// invariances the engine relies on: split partitions merge to the same bits, and a row's result
// does not depend on the other rows computed with it.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <random>
#include <tuple>

#include "core/cpu.h"
#include "core/dtype.h"
#include "core/error.h"
#include "infer/attention.h"
#include "infer/kernels.h"
#include "isa_guard.h"

using namespace rvec;
using namespace rvec::infer;
using rvec::testing::IsaGuard;

namespace {


struct Case {
  int64_t heads, hd, rows, pos0;
  int64_t ldq() const { return heads * hd + 3; }
  int64_t ldkv() const { return hd + 5; }
  int64_t T() const { return pos0 + rows; }
};

struct Data {
  std::vector<float> q, k, v;
};

Data att_data(const Case& c, unsigned seed, float spread = 1.f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd(0.f, spread);
  Data d{std::vector<float>(c.rows * c.ldq()), std::vector<float>(c.T() * c.ldkv()),
         std::vector<float>(c.T() * c.ldkv())};
  for (auto* vec : {&d.q, &d.k, &d.v})
    for (auto& x : *vec) x = nd(g);
  return d;
}

AttentionArgs args(const Case& c, const Data& d, float scale) {
  return {d.q.data(), c.ldq(), c.heads, c.hd, d.k.data(), d.v.data(), c.ldkv(), c.rows, c.pos0, scale};
}

// Naive reference in double: the whole score row, max-subtracted softmax, weighted sum.
std::vector<double> reference(const Case& c, const Data& d, float scale) {
  std::vector<double> want(c.rows * c.heads * c.hd);
  for (int64_t r = 0; r < c.rows; ++r)
    for (int64_t h = 0; h < c.heads; ++h) {
      const int64_t n = c.pos0 + r + 1;
      std::vector<double> s(n);
      double mx = -1e300, sum = 0;
      for (int64_t t = 0; t < n; ++t) {
        for (int64_t i = 0; i < c.hd; ++i) s[t] += double(d.q[r * c.ldq() + h * c.hd + i]) * d.k[t * c.ldkv() + i];
        s[t] *= scale;
        mx = std::max(mx, s[t]);
      }
      for (auto& x : s) sum += x = std::exp(x - mx);
      for (int64_t i = 0; i < c.hd; ++i) {
        double o = 0;
        for (int64_t t = 0; t < n; ++t) o += s[t] / sum * d.v[t * c.ldkv() + i];
        want[(r * c.heads + h) * c.hd + i] = o;
      }
    }
  return want;
}

// G KV heads' keys and values in cache rows of G * hd floats (row-major, positions 0 .. pos0 +
// rows - 1) and the queries of G * heads heads (d.q, rows of Case::ldq()).
struct CacheData {
  Data d;
  std::vector<float> k, v;
};
CacheData cache_data(int64_t G, int64_t heads, int64_t hd, int64_t rows, int64_t pos0, unsigned seed) {
  const size_t n = size_t((pos0 + rows) * G * hd);
  CacheData c{att_data(Case{G * heads, hd, rows, pos0}, seed, 2.f), std::vector<float>(n), std::vector<float>(n)};
  for (size_t i = 0; i < n; ++i) {
    c.k[i] = c.d.k[i % c.d.k.size()];
    c.v[i] = c.d.v[(i * 5) % c.d.v.size()];
  }
  return c;
}

// Row-major keys transposed in tiles as the engine caches them (attention_key_index); the
// unwritten lanes of the last tile hold `fill`.
template <class T>
std::vector<T> tile_keys(const std::vector<T>& k, int64_t positions, int64_t ldkv, T fill) {
  std::vector<T> kt(size_t(attention_key_floats(positions, ldkv)), fill);
  for (int64_t t = 0; t < positions; ++t)
    for (int64_t c = 0; c < ldkv; ++c) kt[size_t(attention_key_index(t, c, ldkv))] = k[size_t(t * ldkv + c)];
  return kt;
}

// a's result computed partition by partition, the last first, and merged (n floats of output).
std::vector<float> merged_partitions(const AttentionArgs& a, int64_t ldo, size_t n) {
  const int64_t np = attention_partitions(a), stride = attention_partial_floats(a);
  std::vector<float> partials(size_t(np * stride)), out(n);
  for (int64_t j = np - 1; j >= 0; --j) attention_partial(a, j, partials.data() + j * stride);
  attention_merge(a, partials.data(), stride, out.data(), ldo);
  return out;
}

std::vector<float> run(const Case& c, const Data& d, float scale, int64_t ldo) {
  std::vector<float> out(c.rows * ldo, -7.f);
  attention(args(c, d, scale), out.data(), ldo);
  return out;
}

}  // namespace

// Hand-derived: scores 0 and ln 3 give weights 1/4 and 3/4; the first row of a causal block sees
// only position 0 (its value exactly); a score gap of 200 leaves the smaller weight below 1e-80.
TEST(Attention, HandDerivedCases) {
  IsaGuard guard;
  for (CpuIsa isa : cpu_isas_supported()) {
    set_cpu_isa_for_testing(isa);
    for (int64_t hd : {3, 16, 64}) {
      const Case c{1, hd, 2, 0};
      Data d{std::vector<float>(c.rows * c.ldq(), 0.f), std::vector<float>(c.T() * c.ldkv(), 0.f),
             std::vector<float>(c.T() * c.ldkv(), 0.f)};
      d.q[0] = std::log(3.f);  // row 0
      d.q[c.ldq()] = std::log(3.f);  // row 1
      d.k[c.ldkv()] = 1.f;           // k0 = 0, k1 = e0: scores 0 and ln 3
      for (int64_t i = 0; i < hd; ++i) {
        d.v[i] = float(i + 1);
        d.v[c.ldkv() + i] = -2.f * float(i);
      }
      auto out = run(c, d, 1.f, hd);
      for (int64_t i = 0; i < hd; ++i) {
        EXPECT_EQ(out[i], float(i + 1)) << cpu_isa_name(isa) << " hd=" << hd;  // row 0: only v0
        EXPECT_NEAR(out[hd + i], 0.25 * (i + 1) + 0.75 * (-2.0 * i), 1e-6 * (1 + 2.0 * i)) << cpu_isa_name(isa) << " hd=" << hd;
      }
      // A gap of 200: row 1 is v1 up to e^-200 (no overflow, no NaN).
      d.q[c.ldq()] = 200.f;
      out = run(c, d, 1.f, hd);
      for (int64_t i = 0; i < hd; ++i) EXPECT_EQ(out[hd + i], -2.f * float(i)) << cpu_isa_name(isa) << " hd=" << hd;
    }
  }
}

// Random cases against the double reference: head sizes with vector paths (16, 32, 64, 128) and
// without (24), decode (1 row) and prefill blocks after a cached prefix, key counts that are not
// multiples of a block or a partition, and long contexts (5000 positions: ten partitions).
TEST(Attention, AllIsasMatchDoubleReference) {
  IsaGuard guard;
  const Case cases[] = {{7, 64, 1, 0},   {7, 64, 5, 20},   {2, 16, 16, 0},  {9, 24, 3, 30},  {1, 64, 33, 0},
                        {4, 32, 1, 200}, {7, 64, 1, 4999}, {2, 128, 10, 4990}, {3, 24, 1, 1100}, {7, 64, 16, 500}};
  unsigned seed = 1;
  for (const Case& c : cases) {
    const Data d = att_data(c, seed++, 1.5f);
    const float scale = 1 / std::sqrt(float(c.hd));
    const auto want = reference(c, d, scale);
    for (CpuIsa isa : cpu_isas_supported()) {
        set_cpu_isa_for_testing(isa);
      const int64_t ldo = c.heads * c.hd + 1;
      const auto out = run(c, d, scale, ldo);
      for (int64_t r = 0; r < c.rows; ++r) {
        for (int64_t i = 0; i < c.heads * c.hd; ++i)
          ASSERT_NEAR(out[r * ldo + i], want[r * c.heads * c.hd + i], 2e-5)
              << "isa=" << cpu_isa_name(isa) << " heads=" << c.heads << " hd=" << c.hd << " rows=" << c.rows
              << " pos0=" << c.pos0 << " r=" << r << " i=" << i;
        EXPECT_EQ(out[r * ldo + c.heads * c.hd], -7.f);  // nothing written past the heads
      }
    }
  }
}

// The engine computes a decode row's partitions on several threads and merges them afterwards, and
// computes prefill rows in blocks whose composition depends on the batch: both must give the bits
// of one attention() call on that row alone.
TEST(Attention, SplitPartitionsAndRowBlocksGiveIdenticalBits) {
  IsaGuard guard;
  for (CpuIsa isa : cpu_isas_supported()) {
    set_cpu_isa_for_testing(isa);
    for (int64_t hd : {64, 24}) {
      const Case c{7, hd, 12, 1530};
      const Data d = att_data(c, 99, 2.f);
      const float scale = 1 / std::sqrt(float(hd));
      const int64_t ldo = c.heads * hd;
      const auto block = run(c, d, scale, ldo);
      for (int64_t r : {0, 5, 11}) {
        Case one{c.heads, hd, 1, c.pos0 + r};
        Data dr{std::vector<float>(d.q.begin() + r * c.ldq(), d.q.begin() + (r + 1) * c.ldq()), d.k, d.v};
        const AttentionArgs a = args(one, dr, scale);
        ASSERT_EQ(one.ldq(), c.ldq());
        const auto alone = run(one, dr, scale, ldo);
        EXPECT_EQ(std::memcmp(alone.data(), block.data() + r * ldo, size_t(ldo) * 4), 0)
            << cpu_isa_name(isa) << " hd=" << hd << " row " << r;
        // Partitions on two threads, in any order, then merged.
        const int64_t np = attention_partitions(a), stride = attention_partial_floats(a);
        ASSERT_GE(np, 3);
        std::vector<float> partials(size_t(np * stride)), split(static_cast<size_t>(ldo));
#pragma omp parallel for num_threads(2) schedule(static, 1)
        for (int64_t j = np - 1; j >= 0; --j) attention_partial(a, j, partials.data() + j * stride);
        attention_merge(a, partials.data(), stride, split.data(), ldo);
        EXPECT_EQ(std::memcmp(alone.data(), split.data(), size_t(ldo) * 4), 0) << cpu_isa_name(isa) << " hd=" << hd;
      }
    }
  }
}

// The engine hands a thread every KV head of a sequence at once (AttentionArgs::kv_heads), so
// that it reads whole cache rows: each head's result must be the bits of a call for that head
// alone, in the one-call and the partitioned form, and nothing may be written past the heads.
TEST(Attention, SeveralKvHeadsGiveEachHeadsOwnBits) {
  IsaGuard guard;
  for (CpuIsa isa : cpu_isas_supported()) {
    set_cpu_isa_for_testing(isa);
    for (int64_t hd : {64, 24}) {            // 24: the scalar kernel on AVX-512
      for (int64_t rows : {int64_t(1), int64_t(12)}) {
        const int64_t G = 3, heads = 7, pos0 = rows == 1 ? 1100 : 1530;
        // All heads' queries in one row of q, all KV heads' keys in one cache row (as the engine).
        const Case all{G * heads, hd, rows, pos0};
        const Data d = att_data(Case{all.heads, hd, rows, pos0 * 1}, 7 + unsigned(hd + rows), 2.f);
        const int64_t ldq = all.ldq(), ldkv = G * hd + 5, T = pos0 + rows, ldo = G * heads * hd + 1;
        std::vector<float> k(size_t(T * ldkv)), v(size_t(T * ldkv));
        for (size_t i = 0; i < k.size(); ++i) {
          k[i] = d.k[i % d.k.size()] * 0.7f;
          v[i] = d.v[(i * 7) % d.v.size()];
        }
        const float scale = 1 / std::sqrt(float(hd));
        AttentionArgs a{d.q.data(), ldq, heads, hd, k.data(), v.data(), ldkv, rows, pos0, scale, G};
        std::vector<float> each(size_t(rows * ldo), -7.f), together(size_t(rows * ldo), -7.f);
        for (int64_t g = 0; g < G; ++g) {
          const AttentionArgs h{a.q + g * heads * hd, ldq, heads, hd, k.data() + g * hd, v.data() + g * hd, ldkv, rows,
                                pos0, scale};
          attention(h, each.data() + g * heads * hd, ldo);
        }
        attention(a, together.data(), ldo);
        EXPECT_EQ(std::memcmp(each.data(), together.data(), each.size() * 4), 0)
            << cpu_isa_name(isa) << " hd=" << hd << " rows=" << rows;
        for (int64_t r = 0; r < rows; ++r) EXPECT_EQ(together[size_t(r * ldo + ldo - 1)], -7.f);
        if (rows != 1) continue;
        // Partitions in any order on two threads, then merged.
        const int64_t np = attention_partitions(a), stride = attention_partial_floats(a);
        ASSERT_GE(np, 3);
        ASSERT_EQ(stride, G * heads * (hd + 2));
        std::vector<float> partials(size_t(np * stride)), split(size_t(ldo), -7.f);
#pragma omp parallel for num_threads(2) schedule(static, 1)
        for (int64_t j = np - 1; j >= 0; --j) attention_partial(a, j, partials.data() + j * stride);
        attention_merge(a, partials.data(), stride, split.data(), ldo);
        EXPECT_EQ(std::memcmp(each.data(), split.data(), split.size() * 4), 0) << cpu_isa_name(isa) << " hd=" << hd;
      }
    }
  }
}

// The engine stores keys transposed in tiles of kAttKeyTile positions (k_tiled): the same bits as
// row-major keys, on every ISA, with partial last tiles, several KV heads, prefill blocks and
// decode rows, whole or partitioned.
TEST(Attention, TiledKeysGiveTheBitsOfRowMajorKeys) {
  IsaGuard guard;
  for (CpuIsa isa : cpu_isas_supported()) {
    set_cpu_isa_for_testing(isa);
    for (int64_t hd : {64, 24, 32}) {
      for (const auto& [rows, pos0] : {std::pair<int64_t, int64_t>{1, 1100}, {12, 1530}, {5, 0}, {1, 36}}) {
        const int64_t G = 2, heads = 7, T = pos0 + rows, ldkv = G * hd;
        const Case all{G * heads, hd, rows, pos0};
        const auto [d, k, v] = cache_data(G, heads, hd, rows, pos0, 17 + unsigned(hd + rows + pos0));
        // Tiles: unwritten lanes of the last tile hold NaN, which must not reach any result.
        const std::vector<float> kt = tile_keys(k, T, ldkv, std::nanf(""));
        const float scale = 1 / std::sqrt(float(hd));
        const int64_t ldq = all.ldq(), ldo = G * heads * hd;
        for (int64_t ng : {int64_t(1), G}) {
          std::vector<float> row_major(size_t(rows * ldo), -7.f), tiled(size_t(rows * ldo), -7.f);
          for (int64_t g = 0; g < G; g += ng) {
            const AttentionArgs a{d.q.data() + g * heads * hd, ldq, heads, hd, k.data() + g * hd, v.data() + g * hd,
                                  ldkv, rows, pos0, scale, ng};
            AttentionArgs b = a;
            b.k = kt.data() + g * hd * kAttKeyTile;
            b.k_tiled = true;
            attention(a, row_major.data() + g * heads * hd, ldo);
            attention(b, tiled.data() + g * heads * hd, ldo);
            if (rows != 1) continue;
            const auto split = merged_partitions(b, ldo, size_t(ng * heads * hd));
            EXPECT_EQ(std::memcmp(split.data(), row_major.data() + g * heads * hd, split.size() * 4), 0)
                << cpu_isa_name(isa) << " hd=" << hd << " partitioned";
          }
          EXPECT_EQ(std::memcmp(row_major.data(), tiled.data(), tiled.size() * 4), 0)
              << cpu_isa_name(isa) << " hd=" << hd << " rows=" << rows << " pos0=" << pos0 << " heads per call=" << ng;
        }
      }
    }
  }
}

// A bf16 or f16 cache (--kv-cache-dtype) is widened exactly as it is read: on every ISA, the
// result has the bits of an f32 cache holding the rounded values, with partial last tiles, several
// KV heads, prefill blocks and decode rows, whole or partitioned. Rounding itself changes the
// cached values (the test would not notice a cache that was never narrowed otherwise).
TEST(Attention, SixteenBitCachesGiveTheBitsOfTheirValuesInF32) {
  IsaGuard guard;
  for (DType dt : {DType::BF16, DType::F16}) {
    for (int64_t hd : {64, 24, 32, 128}) {  // 128: Qwen2.5-7B, Qwen3
      for (const auto& [rows, pos0] : {std::pair<int64_t, int64_t>{1, 1100}, {12, 1530}, {5, 0}, {1, 36}}) {
        const int64_t G = 2, heads = 7, T = pos0 + rows, ldkv = G * hd;
        const Case all{G * heads, hd, rows, pos0};
        const auto [d, k, v] = cache_data(G, heads, hd, rows, pos0, 23 + unsigned(hd + rows + pos0));
        std::vector<uint16_t> k16(k.size()), v16(v.size());
        from_f32(dt, k.data(), k16.data(), k.size());
        from_f32(dt, v.data(), v16.data(), v.size());
        std::vector<float> kr(k.size()), vr(v.size());  // the rounded values in f32
        to_f32(dt, k16.data(), kr.data(), k16.size());
        to_f32(dt, v16.data(), vr.data(), v16.size());
        size_t changed = 0;
        for (size_t i = 0; i < k.size(); ++i) changed += kr[i] != k[i];
        ASSERT_GT(changed, k.size() / 2) << dtype_name(dt);
        // Tiles: unwritten lanes of the last tile hold NaN, which must not reach any result.
        const std::vector<float> kt = tile_keys(kr, T, ldkv, std::nanf(""));
        const std::vector<uint16_t> kt16 = tile_keys(k16, T, ldkv, uint16_t(dt == DType::BF16 ? 0x7fc0 : 0x7e00));
        const float scale = 1 / std::sqrt(float(hd));
        const int64_t ldq = all.ldq(), ldo = G * heads * hd;
        for (CpuIsa isa : cpu_isas_supported()) {
          set_cpu_isa_for_testing(isa);
          for (int64_t ng : {int64_t(1), G}) {
            std::vector<float> want(size_t(rows * ldo), -7.f), got(size_t(rows * ldo), -7.f);
            for (int64_t g = 0; g < G; g += ng) {
              const AttentionArgs a{d.q.data() + g * heads * hd, ldq, heads, hd, kt.data() + g * hd * kAttKeyTile,
                                    vr.data() + g * hd, ldkv, rows, pos0, scale, ng, true};
              AttentionArgs b = a;
              b.k = kt16.data() + g * hd * kAttKeyTile;
              b.v = v16.data() + g * hd;
              b.kv_dtype = dt;
              attention(a, want.data() + g * heads * hd, ldo);
              attention(b, got.data() + g * heads * hd, ldo);
              if (rows != 1) continue;
              const auto split = merged_partitions(b, ldo, size_t(ng * heads * hd));
              EXPECT_EQ(std::memcmp(split.data(), want.data() + g * heads * hd, split.size() * 4), 0)
                  << cpu_isa_name(isa) << " " << dtype_name(dt) << " hd=" << hd << " partitioned";
            }
            EXPECT_EQ(std::memcmp(want.data(), got.data(), got.size() * 4), 0)
                << cpu_isa_name(isa) << " " << dtype_name(dt) << " hd=" << hd << " rows=" << rows << " pos0=" << pos0
                << " heads per call=" << ng;
          }
        }
      }
    }
  }
}

// bf16_dot over a bf16 cache (--bf16-dot with --kv-cache-dtype bf16, AVX512-BF16): queries and
// probabilities rounded to bf16, pairs multiplied by vdpbf16ps. Against the double reference on
// the cached (rounded) values, within bf16 error, and not the exact kernel's bits (the path is
// in use); and still deterministic per query: partitions merged, several KV heads at once and a
// row computed within a prefill block give the bits of that row alone. Odd position counts take
// the kernel's unpaired last position.
TEST(Attention, Bf16DotOverABf16CacheWithinBf16Error) {
  if (!attention_bf16_dot_supported()) GTEST_SKIP() << "no bf16 dot product kernels for attention on this CPU";
  for (int64_t hd : {64, 16, 128}) {
    for (const auto& [rows, pos0] : {std::pair<int64_t, int64_t>{1, 1100}, {12, 1530}, {5, 0}, {1, 36}, {1, 600}}) {
      const int64_t G = 2, heads = 7, T = pos0 + rows, ldkv = G * hd, ldq = Case{G * heads, hd, rows, pos0}.ldq();
      auto [d, k, v] = cache_data(G, heads, hd, rows, pos0, 31 + unsigned(hd + rows + pos0));
      for (auto& x : d.q) x *= 0.5f;
      std::vector<uint16_t> k16(k.size()), v16(v.size());
      from_f32(DType::BF16, k.data(), k16.data(), k.size());
      from_f32(DType::BF16, v.data(), v16.data(), v.size());
      to_f32(DType::BF16, k16.data(), k.data(), k.size());  // k, v: the cached values
      to_f32(DType::BF16, v16.data(), v.data(), v.size());
      const std::vector<uint16_t> kt16 = tile_keys(k16, T, ldkv, uint16_t(0x7fc0));
      const float scale = 1 / std::sqrt(float(hd));
      const int64_t ldo = G * heads * hd;
      std::vector<float> exact(size_t(rows * ldo)), fast(size_t(rows * ldo));
      AttentionArgs a{d.q.data(), ldq, heads, hd, kt16.data(), v16.data(), ldkv, rows, pos0, scale, G, true,
                      DType::BF16};
      attention(a, exact.data(), ldo);
      a.bf16_dot = true;
      attention(a, fast.data(), ldo);
      double worst = 0, moved = 0;
      for (int64_t g = 0; g < G; ++g) {
        const Case one{heads, hd, rows, pos0};
        Data dg{std::vector<float>(size_t(rows * one.ldq())), std::vector<float>(size_t(T * one.ldkv())),
                std::vector<float>(size_t(T * one.ldkv()))};
        for (int64_t r = 0; r < rows; ++r)
          std::copy_n(d.q.data() + r * ldq + g * heads * hd, heads * hd, dg.q.data() + r * one.ldq());
        for (int64_t t = 0; t < T; ++t) {
          std::copy_n(k.data() + t * ldkv + g * hd, hd, dg.k.data() + t * one.ldkv());
          std::copy_n(v.data() + t * ldkv + g * hd, hd, dg.v.data() + t * one.ldkv());
        }
        const auto want = reference(one, dg, scale);
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t i = 0; i < heads * hd; ++i) {
            const size_t o = size_t(r * ldo + g * heads * hd + i);
            worst = std::max(worst, std::abs(double(fast[o]) - want[size_t(r * heads * hd + i)]));
            moved = std::max(moved, double(std::abs(fast[o] - exact[o])));
          }
      }
      EXPECT_LE(worst, 6e-2) << "hd=" << hd << " rows=" << rows << " pos0=" << pos0;
      EXPECT_GT(moved, 0.0) << "hd=" << hd << " rows=" << rows << " pos0=" << pos0;
      // Each head alone, each row alone, and a decode row's partitions merged: the same bits.
      for (int64_t g = 0; g < G; ++g)
        for (int64_t r = 0; r < rows; ++r) {
          AttentionArgs h = a;
          h.q = d.q.data() + r * ldq + g * heads * hd;
          h.k = kt16.data() + g * hd * kAttKeyTile;
          h.v = v16.data() + g * hd;
          h.kv_heads = 1;
          h.rows = 1;
          h.pos0 = pos0 + r;
          const auto alone = merged_partitions(h, ldo, size_t(heads * hd));
          EXPECT_EQ(std::memcmp(alone.data(), fast.data() + r * ldo + g * heads * hd, alone.size() * 4), 0)
              << "hd=" << hd << " rows=" << rows << " pos0=" << pos0 << " head " << g << " row " << r;
        }
    }
  }
}

// 16-bit caches are tiled; row-major 16-bit keys and other element types are refused by name.
TEST(Attention, RefusesUnsupportedCacheLayouts) {
  const Case c{2, 64, 1, 10};
  const Data d = att_data(c, 3);
  std::vector<uint16_t> k16(d.k.size()), v16(d.v.size());
  AttentionArgs a = args(c, d, 0.125f);
  a.k = k16.data();
  a.v = v16.data();
  a.kv_dtype = DType::BF16;  // k_tiled false
  std::vector<float> out(size_t(c.heads * c.hd));
  EXPECT_THROW(attention(a, out.data(), c.heads * c.hd), Error);
  a.k_tiled = true;
  a.kv_dtype = DType::F64;
  try {
    attention(a, out.data(), c.heads * c.hd);
    FAIL() << "F64 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("F64"), std::string::npos) << e.what();
  }
}

// The benchmark's untiled kernel computes the same attention.
TEST(Attention, UntiledKernelAgrees) {
  const Case c{7, 64, 9, 700};
  const Data d = att_data(c, 5);
  const float scale = 0.125f;
  const auto want = reference(c, d, scale);
  std::vector<float> out(c.rows * c.heads * c.hd);
  attention_untiled(args(c, d, scale), out.data(), c.heads * c.hd);
  for (size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], want[i], 2e-5) << i;
}
