// block_long_rows: which matrices it re-lays and where each element lands (Matrix::kblock's
// definition in model/weights.h, checked element by element).
#include "model/column_blocks.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

namespace {

using rvec::DType;
using rvec::model::Matrix;

std::vector<float> iota_matrix(int64_t rows, int64_t cols, float base) {
  std::vector<float> v(size_t(rows * cols));
  for (size_t i = 0; i < v.size(); ++i) v[i] = base + float(i);
  return v;
}

float at(const Matrix& m, int64_t r, int64_t c) {  // element (r, c) through the blocks
  const Matrix b = m.block(c / (m.kblock > 0 ? m.kblock : m.cols));
  float v;
  std::memcpy(&v, static_cast<const uint8_t*>(b.data) + size_t(r * b.cols + c % (m.kblock > 0 ? m.kblock : m.cols)) * 4, 4);
  return v;
}

TEST(ColumnBlocks, LongRowsAreReLaidBlockByBlockAndTheEmbeddingStays) {
  // One layer: q/k/v/o 10 columns, gate/up 10 columns, down 22 columns; lm_head 10 columns.
  auto q = iota_matrix(6, 10, 0), down = iota_matrix(5, 22, 1000), embed = iota_matrix(7, 10, 5000),
       head = iota_matrix(7, 10, 9000);
  rvec::model::Weights w;
  w.embed = {DType::F32, embed.data(), 7, 10};
  w.layers.resize(1);
  auto& l = w.layers[0];
  for (auto* lin : {&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up}) lin->w = {DType::F32, q.data(), 6, 10};
  l.down.w = {DType::F32, down.data(), 5, 22};
  w.lm_head.w = {DType::F32, head.data(), 7, 10};

  // Rows over 12 columns only: down alone, in blocks of 8, 8 and 6 columns.
  EXPECT_EQ(rvec::model::long_row_bytes(w, 12, 8), 5u * 22 * 4);
  auto owned = rvec::model::block_long_rows(w, 12, 8);
  ASSERT_EQ(owned.size(), 1u);
  EXPECT_EQ(l.down.w.kblock, 8);
  EXPECT_EQ(l.down.w.blocks(), 3);
  EXPECT_EQ(l.down.w.block(2).cols, 6);
  EXPECT_EQ(l.down.w.data, owned[0].get());
  EXPECT_EQ(l.q.w.kblock, 0);
  EXPECT_EQ(l.q.w.data, q.data());
  // Block 1 starts after block 0's 5 x 8 elements; its row 2 holds columns 8..15 of row 2.
  EXPECT_EQ(static_cast<const float*>(l.down.w.data)[40 + 2 * 8 + 3], 1000.f + 2 * 22 + 11);
  for (int64_t r = 0; r < 5; ++r)
    for (int64_t c = 0; c < 22; ++c) ASSERT_EQ(at(l.down.w, r, c), 1000.f + float(r * 22 + c)) << r << "," << c;

  // Every row longer than 4 columns: all but the embedding and a lm_head tied to it.
  w.lm_head.w = w.embed;
  EXPECT_EQ(rvec::model::long_row_bytes(w, 4, 4), 6u * 6 * 10 * 4);
  owned = rvec::model::block_long_rows(w, 4, 4);
  EXPECT_EQ(owned.size(), 6u);  // q k v o gate up (down is blocked already)
  EXPECT_EQ(w.embed.kblock, 0);
  EXPECT_EQ(w.lm_head.w.data, embed.data());
  EXPECT_EQ(l.gate.w.kblock, 4);
  for (int64_t r = 0; r < 6; ++r)
    for (int64_t c = 0; c < 10; ++c) ASSERT_EQ(at(l.gate.w, r, c), float(r * 10 + c));
}

}  // namespace
