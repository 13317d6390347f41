#include "io/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"
#include "core/input_file.h"

namespace rvec::io {

MappedFile::MappedFile(const std::filesystem::path& path) : path_(path) {
  InputFile in(path);  // refuses FIFOs and devices without blocking
  size_ = size_t(in.size());
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, in.fd(), 0);
    if (p == MAP_FAILED) fail("cannot map {}: {}", path.string(), std::strerror(errno));
    data_ = static_cast<const uint8_t*>(p);
  }
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
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

void MappedFile::advise_sequential(size_t off, size_t len) const {
  advise(data_, size_, off, len, MADV_SEQUENTIAL);
  advise(data_, size_, off, len, MADV_WILLNEED);
}
void MappedFile::advise_dontneed(size_t off, size_t len) const { advise(data_, size_, off, len, MADV_DONTNEED); }

}  // namespace rvec::io
