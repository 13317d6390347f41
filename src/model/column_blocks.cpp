#include "model/column_blocks.h"

#include <sys/mman.h>

#include <cstring>

#include "core/error.h"

namespace rvec::model {

OwnedBytes copy_to_column_blocks(Matrix& m, int64_t width) {
  if (width <= 0) fail("column blocks: width must be positive, not {}", width);
  const size_t es = dtype_size(m.dtype), bytes = m.bytes();
  // On 2 MB transparent huge pages where THP allows it (fewer TLB misses on the weight stream, as
  // io::Backing::HugePages gives the mapped weights); aligned_alloc wants a multiple of the alignment.
  const size_t huge = size_t(2) << 20, align = bytes >= huge ? huge : 64;
  const size_t size = (bytes + align - 1) / align * align;
  OwnedBytes buf(static_cast<uint8_t*>(std::aligned_alloc(align, size)));
  if (!buf) fail("cannot allocate {} bytes for the column blocks of a {}x{} matrix", bytes, m.rows, m.cols);
  if (align == huge) ::madvise(buf.get(), size, MADV_HUGEPAGE);  // fails harmlessly without THP
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

namespace {

// The decode matrices block_long_rows re-lays.
std::vector<const Matrix*> long_rows(const Weights& w, int64_t min_cols, int64_t width) {
  std::vector<const Matrix*> out;
  for (const Matrix* m : w.decode_matrices())
    if (m->cols > min_cols && m->cols > width && m->kblock == 0 && m->data != w.embed.data) out.push_back(m);
  return out;
}

}  // namespace

std::vector<OwnedBytes> block_long_rows(Weights& w, int64_t min_cols, int64_t width) {
  std::vector<OwnedBytes> owned;
  // w is not const here: its matrices may be re-pointed.
  for (const Matrix* m : long_rows(w, min_cols, width))
    owned.push_back(copy_to_column_blocks(const_cast<Matrix&>(*m), width));
  return owned;
}

uint64_t long_row_bytes(const Weights& w, int64_t min_cols, int64_t width) {
  uint64_t b = 0;
  for (const Matrix* m : long_rows(w, min_cols, width)) b += m->bytes();
  return b;
}

}  // namespace rvec::model
