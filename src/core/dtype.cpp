#include "core/dtype.h"

#include "core/simd.h"

#include <stdexcept>

#include "core/cpu.h"

namespace rvec {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::BOOL: case DType::U8: case DType::I8: case DType::F8_E4M3: case DType::F8_E5M2: return 1;
    case DType::I16: case DType::U16: case DType::F16: case DType::BF16: return 2;
    case DType::I32: case DType::U32: case DType::F32: return 4;
    case DType::I64: case DType::U64: case DType::F64: return 8;
  }
  return 0;
}

namespace {
struct Name { DType t; std::string_view st; std::string_view torch; };
constexpr Name kNames[] = {
    {DType::BOOL, "BOOL", "bool"},       {DType::U8, "U8", "uint8"},       {DType::I8, "I8", "int8"},
    {DType::I16, "I16", "int16"},        {DType::U16, "U16", "uint16"},    {DType::I32, "I32", "int32"},
    {DType::U32, "U32", "uint32"},       {DType::I64, "I64", "int64"},     {DType::U64, "U64", "uint64"},
    {DType::F16, "F16", "float16"},      {DType::BF16, "BF16", "bfloat16"}, {DType::F32, "F32", "float32"},
    {DType::F64, "F64", "float64"},      {DType::F8_E4M3, "F8_E4M3", "float8_e4m3fn"},
    {DType::F8_E5M2, "F8_E5M2", "float8_e5m2"},
};
}  // namespace

std::string_view dtype_name(DType t) {
  for (auto& n : kNames) if (n.t == t) return n.st;
  return "?";
}
std::optional<DType> parse_dtype(std::string_view name) {
  for (auto& n : kNames) if (n.st == name) return n.t;
  return std::nullopt;
}
std::string_view torch_dtype_name(DType t) {
  for (auto& n : kNames) if (n.t == t) return n.torch;
  return "?";
}
std::optional<DType> parse_torch_dtype(std::string_view name) {
  for (auto& n : kNames) if (n.torch == name) return n.t;
  if (name == "bf16") return DType::BF16;
  if (name == "f16" || name == "half" || name == "fp16") return DType::F16;
  if (name == "f32" || name == "float" || name == "fp32") return DType::F32;
  return std::nullopt;
}
bool is_float(DType t) { return t == DType::F16 || t == DType::BF16 || t == DType::F32 || t == DType::F64; }
bool is_arith_dtype(DType t) { return t == DType::F16 || t == DType::BF16 || t == DType::F32; }

float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff, u;
  if (exp == 0) {
    if (mant == 0) {
      u = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do { mant <<= 1; ++e; } while (!(mant & 0x400));
      u = sign | uint32_t(127 - 15 - e) << 23 | (mant & 0x3ff) << 13;
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | mant << 13;
  } else {
    u = sign | (exp + 112) << 23 | mant << 13;
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint16_t f32_to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  uint16_t sign = uint16_t((u >> 16) & 0x8000);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return sign | 0x7e00;           // NaN
  if (a >= 0x477ff000u) return sign | 0x7c00;          // rounds to >= 65520: inf
  if (a < 0x38800000u) {                               // subnormal or zero in f16
    if (a < 0x33000000u) return sign;                  // < 2^-25: rounds to 0
    uint32_t e = a >> 23, m = (a & 0x7fffff) | 0x800000;
    uint32_t shift = 126 - e;                          // 14 + (113 - e) - 1 ... bits to drop
    uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1))) ++r;
    return sign | uint16_t(r);
  }
  uint32_t r = a + 0xfffu + ((a >> 13) & 1u);          // round mantissa to 10 bits, RNE
  return sign | uint16_t(((r >> 13) - (112u << 10)));
}

