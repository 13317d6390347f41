// A read-only memory map of a whole file. Tensor views point into it (zero-copy).
#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>

namespace rvec::io {

class MappedFile {
 public:
  explicit MappedFile(const std::filesystem::path& path);  // throws rvec::Error naming the path
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::filesystem::path& path() const { return path_; }
  // Access hints for a byte range (page-aligned internally): sequential read-ahead,
  // or drop from this process's working set once consumed.
  void advise_sequential(size_t offset, size_t len) const;
  void advise_dontneed(size_t offset, size_t len) const;

 private:
  std::filesystem::path path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace rvec::io
