#include "infer/attention.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "infer/kernels.h"

namespace rvec::infer {

namespace {

static_assert(kAttPartition % kAttBlock == 0);

std::atomic<int> g_kernel{int(AttentionKernel::Tiled)};

int64_t partial_stride(const AttentionArgs& a) { return a.hd + 2; }

// attention_part_simd's contract for any head size: one query vector at a time, the same
// blocks, running maximum and rescaling. 16-bit caches are widened a key or value at a time.
void attention_part_scalar(const AttentionArgs& a, int64_t t0, int64_t t1, float* part) {
  const int64_t ps = partial_stride(a);
  float s[kAttBlock];
  std::vector<float> key(size_t(a.hd)), val(a.kv_dtype == DType::F32 ? 0 : size_t(a.hd));
  const size_t es = dtype_size(a.kv_dtype);
  auto elem = [&](const void* base, int64_t i) {
    const void* p = static_cast<const uint8_t*>(base) + size_t(i) * es;
    if (a.kv_dtype == DType::F32) return *static_cast<const float*>(p);
    uint16_t h;
    std::memcpy(&h, p, 2);
    return a.kv_dtype == DType::BF16 ? bf16_to_f32(h) : f16_to_f32(h);
  };
  auto key_at = [&](int64_t t) {  // position t's key, gathered from its tile when tiled
    if (a.kv_dtype == DType::F32 && !a.k_tiled) return static_cast<const float*>(a.k) + t * a.ldkv;
    for (int64_t d = 0; d < a.hd; ++d)
      key[size_t(d)] = elem(a.k, a.k_tiled ? attention_key_index(t, d, a.ldkv) : t * a.ldkv + d);
    return static_cast<const float*>(key.data());
  };
  auto value_at = [&](int64_t t) {
    if (a.kv_dtype == DType::F32) return static_cast<const float*>(a.v) + t * a.ldkv;
    for (int64_t d = 0; d < a.hd; ++d) val[size_t(d)] = elem(a.v, t * a.ldkv + d);
    return static_cast<const float*>(val.data());
  };
  for (int64_t qi = 0; qi < a.rows * a.heads; ++qi) {
    const int64_t r = qi / a.heads, pos = a.pos0 + r;
    const float* qv = a.q + r * a.ldq + (qi % a.heads) * a.hd;
    float* p = part + qi * ps;
    float* o = p + 2;
    p[0] = -HUGE_VALF;
    p[1] = 0;
    std::fill_n(o, a.hd, 0.f);
    for (int64_t tb = t0; tb < t1 && tb <= pos; tb += kAttBlock) {
      const int64_t n = std::min({kAttBlock, t1 - tb, pos - tb + 1});
      float bm = -HUGE_VALF;
      for (int64_t t = 0; t < n; ++t) bm = std::max(bm, s[t] = dot(qv, key_at(tb + t), a.hd) * a.scale);
      const float m = std::max(p[0], bm), alpha = std::exp(p[0] - m);
      float tot = 0;
      for (int64_t t = 0; t < n; ++t) tot += s[t] = std::exp(s[t] - m);
      p[0] = m;
      p[1] = p[1] * alpha + tot;
      scale(o, alpha, a.hd);
      for (int64_t t = 0; t < n; ++t) axpy(s[t], value_at(tb + t), o, a.hd);
    }
  }
}

// KV head g of a alone (its queries, keys, values and output at their offsets).
AttentionArgs head_args(const AttentionArgs& a, int64_t g) {
  AttentionArgs h = a;
  h.q += g * a.heads * a.hd;
  h.k = attention_kv_advance(a.k, attention_key_head_offset(g, a.hd, a.k_tiled), a.kv_dtype);
  h.v = attention_kv_advance(a.v, g * a.hd, a.kv_dtype);
  h.kv_heads = 1;
  return h;
}

}  // namespace

int64_t attention_partitions(const AttentionArgs& a) { return (a.pos0 + a.rows + kAttPartition - 1) / kAttPartition; }

int64_t attention_partial_floats(const AttentionArgs& a) {
  return a.kv_heads * a.rows * a.heads * partial_stride(a);
}

void attention_partial(const AttentionArgs& a, int64_t j, float* partial) {
  if (!attention_kv_dtype_supported(a.kv_dtype) || (a.kv_dtype != DType::F32 && !a.k_tiled))
    fail("attention: a {} KV cache is not supported (F32, or BF16/F16 with tiled keys)", dtype_name(a.kv_dtype));
  const int64_t t0 = j * kAttPartition, t1 = std::min(t0 + kAttPartition, a.pos0 + a.rows);
  if (detail::attention_part_vec(a, t0, t1, partial)) return;
  const int64_t per_head = a.rows * a.heads * partial_stride(a);
  for (int64_t g = 0; g < a.kv_heads; ++g) attention_part_scalar(head_args(a, g), t0, t1, partial + g * per_head);
}

// out = the partials combined in partition order: m = max m_j, l = sum l_j e^(m_j - m),
// O = sum O_j e^(m_j - m), then O / l. Partitions after a query's position have m_j = -inf.
// KV head g's partials follow head g - 1's within each partition's (attention_part_simd).
void attention_merge(const AttentionArgs& a, const float* partials, int64_t stride, float* out, int64_t ldo) {
  const int64_t ps = partial_stride(a), np = attention_partitions(a), hd = a.hd, nq = a.rows * a.heads;
  thread_local std::vector<float> acc;
  acc.resize(size_t(hd));
  for (int64_t gq = 0; gq < a.kv_heads * nq; ++gq) {
    const int64_t g = gq / nq, qi = gq % nq;
    const float* p0 = partials + gq * ps;
    float m = p0[0], l = p0[1];
    std::copy_n(p0 + 2, hd, acc.data());
    for (int64_t j = 1; j < np; ++j) {
      const float* pj = partials + j * stride + gq * ps;
      if (pj[0] == -HUGE_VALF) continue;
      const float mn = std::max(m, pj[0]), ea = std::exp(m - mn), eb = std::exp(pj[0] - mn);
      l = l * ea + pj[1] * eb;
      for (int64_t d = 0; d < hd; ++d) acc[size_t(d)] = acc[size_t(d)] * ea + pj[2 + d] * eb;
      m = mn;
    }
    const float inv = 1.f / l;
    float* o = out + (qi / a.heads) * ldo + (g * a.heads + qi % a.heads) * hd;
    for (int64_t d = 0; d < hd; ++d) o[d] = acc[size_t(d)] * inv;
  }
}

void attention(const AttentionArgs& a, float* out, int64_t ldo) {
  if (a.rows <= 0 || a.heads <= 0) return;
  const int64_t np = attention_partitions(a), stride = attention_partial_floats(a);
  thread_local std::vector<float> partials;
  partials.resize(size_t(np * stride));
  for (int64_t j = 0; j < np; ++j) attention_partial(a, j, partials.data() + j * stride);
  attention_merge(a, partials.data(), stride, out, ldo);
}

void attention_untiled(const AttentionArgs& a, float* out, int64_t ldo) {
  if (a.rows <= 0 || a.heads <= 0) return;
  if (a.kv_heads != 1 || a.k_tiled || a.kv_dtype != DType::F32)
    fail("attention_untiled: one KV head at a time with row-major f32 keys (kv_heads = {}, {})", a.kv_heads,
         dtype_name(a.kv_dtype));
  if (detail::attention_untiled_vec(a, out, ldo)) return;
  attention(a, out, ldo);  // no untiled scalar kernel kept
}


void set_attention_kernel(AttentionKernel k) { g_kernel.store(int(k)); }
AttentionKernel attention_kernel() { return AttentionKernel(g_kernel.load()); }

}  // namespace rvec::infer
