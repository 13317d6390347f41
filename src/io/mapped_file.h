// A read-only view of a whole file's bytes. Tensor views point into it: either the file
// mapped from the page cache (zero-copy, faulted in lazily), or the file read once into
// anonymous memory on transparent huge pages.
#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>

namespace rvec::io {

// HugePages: a decode step streams every weight once, and on 4 KB pages that is a TLB miss
// and a restart of the hardware prefetchers every 4 KB; 2 MB pages remove most of both. It
// costs one copy at open and the file's size in anonymous memory (the page-cache copy is
// dropped afterwards). Falls back to 4 KB pages silently where THP is unavailable.
enum class Backing { PageCache, HugePages };

class MappedFile {
 public:
  // Throws rvec::Error naming the path.
  explicit MappedFile(const std::filesystem::path& path, Backing backing = Backing::PageCache);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::filesystem::path& path() const { return path_; }
  Backing backing() const { return backing_; }
  // Access hints for a byte range (page-aligned internally): sequential read-ahead,
  // or drop from this process's working set once consumed.
  void advise_sequential(size_t offset, size_t len) const;
  void advise_dontneed(size_t offset, size_t len) const;

 private:
  std::filesystem::path path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  Backing backing_ = Backing::PageCache;
  void* region_ = nullptr;  // what munmap releases (HugePages: the aligned anonymous region)
  size_t region_size_ = 0;
};

}  // namespace rvec::io
