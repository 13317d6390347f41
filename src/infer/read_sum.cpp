#include "infer/read_sum.h"

#include <omp.h>

namespace rvec::infer {

uint64_t read_sum_share(const uint64_t* a, size_t n) {
  const size_t nt = size_t(omp_get_num_threads()), t = size_t(omp_get_thread_num());
  const size_t per = n / nt / 8 * 8, beg = t * per, end = t + 1 == nt ? n : beg + per;
  uint64_t s[8] = {};
  size_t i = beg;
  for (; i + 8 <= end; i += 8)
    for (int k = 0; k < 8; ++k) s[k] += a[i + k];
  for (; i < end; ++i) s[0] += a[i];
  uint64_t sum = 0;
  for (int k = 0; k < 8; ++k) sum += s[k];
  return sum;
}

uint64_t read_sum_matrices(std::span<const model::Matrix* const> ms) {
  uint64_t sum = 0;
#pragma omp parallel reduction(+ : sum)
  for (const model::Matrix* m : ms) {
    const auto b = reinterpret_cast<uintptr_t>(m->data), e = b + m->bytes();
    const uintptr_t ab = (b + 7) / 8 * 8, ae = e / 8 * 8;
    if (ab < ae) sum += read_sum_share(reinterpret_cast<const uint64_t*>(ab), (ae - ab) / 8);
  }
  return sum;
}

}  // namespace rvec::infer
