// Compute kernels of the inference engine, with runtime CPU dispatch (core/cpu.h):
// AVX-512 (F/BW/VL/DQ) and AVX2+FMA+F16C on x86-64, NEON on AArch64, and a scalar
// fallback. Activations are f32; weight matrices are read in their stored dtype
// (BF16/F16/F32) and widened to f32 in registers, so the default matmul is exact f32
// arithmetic on the stored weights.
// An optional fast path (MatmulPrecision::BF16Dot, BF16 weights, CPUs with AVX512-BF16 or
// Arm's BF16 extension) rounds the activations to bf16 and uses vdpbf16ps / BFDOT dot
// products (~1e-2 relative) for products of 5 or more rows; 1-4 rows (decode, bound by
// memory) stay exact.
#pragma once
#include <cstdint>
#include <span>

#include "model/weights.h"

namespace rvec::infer {

enum class MatmulPrecision { F32, BF16Dot };
// Process-wide; default F32 (exact), or BF16Dot when the environment has
// RVEC_MATMUL=bf16dot. BF16Dot falls back to F32 where unsupported (!bf16_dot_supported(),
// non-BF16 weights).
void set_matmul_precision(MatmulPrecision p);
MatmulPrecision matmul_precision();
// Whether BF16Dot runs here: the CPU has a bf16 dot product with the selected ISA
// (cpu_has_bf16_dot()) and this build has its kernels (a clang build for AArch64 without
// +bf16 has none).
bool bf16_dot_supported();
// Whether BF16Dot also reads a bf16 KV cache with that dot product (AttentionArgs::bf16_dot):
// AVX512-BF16 only so far; elsewhere the attention widens the cache exactly.
bool attention_bf16_dot_supported();

// y[r*ldy + o] = bias[o] + sum_k x[r*ldx + k] * W[o, k] for r < n, o < W.rows
// (W is [out, in], as HF stores Linear weights: row-major, or in column blocks (W.kblock > 0,
// model/column_blocks.h), whose partial sums are added in block order; bias may be null).
// Parallel over output rows with OpenMP; the loop shape depends on n (decode: weights
// streamed once; prefill: packed panels), see kernels.cpp and matmul_simd.inc.
void matmul(const float* x, int64_t n, int64_t ldx, const model::Matrix& W, const float* bias, float* y,
            int64_t ldy);

// Several products of the same x (e.g. the q, k, v projections) in one parallel region;
// all W have the same columns and dtype. Same results as separate matmul calls.
struct MatmulOut {
  const model::Matrix* W;
  const float* bias;  // may be null
  float* y;
  int64_t ldy;
};
void matmul_multi(const float* x, int64_t n, int64_t ldx, std::span<const MatmulOut> outs);

// y = x / sqrt(mean(x^2) + eps) * w over n elements (sum of squares in double).
void rmsnorm(const float* x, const float* w, float* y, int64_t n, double eps);
float dot(const float* a, const float* b, int64_t n);
void axpy(float a, const float* x, float* y, int64_t n);  // y += a * x
void scale(float* x, float a, int64_t n);                  // x *= a
// The index of the first maximum of x[0, n) (std::max_element's, also with NaNs); 0 when n <= 0.
int64_t argmax(const float* x, int64_t n);
// g[i] = silu(g[i]) * u[i]
void silu_mul(float* g, const float* u, int64_t n);
// In place, max-subtracted; returns nothing.
void softmax(float* x, int64_t n);

}  // namespace rvec::infer
