#include "model/column_blocks.h"

#include <cstring>

#include "core/error.h"

namespace rvec::model {

namespace {

OwnedBytes to_column_blocks(Matrix& m, int64_t width) {
  const size_t es = dtype_size(m.dtype), bytes = m.bytes();
  // 64-byte aligned (a cache line; aligned_alloc wants a multiple of the alignment)
  OwnedBytes buf(static_cast<uint8_t*>(std::aligned_alloc(64, (bytes + 63) / 64 * 64)));
  if (!buf) fail("cannot allocate {} bytes for the column blocks of a {}x{} matrix", bytes, m.rows, m.cols);
  const auto* src = static_cast<const uint8_t*>(m.data);
  Matrix out{m.dtype, buf.get(), m.rows, m.cols, width};
  for (int64_t b = 0; b < out.blocks(); ++b) {
    const Matrix blk = out.block(b);
    auto* d = static_cast<uint8_t*>(const_cast<void*>(blk.data));
    const size_t c0 = size_t(b * width), row = size_t(blk.cols) * es;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < m.rows; ++r) std::memcpy(d + size_t(r) * row, src + (size_t(r) * size_t(m.cols) + c0) * es, row);
  }
  m = out;
  return buf;
}

}  // namespace

std::vector<OwnedBytes> block_long_rows(Weights& w, int64_t min_cols, int64_t width) {
  if (width <= 0) fail("column blocks: width must be positive, not {}", width);
  std::vector<OwnedBytes> owned;
  auto visit = [&](Matrix& m) {
    if (m.cols > min_cols && m.cols > width && m.kblock == 0 && m.data != w.embed.data)
      owned.push_back(to_column_blocks(m, width));
  };
  for (auto& l : w.layers)
    for (Linear* lin : {&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down}) visit(lin->w);
  visit(w.lm_head.w);
  return owned;
}

}  // namespace rvec::model
