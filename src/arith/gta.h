// Internal: the per-tensor state of a generalized task-arithmetic merge (engine.h's
// SparseJob) and its two phases, statistics (bounded-memory passes over the tensor's
// deltas) and the element-wise computation used by the engine's write phase.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "arith/engine.h"
#include "arith/sparsify.h"
#include "io/mapped_file.h"
#include "io/safetensors.h"

namespace rvec::arith::detail {

// Elements per statistics block; write items of sparse tensors start on block boundaries.
constexpr size_t kGtaBlock = size_t(1) << 16;

struct GtaPart {
  const io::TensorInfo* t;
  const io::MappedFile* file;
  uint64_t file_off;
  float coef;
};

struct GtaDelta {
  std::vector<GtaPart> parts;  // δ = Σ coef · tensor
  DeltaParams prm;
  bool identity = true;            // density >= 1: no sparsification, no rescale
  sparse::Boundary lo, hi;         // magnitude methods: kept iff rank < hi and not rank < lo
  std::vector<uint64_t> eq_lo, eq_hi;  // per block: elements equal to the threshold before it
  double scale = 1;                // L1 rescale factor
  double l1_before = 0, l1_after = 0;
  uint64_t kept = 0;               // entries kept by the sparsification
  uint64_t stream = 0, key = 0;    // random stream of this tensor and delta, its key under the seed
};

struct GtaPlan {
  std::string name;
  sparse::Method method = sparse::Method::None;
  bool consensus = false;
  uint64_t seed = 0;
  TensorParams tp;
  double vec_scale = 1;      // --scale / --include factor on the merged delta
  uint64_t n = 0, cols = 1;  // elements computed (common rows), row length (DELLA)
  std::vector<GtaDelta> deltas;
};

// Runs the statistics passes (thresholds, equal-count prefixes, rescale factors).
void gta_prepare(GtaPlan& p, size_t workers);

// Per-thread scratch of gta_add.
struct GtaScratch {
  const GtaPlan* plan = nullptr;
  uint64_t pos = UINT64_MAX;                 // next element expected (running counters valid)
  std::vector<uint64_t> cnt_lo, cnt_hi;      // per delta: equal-to-threshold elements seen
  std::vector<std::vector<float>> x;         // per delta: weighted sparsified values
  std::vector<float> tmp;
  // DELLA: per delta, the cached row and its keep probabilities.
  std::vector<int64_t> row;
  std::vector<std::vector<double>> probs;
  std::vector<float> rowbuf;
  std::vector<uint64_t> order;
};

// acc[i] += merged delta of elements [off, off + len) (len <= the engine's sub-chunk;
// off + len <= p.n). Calls for one plan must come in increasing `off` within a block run
// that starts on a block boundary.
void gta_add(const GtaPlan& p, uint64_t off, size_t len, float* acc, GtaScratch& s);

}  // namespace rvec::arith::detail
