// A std::allocator that aligns every allocation to A bytes (a cache line by default), for
// buffers that vector kernels read: x rows of 64-byte-aligned buffers load without cache-line
// splits (malloc aligns to 16 bytes only).
#pragma once
#include <cstddef>
#include <new>
#include <vector>

namespace rvec {

template <class T, std::size_t A = 64>
struct AlignedAllocator {
  using value_type = T;
  template <class U>
  struct rebind {
    using other = AlignedAllocator<U, A>;
  };
  AlignedAllocator() = default;
  template <class U>
  AlignedAllocator(const AlignedAllocator<U, A>&) {}
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{A})); }
  void deallocate(T* p, std::size_t) { ::operator delete(p, std::align_val_t{A}); }
  friend bool operator==(const AlignedAllocator&, const AlignedAllocator&) { return true; }
};

template <class T>
using AlignedVector = std::vector<T, AlignedAllocator<T>>;

}  // namespace rvec
