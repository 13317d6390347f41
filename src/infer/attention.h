// Causal self-attention over a KV cache, tiled with an online softmax (flash attention): keys
// and values are visited in blocks of kAttBlock positions, each query keeps a running maximum,
// sum and unnormalised output, so no rows x T score matrix is ever built and the working set
// stays in cache at any context length. Vectorised with the kernels' runtime dispatch
// (AVX-512, AVX2, scalar for any head size).
//
// Positions are cut into partitions of kAttPartition consecutive positions counted from 0. Each
// partition's partial result (max, sum, output) is computed on its own and the partials are
// merged in partition order, whether one thread does all of them (attention()) or several
// threads do some each (attention_partial() + attention_merge()): the bits of a query's result
// depend only on its query vector, the cache and its position, never on the thread count or on
// the other rows and sequences of the batch.
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace rvec::infer {

constexpr int64_t kAttBlock = 64;       // positions per online-softmax step
constexpr int64_t kAttPartition = 512;  // positions per partition (a multiple of kAttBlock)

// The attention of `rows` consecutive positions pos0, pos0+1, ... of one sequence for the query
// heads that share one KV head. q: row i's query vectors (heads of hd floats) at q + i * ldq;
// k, v: that KV head's cached keys/values, position t at k + t * ldkv (positions 0 ..
// pos0+rows-1 filled); out: like q (stride ldo). Row i attends to positions 0 .. pos0+i with
// softmax(q.k * scale).
// kv_heads > 1: as many consecutive KV heads at once (KV head g's queries at q + g * heads * hd,
// its keys and values at k + g * hd and v + g * hd, its output at out + g * heads * hd), each
// block of positions visited for every head in turn, so that whole cache rows are read in order;
// every head's result has the same bits as a call for that head alone. (Head g's keys at k + g *
// hd * kAttKeyTile when k_tiled.)
// k_tiled: the keys are stored transposed in tiles of kAttKeyTile positions (attention_key_index):
// position t, element c of a cache row (c = KV head g * hd + d) at k[attention_key_index(t, c,
// ldkv)], with k pointing at the tile layout's base plus g * hd * kAttKeyTile for head g. The
// attention then reads transposed keys instead of transposing them at every step; the results
// have the same bits as with row-major keys.
// kv_dtype: the element type of k and v (offsets and strides above count elements). BF16 and F16
// halve the cache's bytes; they are widened to f32 as they are read, so the result has the bits
// of an F32 cache holding the same (rounded) values. They need k_tiled.
// bf16_dot (BF16 cache): where the CPU has a bf16 pair dot product kernel for it (AVX512-BF16),
// the queries and the probabilities are rounded to bf16 and multiplied in pairs (as --bf16-dot's
// matmuls: ~1e-2 relative); elsewhere it is ignored. Still deterministic per query.
struct AttentionArgs {
  const float* q;
  int64_t ldq, heads, hd;
  const void *k, *v;
  int64_t ldkv, rows, pos0;
  float scale;
  int64_t kv_heads = 1;
  bool k_tiled = false;
  DType kv_dtype = DType::F32;
  bool bf16_dot = false;
};
// The KV cache element types the kernels read.
constexpr bool attention_kv_dtype_supported(DType t) { return t == DType::F32 || t == DType::BF16 || t == DType::F16; }
// p advanced by `elems` elements of type t (an offset into a cache of kv_dtype t).
inline const void* attention_kv_advance(const void* p, int64_t elems, DType t) {
  return static_cast<const uint8_t*>(p) + elems * int64_t(dtype_size(t));
}

constexpr int64_t kAttKeyTile = 16;  // positions per key tile (a divisor of kAttBlock)
constexpr int64_t attention_key_index(int64_t t, int64_t c, int64_t ldkv) {
  return (t / kAttKeyTile) * ldkv * kAttKeyTile + c * kAttKeyTile + t % kAttKeyTile;
}
// Where KV head g's keys start, from the key cache's base (hd floats of each cache row per head).
constexpr int64_t attention_key_head_offset(int64_t g, int64_t hd, bool k_tiled) {
  return g * hd * (k_tiled ? kAttKeyTile : 1);
}
// Floats a tiled key cache of `positions` needs (whole tiles).
constexpr int64_t attention_key_floats(int64_t positions, int64_t ldkv) {
  return (positions + kAttKeyTile - 1) / kAttKeyTile * kAttKeyTile * ldkv;
}

// Single-threaded (callers parallelise over sequences and KV heads, or use the split below).
void attention(const AttentionArgs& a, float* out, int64_t ldo);

// Split form for long contexts: partition j's partial for every query vector (kv_heads x rows x
// heads), written to partial (attention_partial_floats(a) floats); attention_merge then combines
// the partials of partitions 0 .. attention_partitions(a)-1, stored partial_stride floats apart,
// into out. Same bits as attention().
int64_t attention_partitions(const AttentionArgs& a);
int64_t attention_partial_floats(const AttentionArgs& a);
void attention_partial(const AttentionArgs& a, int64_t j, float* partial);
void attention_merge(const AttentionArgs& a, const float* partials, int64_t partial_stride, float* out, int64_t ldo);

// For benchmarks only: the previous kernel (the whole score row of each query, then one
// softmax), kept to measure the tiled kernel against it in the same run. The engine uses it
// when set_attention_kernel(Untiled) was called (process-wide; `rvec bench --attention untiled`).
// (kv_heads must be 1, keys row-major, kv_dtype F32.)
void attention_untiled(const AttentionArgs& a, float* out, int64_t ldo);
enum class AttentionKernel { Tiled, Untiled };
void set_attention_kernel(AttentionKernel k);
AttentionKernel attention_kernel();

}  // namespace rvec::infer

namespace rvec::infer::detail {
// The SIMD kernels (kernels.cpp, attention_dispatch.inc); false when the CPU or head size has
// no vector path (then attention.cpp's scalar code runs).
bool attention_part_vec(const AttentionArgs& a, int64_t t0, int64_t t1, float* part);
bool attention_untiled_vec(const AttentionArgs& a, float* out, int64_t ldo);
}  // namespace rvec::infer::detail
