#include "io/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/error.h"
#include "core/input_file.h"

namespace rvec::io {

namespace {
constexpr size_t kHugePage = size_t(2) << 20;

// Anonymous memory of at least `size` bytes starting on a 2 MB boundary (THP backs only
// aligned 2 MB ranges); returns the region to unmap in `region`/`region_size`.
uint8_t* map_aligned_anonymous(size_t size, void*& region, size_t& region_size) {
  const size_t len = (size + kHugePage - 1) / kHugePage * kHugePage;
  void* p = ::mmap(nullptr, len + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  auto* b = static_cast<uint8_t*>(p);
  uint8_t* a = b + (kHugePage - reinterpret_cast<uintptr_t>(b) % kHugePage) % kHugePage;
  if (a > b) ::munmap(b, size_t(a - b));
  const size_t tail = size_t(b + len + kHugePage - (a + len));
  if (tail > 0) ::munmap(a + len, tail);
  region = a;
  region_size = len;
  return a;
}
}  // namespace

MappedFile::MappedFile(const std::filesystem::path& path, Backing backing) : path_(path) {
  InputFile in(path);  // refuses FIFOs and devices without blocking
  size_ = size_t(in.size());
  if (size_ == 0) return;
  if (backing == Backing::HugePages) {
    if (uint8_t* a = map_aligned_anonymous(size_, region_, region_size_)) {
      ::madvise(a, region_size_, MADV_HUGEPAGE);  // fails harmlessly without THP
      for (size_t off = 0; off < size_;) {
        const ssize_t r = ::pread(in.fd(), a + off, std::min<size_t>(size_ - off, size_t(64) << 20), off_t(off));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
          const int err = errno;
          ::munmap(region_, region_size_);
          fail("cannot read {}: {}", path.string(), r == 0 ? "file shrank while being read" : std::strerror(err));
        }
        off += size_t(r);
      }
      ::mprotect(a, region_size_, PROT_READ);
      ::posix_fadvise(in.fd(), 0, 0, POSIX_FADV_DONTNEED);  // the copy is the one in use now
      data_ = a;
      backing_ = Backing::HugePages;
      return;
    }
    // no address space for the copy: map the file instead
  }
  void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, in.fd(), 0);
  if (p == MAP_FAILED) fail("cannot map {}: {}", path.string(), std::strerror(errno));
  data_ = static_cast<const uint8_t*>(p);
  region_ = p;
  region_size_ = size_;
}

MappedFile::~MappedFile() {
  if (region_) ::munmap(region_, region_size_);
}

namespace {
void advise(const uint8_t* base, size_t size, size_t off, size_t len, int how) {
  if (!base || off >= size) return;
  if (len > size - off) len = size - off;
  const size_t page = size_t(sysconf(_SC_PAGESIZE));
  size_t start = off & ~(page - 1);
  ::madvise(const_cast<uint8_t*>(base) + start, len + (off - start), how);
}
}  // namespace

// A HugePages copy is anonymous memory: MADV_DONTNEED would zero it, and read-ahead is moot.
void MappedFile::advise_sequential(size_t off, size_t len) const {
  if (backing_ == Backing::HugePages) return;
  advise(data_, size_, off, len, MADV_SEQUENTIAL);
  advise(data_, size_, off, len, MADV_WILLNEED);
}
void MappedFile::advise_dontneed(size_t off, size_t len) const {
  if (backing_ != Backing::HugePages) advise(data_, size_, off, len, MADV_DONTNEED);
}

}  // namespace rvec::io
