// The read-sum loops behind `rvec bench`'s bounds: they must read every word they claim to
// (the sum of known words, whatever the thread count or the matrices' alignment).
#include "infer/read_sum.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <numeric>
#include <vector>

namespace {

TEST(ReadSum, SharesCoverEveryWordOnAnyTeam) {
  std::vector<uint64_t> a(1003);
  std::iota(a.begin(), a.end(), uint64_t(1));
  const uint64_t want = 1003 * 1004 / 2;
  for (int threads : {1, 2, 3, 7}) {
    uint64_t sum = 0;
#pragma omp parallel num_threads(threads) reduction(+ : sum)
    sum += rvec::infer::read_sum_share(a.data(), a.size());
    EXPECT_EQ(sum, want) << threads << " threads";
  }
}

TEST(ReadSum, MatricesAreReadInPlaceOverTheirAlignedInteriors) {
  // Two bf16 matrices in one buffer; the second starts 2 bytes past an 8-byte boundary, as a
  // safetensors tensor may: its first 3 and last 1 bf16 lie outside whole 8-byte words.
  std::vector<uint64_t> buf(64, 0);
  auto* h = reinterpret_cast<uint16_t*>(buf.data());
  for (int i = 0; i < 32; ++i) h[i] = 1;  // matrix a: 4 x 8, aligned: 8 words of 0x0001000100010001
  for (int i = 0; i < 40; ++i) h[33 + i] = 2;  // matrix b: 5 x 8 at byte 66
  const rvec::model::Matrix a{rvec::DType::BF16, h, 4, 8}, b{rvec::DType::BF16, h + 33, 5, 8};
  const uint64_t one = 0x0001000100010001ull;
  // b's bytes [66, 146): whole words [72, 144) = 9 words of 2s.
  const rvec::model::Matrix* both[] = {&a, &b};
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    EXPECT_EQ(rvec::infer::read_sum_matrices(both), 8 * one + 9 * 2 * one) << threads << " threads";
  }
}

}  // namespace