// ---------------------------------------------------------------------------
// Bulk conversions. Compiled for generic x86-64; the AVX2/AVX-512 bodies use
// target attributes and are picked at run time (core/cpu.h). AArch64 has NEON bodies.
namespace {
#if defined(__x86_64__)

__attribute__((target("avx512f,avx512bw")))
void bf16_to_f32_avx512(const uint16_t* s, float* d, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i));
    __m512i w = _mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16);
    _mm512_storeu_ps(d + i, _mm512_castsi512_ps(w));
  }
  for (; i < n; ++i) d[i] = bf16_to_f32(s[i]);
}

__attribute__((target("avx2")))
void bf16_to_f32_avx2(const uint16_t* s, float* d, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i));
    __m256i w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
    _mm256_storeu_ps(d + i, _mm256_castsi256_ps(w));
  }
  for (; i < n; ++i) d[i] = bf16_to_f32(s[i]);
}

// Integer round-to-nearest-even, bit-identical to f32_to_bf16 (including NaN).
__attribute__((target("avx512f,avx512bw")))
void f32_to_bf16_avx512(const float* s, uint16_t* d, size_t n) {
  size_t i = 0;
  const __m512i bias = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1);
  const __m512i absmask = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
  const __m512i qnan = _mm512_set1_epi32(0x400000);
  for (; i + 16 <= n; i += 16) {
    __m512i u = _mm512_castps_si512(_mm512_loadu_ps(s + i));
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), one);
    __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(bias, lsb));
    __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, absmask), inf);
    r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(u, qnan));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i), _mm512_maskz_cvtepi32_epi16(0xffff, _mm512_srli_epi32(r, 16)));
  }
  for (; i < n; ++i) d[i] = f32_to_bf16(s[i]);
}

__attribute__((target("avx2")))
void f32_to_bf16_avx2(const float* s, uint16_t* d, size_t n) {
  size_t i = 0;
  const __m256i bias = _mm256_set1_epi32(0x7fff), one = _mm256_set1_epi32(1);
  const __m256i absmask = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
  const __m256i qnan = _mm256_set1_epi32(0x400000);
  for (; i + 8 <= n; i += 8) {
    __m256i u = _mm256_castps_si256(_mm256_loadu_ps(s + i));
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), one);
    __m256i r = _mm256_add_epi32(u, _mm256_add_epi32(bias, lsb));
    // abs(u) > inf as signed compare is fine: both are non-negative.
    __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, absmask), inf);
    r = _mm256_blendv_epi8(r, _mm256_or_si256(u, qnan), nan);
    __m256i hi = _mm256_srli_epi32(r, 16);
    __m128i packed = _mm_packus_epi32(_mm256_castsi256_si128(hi), _mm256_extracti128_si256(hi, 1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i), packed);
  }
  for (; i < n; ++i) d[i] = f32_to_bf16(s[i]);
}

// F16C conversions are IEEE round-to-nearest-even (imm 0 = RNE).
__attribute__((target("avx2,f16c")))
void f16_to_f32_f16c(const uint16_t* s, float* d, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(d + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i))));
  for (; i < n; ++i) d[i] = f16_to_f32(s[i]);
}
__attribute__((target("avx2,f16c")))
void f32_to_f16_f16c(const float* s, uint16_t* d, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i), _mm256_cvtps_ph(_mm256_loadu_ps(s + i), 0));
  for (; i < n; ++i) d[i] = f32_to_f16(s[i]);
}
#endif  // __x86_64__

