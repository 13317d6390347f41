// The output rows of decode-shaped products (several matrices in a row, e.g. q, k, v),
// split over a thread team: thread t owns one contiguous share of the rows, which it takes
// from the front in chunks, so it streams its weights as one run and the hardware
// prefetchers ramp up once per product; a thread done with its share takes single units from
// the back of another thread's share, so a descheduled vCPU (a shared machine) does not hold
// the step. Which thread computes a row changes no results.
#pragma once
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <vector>

namespace rvec::infer {

class RowShares {
 public:
  // rows[i]: the output rows of matrix i; unit: rows per indivisible piece (a tile's rows);
  // chunk_units: units an owner takes from its front at once; threads: the team's size.
  RowShares(std::vector<int64_t> rows, int64_t unit, int64_t chunk_units, int threads)
      : rows_(std::move(rows)), unit_(unit), chunk_(std::max<int64_t>(1, chunk_units)), shares_(size_t(threads)) {
    first_unit_.push_back(0);
    for (int64_t r : rows_) first_unit_.push_back(first_unit_.back() + (r + unit_ - 1) / unit_);
    const int64_t total = first_unit_.back();
    for (int t = 0; t < threads; ++t) {
      const uint64_t f = uint64_t(total * t / threads), b = uint64_t(total * (t + 1) / threads);
      shares_[size_t(t)].range.store(f << 32 | b, std::memory_order_relaxed);
    }
  }

  // Called by every thread of the team: f(matrix index, o0, o1) for row ranges until all
  // rows are done.
  template <class F>
  void run(F&& f) {
    const int n = int(shares_.size()), me = omp_get_thread_num() % n;
    int64_t u0, u1;
    while (take(shares_[size_t(me)], true, u0, u1)) emit(u0, u1, f);
    for (int k = 1; k < n; ++k)
      while (take(shares_[size_t((me + k) % n)], false, u0, u1)) emit(u0, u1, f);
  }

 private:
  struct alignas(64) Share {
    std::atomic<uint64_t> range{0};  // front << 32 | back, in units; empty when front >= back
  };

  // The owner takes a chunk from the front; a thief takes one unit from the back (the share's
  // end waits for no larger piece than a unit).
  bool take(Share& s, bool owner, int64_t& u0, int64_t& u1) {
    uint64_t r = s.range.load(std::memory_order_relaxed);
    for (;;) {
      const int64_t f = int64_t(r >> 32), b = int64_t(r & 0xffffffffu);
      if (f >= b) return false;
      const int64_t nf = owner ? std::min(b, f + chunk_) : f, nb = owner ? b : b - 1;
      if (s.range.compare_exchange_weak(r, uint64_t(nf) << 32 | uint64_t(nb), std::memory_order_relaxed)) {
        u0 = owner ? f : nb;
        u1 = owner ? nf : b;
        return true;
      }
    }
  }

  // Units [u0, u1) as row ranges of one matrix each.
  template <class F>
  void emit(int64_t u0, int64_t u1, F& f) const {
    size_t i = size_t(std::upper_bound(first_unit_.begin(), first_unit_.end(), u0) - first_unit_.begin()) - 1;
    while (u0 < u1) {
      const int64_t e = std::min(u1, first_unit_[i + 1]);
      const int64_t o0 = (u0 - first_unit_[i]) * unit_, o1 = std::min(rows_[i], (e - first_unit_[i]) * unit_);
      f(i, o0, o1);
      u0 = e;
      ++i;
    }
  }

  std::vector<int64_t> rows_;
  std::vector<int64_t> first_unit_;  // first unit of each matrix, then the total
  int64_t unit_, chunk_;
  std::vector<Share> shares_;
};

}  // namespace rvec::infer
