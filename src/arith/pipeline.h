// An ordered producer/consumer pipeline on blocking threads (no spinning: the
// arithmetic shares the machine with the kernel's page-cache copies and the hash threads,
// and OpenMP's spin-waiting workers starved them).
#pragma once
#include <cstddef>
#include <functional>

namespace rvec::arith {

// Calls produce(i, slot) for every i in [0, n) on `workers` threads and consume(i, slot) on
// the calling thread in order i = 0, 1, ..., n - 1. Item i uses slot i % slots, and at most
// `slots` items are produced ahead of the consumer, so buffers indexed by slot are reused
// safely. The first exception thrown by produce or consume stops the pipeline and is
// rethrown here once every worker has stopped.
void run_ordered(size_t n, size_t workers, size_t slots, const std::function<void(size_t, size_t)>& produce,
                 const std::function<void(size_t, size_t)>& consume);

// Worker threads for the arithmetic: OMP_NUM_THREADS if set, else the hardware threads
// (only read through OpenMP's settings; no OpenMP team is started).
size_t arith_threads();

}  // namespace rvec::arith
