#include "arith/pipeline.h"

#include <omp.h>

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace rvec::arith {

void run_ordered(size_t n, size_t workers, size_t slots, const std::function<void(size_t, size_t)>& produce,
                 const std::function<void(size_t, size_t)>& consume) {
  if (n == 0) return;
  if (slots == 0) slots = 1;
  if (workers == 0) {  // inline: produce and consume each item in turn
    for (size_t i = 0; i < n; ++i) {
      produce(i, i % slots);
      consume(i, i % slots);
    }
    return;
  }
  std::mutex mu;
  std::condition_variable cv;
  size_t next = 0, consumed = 0;
  std::vector<char> ready(slots, 0);
  std::exception_ptr err;
  auto worker = [&] {
    std::unique_lock<std::mutex> l(mu);
    for (;;) {
      cv.wait(l, [&] { return err || next >= n || next < consumed + slots; });
      if (err || next >= n) return;
      const size_t i = next++;
      l.unlock();
      try {
        produce(i, i % slots);
      } catch (...) {
        l.lock();
        if (!err) err = std::current_exception();
        cv.notify_all();
        return;
      }
      l.lock();
      ready[i % slots] = 1;
      cv.notify_all();
    }
  };
  std::vector<std::thread> th;
  th.reserve(workers);
  for (size_t t = 0; t < std::min(workers, n); ++t) th.emplace_back(worker);
  try {
    for (size_t i = 0; i < n; ++i) {
      {
        std::unique_lock<std::mutex> l(mu);
        cv.wait(l, [&] { return err || ready[i % slots]; });
        if (err) break;
      }
      consume(i, i % slots);
      std::lock_guard<std::mutex> l(mu);
      ready[i % slots] = 0;
      ++consumed;
      cv.notify_all();
    }
  } catch (...) {
    std::lock_guard<std::mutex> l(mu);
    if (!err) err = std::current_exception();
    cv.notify_all();
  }
  for (auto& t : th) t.join();
  if (err) std::rethrow_exception(err);
}

size_t arith_threads() { return size_t(std::max(1, omp_get_max_threads())); }

}  // namespace rvec::arith
