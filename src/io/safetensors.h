// safetensors files: strict validation of untrusted headers, zero-copy tensor views.
// Format: u64 little-endian N, N bytes of JSON header, then the data section.
// Header: {"__metadata__": {str: str}?, name: {"dtype", "shape", "data_offsets": [b, e]}...}
// with offsets relative to the data section.
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"
#include "io/mapped_file.h"

namespace rvec::io {

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // 100 MB, as HF safetensors

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte offsets inside the data section
  const uint8_t* data = nullptr;  // view into the mapped file (nullptr until bound to a file)
  uint64_t nbytes() const { return end - begin; }
  uint64_t numel() const;
  std::string shape_str() const;  // "[896, 151936]"
};

struct ParsedHeader {
  std::vector<TensorInfo> tensors;  // sorted by begin offset
  std::map<std::string, std::string> metadata;
  uint64_t data_start = 0;  // 8 + header length
};

// Validates a complete safetensors image (header + data) of `size` bytes: header
// length within the file and under kMaxHeaderBytes, valid JSON object, no duplicate
// names, known dtypes, non-negative shapes, shape x dtype size == byte span,
// offsets inside the data section, no overlaps or holes. `what` names the file in
// errors. Pointers are not bound (data == nullptr).
ParsedHeader parse_safetensors(const uint8_t* bytes, size_t size, const std::string& what);

class SafetensorsFile {
 public:
  static std::unique_ptr<SafetensorsFile> open(const std::filesystem::path& path, Backing backing = Backing::PageCache);
  const std::filesystem::path& path() const { return map_.path(); }
  const std::vector<TensorInfo>& tensors() const { return header_.tensors; }
  const TensorInfo* find(std::string_view name) const;  // nullptr if absent
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  const MappedFile& mapped() const { return map_; }
  uint64_t data_start() const { return header_.data_start; }

 private:
  SafetensorsFile(const std::filesystem::path& path, Backing backing);
  MappedFile map_;
  ParsedHeader header_;
  std::map<std::string, size_t, std::less<>> index_;
};

}  // namespace rvec::io
