#include "arith/gta.h"

#include <algorithm>
#include <cmath>

#include "arith/kernels.h"
#include "arith/pipeline.h"
#include "core/dtype.h"
#include "core/error.h"

namespace rvec::arith::detail {

namespace {

constexpr size_t kSubG = size_t(2) << 10;  // elements loaded at once inside a block

// δ over elements [off, off + len) into out (tmp: scratch of len floats).
void load_delta(const GtaDelta& d, uint64_t off, size_t len, float* out, float* tmp) {
  bool first = true;
  for (const auto& p : d.parts) {
    const uint8_t* src = p.t->data + off * dtype_size(p.t->dtype);
    if (first) {
      to_f32(p.t->dtype, src, out, len);
      if (p.coef != 1.0f)
        for (size_t i = 0; i < len; ++i) out[i] *= p.coef;
      first = false;
    } else {
      to_f32(p.t->dtype, src, tmp, len);
      axpy(out, tmp, p.coef, len);
    }
  }
  if (first) std::fill(out, out + len, 0.0f);
}

// "Rank < b.k" for the next element in index order with key `key` (cnt: elements equal to
// the threshold seen so far, advanced here).
inline bool below(const sparse::Boundary& b, uint32_t key, uint64_t& cnt) {
  if (b.all) return true;
  if (b.none) return false;
  if (key > b.key_t) return true;
  if (key == b.key_t) return cnt++ < b.quota;
  return false;
}

bool magnitude_method(sparse::Method m) {
  return m == sparse::Method::Magnitude || m == sparse::Method::MagnitudeOutliers;
}

void ensure(GtaScratch& s, const GtaPlan& p, size_t len) {
  const size_t nd = p.deltas.size();
  if (s.x.size() < nd) s.x.resize(nd);
  for (auto& v : s.x)
    if (v.size() < len) v.resize(len);
  const size_t t = std::max<size_t>(len, p.method == sparse::Method::Della ? p.cols : 0);
  if (s.tmp.size() < t) s.tmp.resize(t);
  if (s.plan != &p) {
    s.plan = &p;
    s.pos = UINT64_MAX;
    s.row.assign(nd, -1);
    s.probs.resize(nd);
    s.cnt_lo.assign(nd, 0);
    s.cnt_hi.assign(nd, 0);
  }
}

// DELLA keep decision for element e of delta d.
bool della_keep(const GtaPlan& p, size_t d, uint64_t e, GtaScratch& s) {
  const GtaDelta& g = p.deltas[d];
  const int64_t r = int64_t(e / p.cols);
  if (s.row[d] != r) {
    s.rowbuf.resize(p.cols);
    s.probs[d].resize(p.cols);
    load_delta(g, uint64_t(r) * p.cols, size_t(p.cols), s.rowbuf.data(), s.tmp.data());
    sparse::della_probs(s.rowbuf.data(), size_t(p.cols), g.prm.density, g.prm.epsilon, s.order, s.probs[d].data());
    s.row[d] = r;
  }
  return sparse::uniform_keyed(g.key, e) < s.probs[d][size_t(e - uint64_t(r) * p.cols)];
}

// Keeps or zeroes x[0, len) of delta d (elements off...), advancing the running counters.
// Returns the number kept.
uint64_t apply_mask(const GtaPlan& p, size_t d, uint64_t off, size_t len, float* x, GtaScratch& s) {
  const GtaDelta& g = p.deltas[d];
  if (g.identity) return len;
  uint64_t kept = 0;
  switch (p.method) {
    case sparse::Method::Magnitude:
    case sparse::Method::MagnitudeOutliers:
      for (size_t i = 0; i < len; ++i) {
        const uint32_t k = sparse::mag_key(x[i]);
        const bool in_hi = below(g.hi, k, s.cnt_hi[d]);
        const bool in_lo = below(g.lo, k, s.cnt_lo[d]);
        const bool keep = in_hi && !in_lo;
        kept += keep;
        if (!keep) x[i] = 0;
      }
      break;
    case sparse::Method::Random:
      for (size_t i = 0; i < len; ++i) {
        const bool keep = sparse::uniform_keyed(g.key, off + i) < g.prm.density;
        kept += keep;
        if (!keep) x[i] = 0;
      }
      break;
    case sparse::Method::Della:
      for (size_t i = 0; i < len; ++i) {
        const bool keep = g.prm.density > 0 && della_keep(p, d, off + i, s);
        kept += keep;
        if (!keep) x[i] = 0;
      }
      break;
    default: return len;
  }
  return kept;
}

// Positions the running counters of s at element off (a block start unless continuing).
void seek(const GtaPlan& p, uint64_t off, GtaScratch& s) {
  if (s.pos == off) return;
  if (off % kGtaBlock != 0) fail("internal: sparse item at {} is not block-aligned", off);
  const size_t b = size_t(off / kGtaBlock);
  for (size_t d = 0; d < p.deltas.size(); ++d) {
    const GtaDelta& g = p.deltas[d];
    s.cnt_lo[d] = g.eq_lo.empty() ? 0 : g.eq_lo[b];
    s.cnt_hi[d] = g.eq_hi.empty() ? 0 : g.eq_hi[b];
  }
}

// Runs fn(block, slot) over the blocks of p on the workers; pages of the inputs are dropped
// from the process once consumed, every kDropBlocks blocks (each drop also covers the 4 MB
// before its range, so dropping per 64K-entry block would redo that 16-32 times).
template <typename F>
void for_blocks(const GtaPlan& p, size_t workers, size_t slots, F&& fn) {
  constexpr uint64_t kDropBlocks = 32;
  const uint64_t nb = (p.n + kGtaBlock - 1) / kGtaBlock;
  run_ordered(size_t(nb), workers, slots, fn, [&](size_t b, size_t) {
    if ((b + 1) % kDropBlocks != 0 && b + 1 != nb) return;
    const uint64_t lo = (uint64_t(b) / kDropBlocks) * kDropBlocks * kGtaBlock;
    const uint64_t hi = std::min<uint64_t>(p.n, (uint64_t(b) + 1) * kGtaBlock);
    for (const auto& g : p.deltas)
      for (const auto& part : g.parts) drop_consumed(*part.file, part.file_off, dtype_size(part.t->dtype), lo, hi);
  });
}

// Runs fn(block, slot, d, off, x, len) for each sub-chunk [off, off + len) of each block
// and each delta d with want(d), δ_d loaded into x.
template <typename Want, typename F>
void for_subchunks(const GtaPlan& p, size_t workers, std::vector<std::vector<float>>& buf, Want want, F&& fn) {
  for_blocks(p, workers, buf.size(), [&](size_t b, size_t slot) {
    const uint64_t lo = uint64_t(b) * kGtaBlock, hi = std::min<uint64_t>(p.n, lo + kGtaBlock);
    float* x = buf[slot].data();
    for (size_t d = 0; d < p.deltas.size(); ++d) {
      if (!want(d)) continue;
      for (uint64_t off = lo; off < hi; off += kSubG) {
        const size_t len = size_t(std::min<uint64_t>(kSubG, hi - off));
        load_delta(p.deltas[d], off, len, x, x + kSubG);
        fn(b, slot, d, off, x, len);
      }
    }
  });
}

}  // namespace

void gta_prepare(GtaPlan& p, size_t workers) {
  // Histograms live on the heap (512 KB each): callers may run on threads with small stacks.
  const size_t nd = p.deltas.size();
  const uint64_t n = p.n;
  const uint64_t nb = (n + kGtaBlock - 1) / kGtaBlock;
  const size_t slots = workers + 1;
  bool need_mag = false, need_rand = false;
  for (size_t d = 0; d < nd; ++d) {
    GtaDelta& g = p.deltas[d];
    g.stream = sparse::stream_id(p.name, d);
    g.key = sparse::stream_key(p.seed, g.stream);
    g.identity = p.method == sparse::Method::None || g.prm.density >= 1;
    g.scale = 1;
    g.kept = n;
    if (g.identity || n == 0) {
      g.identity = true;
      continue;
    }
    if (p.method == sparse::Method::Della && g.prm.density > 0 &&
        (g.prm.density + g.prm.epsilon >= 1 || g.prm.density - g.prm.epsilon <= 0))
      fail("tensor '{}': DELLA needs density - epsilon > 0 and density + epsilon < 1 (density {}, epsilon {})", p.name,
           g.prm.density, g.prm.epsilon);
    if (magnitude_method(p.method)) {
      const sparse::Window w = p.method == sparse::Method::Magnitude
                                   ? sparse::magnitude_window(n, g.prm.density)
                                   : sparse::outliers_window(n, g.prm.density, g.prm.gamma);
      if (p.method == sparse::Method::Magnitude && w.hi == 0)
        fail("tensor '{}': density {} keeps none of its {} entries (mergekit refuses this too); raise the density "
             "or exclude the tensor",
             p.name, g.prm.density, n);
      g.lo.k = w.lo;
      g.hi.k = w.hi;
      g.kept = w.hi - w.lo;
      for (sparse::Boundary* b : {&g.lo, &g.hi}) {
        b->none = b->k == 0;
        b->all = b->k >= n;
        if (!b->none && !b->all) need_mag = true;
      }
    } else {
      need_rand = true;
    }
  }
  if (!need_mag && !need_rand) return;

  std::vector<double> l1_block(size_t(nb) * nd, 0.0);
  std::vector<uint64_t> kept_block(size_t(nb) * nd, 0);
  std::vector<std::vector<float>> buf(slots, std::vector<float>(2 * kSubG));

  if (need_mag) {
    // Pass A: high-16-bit histograms of |δ| (per slot: one producer at a time per slot)
    // and per-block L1 norms.
    std::vector<std::vector<sparse::Hist>> hh(slots, std::vector<sparse::Hist>(nd));
    for (auto& v : hh)
      for (auto& h : v) h.fill(0);
    auto active = [&](size_t d) { return !p.deltas[d].identity; };
    for_subchunks(p, workers, buf, active, [&](size_t b, size_t slot, size_t d, uint64_t, const float* x, size_t len) {
      double l1 = 0;
      for (size_t i = 0; i < len; ++i) {
        hh[slot][d][sparse::mag_key(x[i]) >> 16]++;
        l1 += std::fabs(double(x[i]));
      }
      l1_block[size_t(b) * nd + d] += l1;
    });
    // Pass B: low-16-bit histograms inside the bin of each threshold.
    struct Want {
      size_t d;
      sparse::Boundary* b;
      sparse::HiSel sel;
    };
    std::vector<Want> wants;
    for (size_t d = 0; d < nd; ++d) {
      if (p.deltas[d].identity) continue;
      sparse::Hist& tot = hh[0][d];  // the slots' counts summed into slot 0's
      for (size_t s = 1; s < slots; ++s)
        for (size_t i = 0; i < tot.size(); ++i) tot[i] += hh[s][d][i];
      for (sparse::Boundary* b : {&p.deltas[d].lo, &p.deltas[d].hi})
        if (!b->none && !b->all) wants.push_back({d, b, sparse::select_hi(tot, b->k)});
    }
    hh.clear();
    std::vector<std::vector<sparse::Hist>> hl(slots, std::vector<sparse::Hist>(wants.size()));
    for (auto& v : hl)
      for (auto& h : v) h.fill(0);
    auto wanted = [&](size_t d) {
      for (auto& w : wants)
        if (w.d == d) return true;
      return false;
    };
    for_subchunks(p, workers, buf, wanted, [&](size_t, size_t slot, size_t d, uint64_t, const float* x, size_t len) {
      for (size_t wi = 0; wi < wants.size(); ++wi) {
        if (wants[wi].d != d) continue;
        const uint32_t bin = wants[wi].sel.hi;
        for (size_t i = 0; i < len; ++i) {
          const uint32_t k = sparse::mag_key(x[i]);
          if ((k >> 16) == bin) hl[slot][wi][k & 0xffff]++;
        }
      }
    });
    for (size_t wi = 0; wi < wants.size(); ++wi) {
      sparse::Hist& tot = hl[0][wi];
      for (size_t s = 1; s < slots; ++s)
        for (size_t i = 0; i < tot.size(); ++i) tot[i] += hl[s][wi][i];
      const uint64_t k = wants[wi].b->k;
      *wants[wi].b = sparse::select_lo(wants[wi].sel, tot, k);
    }
    hl.clear();
    // Pass C: per block, the elements equal to each threshold and the L1 mass above it.
    std::vector<uint64_t> eq(size_t(nb) * wants.size(), 0);
    std::vector<double> above(size_t(nb) * wants.size(), 0.0);
    for_subchunks(p, workers, buf, wanted, [&](size_t b, size_t, size_t d, uint64_t, const float* x, size_t len) {
      for (size_t wi = 0; wi < wants.size(); ++wi) {
        if (wants[wi].d != d) continue;
        const uint32_t t = wants[wi].b->key_t;
        uint64_t c = 0;
        double s = 0;
        for (size_t i = 0; i < len; ++i) {
          const uint32_t k = sparse::mag_key(x[i]);
          c += k == t;
          if (k > t) s += std::fabs(double(x[i]));
        }
        eq[size_t(b) * wants.size() + wi] += c;
        above[size_t(b) * wants.size() + wi] += s;
      }
    });
    for (size_t wi = 0; wi < wants.size(); ++wi) {
      GtaDelta& g = p.deltas[wants[wi].d];
      auto& pre = wants[wi].b == &g.lo ? g.eq_lo : g.eq_hi;
      pre.assign(size_t(nb), 0);
      uint64_t c = 0;
      for (uint64_t b = 0; b < nb; ++b) {
        pre[size_t(b)] = c;
        c += eq[size_t(b) * wants.size() + wi];
      }
    }
    // L1 of "rank < k": the mass above the threshold plus `quota` entries equal to it.
    for (size_t d = 0; d < nd; ++d) {
      GtaDelta& g = p.deltas[d];
      if (g.identity || !magnitude_method(p.method)) continue;
      g.l1_before = 0;
      for (uint64_t b = 0; b < nb; ++b) g.l1_before += l1_block[size_t(b) * nd + d];
      auto mass = [&](const sparse::Boundary& bd) {
        if (bd.none) return 0.0;
        if (bd.all) return g.l1_before;
        size_t wi = 0;
        while (wants[wi].b != &bd) ++wi;
        double s = 0;
        for (uint64_t b = 0; b < nb; ++b) s += above[size_t(b) * wants.size() + wi];
        return s + double(bd.quota) * double(bd.value());
      };
      g.l1_after = mass(g.hi) - mass(g.lo);
      if (p.tp.rescale) g.scale = sparse::l1_rescale(g.l1_before, g.l1_after);
    }
  }

  if (need_rand) {
    // One pass: per block, L1 before and after the random mask (and the kept count).
    std::vector<double> l1_after_block(size_t(nb) * nd, 0.0);
    std::vector<GtaScratch> sc(slots);
    auto active = [&](size_t d) { return !p.deltas[d].identity; };
    for_subchunks(p, workers, buf, active, [&](size_t b, size_t slot, size_t d, uint64_t off, float* x, size_t len) {
      GtaScratch& s = sc[slot];
      ensure(s, p, kSubG);
      double before = 0, after = 0;
      for (size_t i = 0; i < len; ++i) before += std::fabs(double(x[i]));
      kept_block[size_t(b) * nd + d] += apply_mask(p, d, off, len, x, s);
      for (size_t i = 0; i < len; ++i) after += std::fabs(double(x[i]));
      l1_block[size_t(b) * nd + d] += before;
      l1_after_block[size_t(b) * nd + d] += after;
    });
    for (size_t d = 0; d < nd; ++d) {
      GtaDelta& g = p.deltas[d];
      if (g.identity) continue;
      g.l1_before = g.l1_after = 0;
      g.kept = 0;
      for (uint64_t b = 0; b < nb; ++b) {
        g.kept += kept_block[size_t(b) * nd + d];
        g.l1_before += l1_block[size_t(b) * nd + d];
        g.l1_after += l1_after_block[size_t(b) * nd + d];
      }
      if (p.tp.rescale) g.scale = sparse::l1_rescale(g.l1_before, g.l1_after);
    }
  }
}

void gta_add(const GtaPlan& p, uint64_t off, size_t len, float* acc, GtaScratch& s) {
  ensure(s, p, len);
  seek(p, off, s);
  const size_t nd = p.deltas.size();
  double wsum = 0;
  for (size_t d = 0; d < nd; ++d) {
    const GtaDelta& g = p.deltas[d];
    float* x = s.x[d].data();
    load_delta(g, off, len, x, s.tmp.data());
    apply_mask(p, d, off, len, x, s);
    const float sc = float(g.scale), w = float(g.prm.weight);
    if (sc != 1.0f)
      for (size_t i = 0; i < len; ++i) x[i] *= sc;
    for (size_t i = 0; i < len; ++i) x[i] *= w;
    wsum += g.prm.weight;
  }
  s.pos = off + len;
  const float lambda = float(p.tp.lambda), vs = float(p.vec_scale);
  const float div_lin = float(std::fabs(wsum) < 1e-8 ? 1.0 : wsum);
  for (size_t i = 0; i < len; ++i) {
    float mixed = 0, div = 0;
    if (p.consensus) {
      float sum = 0;
      for (size_t d = 0; d < nd; ++d) sum += s.x[d][i];
      const bool pos = sum >= 0;
      for (size_t d = 0; d < nd; ++d) {
        const float xi = s.x[d][i];
        if (pos ? xi > 0 : xi < 0) {
          mixed += xi;
          div += float(p.deltas[d].prm.weight);
        }
      }
      if (div == 0) div = 1;
    } else {
      for (size_t d = 0; d < nd; ++d) mixed += s.x[d][i];
      div = div_lin;
    }
    if (p.tp.normalize) mixed /= div;
    if (lambda != 1.0f) mixed *= lambda;
    if (vs != 1.0f) mixed *= vs;
    acc[i] += mixed;
  }
}

}  // namespace rvec::arith::detail
