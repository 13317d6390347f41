// The memory-read pattern that bounds batch-1 decode (every weight read once, nothing
// written): n 64-bit words summed by the calling OpenMP team, each thread one contiguous half
// with 8 independent sums. `rvec bench` times it for the decode bandwidth bound, and the
// kernel benchmark as the baseline of its Decode runs.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>

#include "model/weights.h"

namespace rvec::infer {

// Call inside `#pragma omp parallel`; returns this thread's partial sum (add them up).
uint64_t read_sum_share(const uint64_t* a, size_t n);

// The same over matrices in place (their 8-byte-aligned interiors), each thread its share of
// each matrix, all in one parallel region on all threads: one pass reads what a decode step
// reads from the same pages. Returns the sum (for a checksum that keeps the loads).
uint64_t read_sum_matrices(std::span<const model::Matrix* const> ms);

}  // namespace rvec::infer