#if defined(__aarch64__)
void bf16_to_f32_neon(const uint16_t* s, float* d, size_t n) {
  size_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(d + i, vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(s + i), 16)));
  for (; i < n; ++i) d[i] = bf16_to_f32(s[i]);
}
// The same integer round-to-nearest-even as the x86 bodies (and f32_to_bf16, NaN included).
void f32_to_bf16_neon(const float* s, uint16_t* d, size_t n) {
  size_t i = 0;
  const uint32x4_t bias = vdupq_n_u32(0x7fff), one = vdupq_n_u32(1), absmask = vdupq_n_u32(0x7fffffff);
  const uint32x4_t inf = vdupq_n_u32(0x7f800000), qnan = vdupq_n_u32(0x400000);
  for (; i + 4 <= n; i += 4) {
    const uint32x4_t u = vreinterpretq_u32_f32(vld1q_f32(s + i));
    const uint32x4_t r = vaddq_u32(u, vaddq_u32(bias, vandq_u32(vshrq_n_u32(u, 16), one)));
    const uint32x4_t nan = vcgtq_u32(vandq_u32(u, absmask), inf);
    vst1_u16(d + i, vshrn_n_u32(vbslq_u32(nan, vorrq_u32(u, qnan), r), 16));
  }
  for (; i < n; ++i) d[i] = f32_to_bf16(s[i]);
}
// FCVT between half and single precision is IEEE round-to-nearest-even (the FPCR default).
void f16_to_f32_neon(const uint16_t* s, float* d, size_t n) {
  size_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(d + i, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(s + i))));
  for (; i < n; ++i) d[i] = f16_to_f32(s[i]);
}
void f32_to_f16_neon(const float* s, uint16_t* d, size_t n) {
  size_t i = 0;
  for (; i + 4 <= n; i += 4) vst1_u16(d + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(s + i))));
  for (; i < n; ++i) d[i] = f32_to_f16(s[i]);
}
#endif  // __aarch64__

}  // namespace

void to_f32(DType t, const void* src, float* dst, size_t n) {
  const auto isa = cpu_isa();
  switch (t) {
    case DType::F32: std::memcpy(dst, src, n * 4); return;
    case DType::BF16: {
      auto s = static_cast<const uint16_t*>(src);
#if defined(__x86_64__)
      if (isa == CpuIsa::AVX512) return bf16_to_f32_avx512(s, dst, n);
      if (isa == CpuIsa::AVX2) return bf16_to_f32_avx2(s, dst, n);
#elif defined(__aarch64__)
      if (isa == CpuIsa::NEON) return bf16_to_f32_neon(s, dst, n);
#endif
      for (size_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
      return;
    }
    case DType::F16: {
      auto s = static_cast<const uint16_t*>(src);
#if defined(__x86_64__)
      if (isa_has_avx2(isa)) return f16_to_f32_f16c(s, dst, n);
#elif defined(__aarch64__)
      if (isa == CpuIsa::NEON) return f16_to_f32_neon(s, dst, n);
#endif
      for (size_t i = 0; i < n; ++i) dst[i] = f16_to_f32(s[i]);
      return;
    }
    case DType::F64: {
      auto s = static_cast<const double*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = float(s[i]);
      return;
    }
    default: break;
  }
  throw std::invalid_argument("to_f32: not a float dtype");
}

void from_f32(DType t, const float* src, void* dst, size_t n) {
  const auto isa = cpu_isa();
  switch (t) {
    case DType::F32: std::memcpy(dst, src, n * 4); return;
    case DType::BF16: {
      auto d = static_cast<uint16_t*>(dst);
#if defined(__x86_64__)
      if (isa == CpuIsa::AVX512) return f32_to_bf16_avx512(src, d, n);
      if (isa == CpuIsa::AVX2) return f32_to_bf16_avx2(src, d, n);
#elif defined(__aarch64__)
      if (isa == CpuIsa::NEON) return f32_to_bf16_neon(src, d, n);
#endif
      for (size_t i = 0; i < n; ++i) d[i] = f32_to_bf16(src[i]);
      return;
    }
    case DType::F16: {
      auto d = static_cast<uint16_t*>(dst);
#if defined(__x86_64__)
      if (isa_has_avx2(isa)) return f32_to_f16_f16c(src, d, n);
#elif defined(__aarch64__)
      if (isa == CpuIsa::NEON) return f32_to_f16_neon(src, d, n);
#endif
      for (size_t i = 0; i < n; ++i) d[i] = f32_to_f16(src[i]);
      return;
    }
    case DType::F64: {
      auto d = static_cast<double*>(dst);
      for (size_t i = 0; i < n; ++i) d[i] = src[i];
      return;
    }
    default: break;
  }
  throw std::invalid_argument("from_f32: not a float dtype");
}

}  // namespace rvec
