// The memory-read pattern that bounds batch-1 decode (every weight read once, nothing
// written): n 64-bit words summed by the calling OpenMP team, each thread one contiguous half
// with 8 independent sums. `rvec bench` times it for the decode bandwidth bound, and the
// kernel benchmark as the baseline of its Decode runs.
#pragma once
#include <cstddef>
#include <cstdint>

namespace rvec::infer {

// Call inside `#pragma omp parallel`; returns this thread's partial sum (add them up).
uint64_t read_sum_share(const uint64_t* a, size_t n);

}  // namespace rvec::infer
