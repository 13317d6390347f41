// Column blocks for matrices with long rows (Matrix::kblock). A batch-1 decode product streams
// each weight row once against the whole activation row x, which must stay in L1 while the
// weights stream through: at 19 KB of x (Qwen2.5-0.5B's down projection, K = 4864) the gemv
// reads at 0.70-0.82 of the read-sum rate, in blocks of 1024 (4 KB) at 0.91-0.95 (Zen 5, 2 threads;
// `infer_kernels_bench --benchmark_filter=DecodeDown`). Reading a row-major matrix block by
// block would jump between rows (short strided streams, 0.24-0.46 of the rate); stored as
// column blocks, each block is one contiguous stream with a short x.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <vector>

#include "model/weights.h"

namespace rvec::model {

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};
using OwnedBytes = std::unique_ptr<uint8_t, FreeDeleter>;

// Copies m into column blocks of `width` columns (width > 0) and points m at the copy, which
// must outlive m.
OwnedBytes copy_to_column_blocks(Matrix& m, int64_t width);

// Copies every layer and lm_head matrix with more than min_cols columns into column blocks of
// `width` columns (width > 0) and points the Matrix at the copy; the embedding (and a tied
// lm_head, which is the embedding) stays in place, since token lookup reads its rows. Returns
// the copies, which must outlive `w`. Values are unchanged; products over blocks sum in
// another order (f32 rounding).
std::vector<OwnedBytes> block_long_rows(Weights& w, int64_t min_cols, int64_t width);
// The bytes block_long_rows(w, min_cols, width) would copy.
uint64_t long_row_bytes(const Weights& w, int64_t min_cols, int64_t width);

}  // namespace rvec::model
