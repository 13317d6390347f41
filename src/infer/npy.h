// NumPy .npy files (format version 1.0/2.0/3.0), float32 only on write; read accepts
// little-endian float32 ('<f4') and float64 ('<f8', converted), C order.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace rvec::infer {

struct NpyArray {
  std::vector<int64_t> shape;
  std::vector<float> data;
  int64_t numel() const;
};

NpyArray read_npy(const std::filesystem::path& path);  // throws rvec::Error naming the file
NpyArray parse_npy(const std::string& bytes, const std::string& origin);
std::string npy_bytes(const float* data, const std::vector<int64_t>& shape);
// Writes atomically (core/atomic_output.h).
void write_npy(const std::filesystem::path& path, const float* data, const std::vector<int64_t>& shape);

}  // namespace rvec::infer
