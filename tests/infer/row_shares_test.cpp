// RowShares: every output row of every matrix is handed out exactly once, in units that do
// not cross matrices, whatever the team; an owner streams its share front to back; a
// thread that never runs (a descheduled vCPU) has its share taken from the back by others.
#include "infer/row_shares.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <mutex>
#include <tuple>
#include <vector>

using rvec::infer::RowShares;

namespace {

using Range = std::tuple<size_t, int64_t, int64_t>;  // matrix, o0, o1

// Runs the shares on `running` threads (of a team planned for more or fewer) and returns the
// ranges in the order each was handed out (per thread when running is 1).
std::vector<Range> run(RowShares& s, int running) {
  std::vector<Range> got;
  std::mutex mu;
#pragma omp parallel num_threads(running)
  s.run([&](size_t i, int64_t o0, int64_t o1) {
    std::lock_guard<std::mutex> lk(mu);
    got.emplace_back(i, o0, o1);
  });
  return got;
}

}  // namespace

TEST(RowShares, EveryRowOnceInWholeUnitsOfOneMatrix) {
  const std::vector<int64_t> rows = {896, 128, 128, 37};
  for (int planned : {1, 2, 3, 4, 7})
    for (int running : {1, 2, 3, 4})
      for (int64_t chunk : {1, 3, 64}) {
        RowShares s(rows, 16, chunk, planned);
        std::vector<std::vector<int>> seen;
        for (int64_t r : rows) seen.emplace_back(size_t(r), 0);
        for (auto [i, o0, o1] : run(s, running)) {
          ASSERT_LT(i, rows.size());
          ASSERT_LT(o0, o1);
          ASSERT_LE(o1, rows[i]);
          EXPECT_EQ(o0 % 16, 0);
          EXPECT_TRUE(o1 % 16 == 0 || o1 == rows[i]);
          for (int64_t o = o0; o < o1; ++o) seen[i][size_t(o)]++;
        }
        for (size_t i = 0; i < rows.size(); ++i)
          for (int64_t o = 0; o < rows[i]; ++o)
            ASSERT_EQ(seen[i][size_t(o)], 1) << "matrix " << i << " row " << o << " planned " << planned << " running "
                                             << running << " chunk " << chunk;
      }
}

TEST(RowShares, OwnerStreamsFrontToBackThenStealsFromTheBack) {
  // 64 rows = 4 units; two shares: units [0, 2) and [2, 4). Only thread 0 runs: its share in
  // chunks of one unit from the front, then the other share one unit at a time from the back.
  RowShares s({64}, 16, 1, 2);
  EXPECT_EQ(run(s, 1), (std::vector<Range>{{0, 0, 16}, {0, 16, 32}, {0, 48, 64}, {0, 32, 48}}));
  // A chunk spanning two matrices is split at the boundary; a partial last unit ends at the
  // matrix's last row.
  RowShares t({20, 40}, 16, 8, 1);
  EXPECT_EQ(run(t, 1), (std::vector<Range>{{0, 0, 20}, {1, 0, 40}}));
}
