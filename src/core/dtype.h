// Tensor element types as safetensors names them, and exact conversions between
// the floating types rvec computes with (bf16, f16 <-> f32; round-to-nearest-even).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace rvec {

enum class DType { BOOL, U8, I8, I16, U16, I32, U32, I64, U64, F16, BF16, F32, F64, F8_E4M3, F8_E5M2 };

size_t dtype_size(DType t);
std::string_view dtype_name(DType t);                   // "BF16", as in safetensors headers
std::optional<DType> parse_dtype(std::string_view name);  // nullopt for unknown names
bool is_float(DType t);       // F16, BF16, F32, F64
bool is_arith_dtype(DType t);  // F16, BF16, F32: the types task arithmetic works on
// torch_dtype string in config.json ("bfloat16", "float16", "float32").
std::string_view torch_dtype_name(DType t);
std::optional<DType> parse_torch_dtype(std::string_view name);

// --- scalar conversions -------------------------------------------------
inline float bf16_to_f32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
// Round to nearest even; NaN stays NaN (quiet), infinities stay infinite.
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);  // round to nearest even, overflow -> inf

// --- bulk conversions (SIMD with runtime dispatch, scalar fallback) -------
// Convert n elements of type `src_t` at src into f32 at dst.
void to_f32(DType src_t, const void* src, float* dst, size_t n);
// Convert n f32 values into type `dst_t` at dst (rounding to nearest even).
void from_f32(DType dst_t, const float* src, void* dst, size_t n);

}  // namespace rvec
