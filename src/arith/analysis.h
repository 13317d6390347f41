// How sparse and how low-rank a task vector is (`rvec inspect --spectrum --rank`):
//  - sparsity spectrum: the fraction of the L2 mass (Σ v²) held by the top 1 / 5 / 10 / 50 %
//    of entries by |v|, per tensor, per layer and overall; exact, from the same bounded-memory
//    radix selection as the sparsifying merges (arith/sparsify.h), three passes per group;
//  - effective rank of each linear layer's delta (2-D tensors inside the layer stack): the
//    number of singular values holding 50 / 90 / 99 % of ‖Δ‖_F², from a randomised SVD
//    (Halko, Martinsson & Tropp 2011: Gaussian sketch of `probe` columns, `power` power
//    iterations, QR and SVD by LAPACK); exact SVD when min(rows, cols) <= probe.
#pragma once
#include <array>
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace rvec::arith {

inline constexpr std::array<double, 4> kSpectrumFractions = {0.01, 0.05, 0.10, 0.50};

struct SpectrumRow {
  std::string name;  // tensor, "layer N", "embed", "lm_head", "other" or "total"
  uint64_t numel = 0;
  double sumsq = 0;
  std::array<double, 4> top_mass{};  // fraction of Σ v² in the top ceil(f·numel) entries
};

struct RankRow {
  std::string name;
  int64_t rows = 0, cols = 0;
  int probe = 0;                    // singular values computed
  bool exact = false;               // full SVD (min(rows, cols) <= probe)
  std::vector<double> singular;     // descending
  double energy = 0;                // ‖Δ‖_F²
  std::array<std::optional<int>, 3> rank{};  // for 50/90/99 %; empty when beyond the probe
};

struct AnalysisOptions {
  bool spectrum = true, rank = true;
  int probe = 64, power = 2;
  uint64_t seed = 0;
};

struct AnalysisResult {
  std::string path;
  std::vector<SpectrumRow> tensors, groups;
  SpectrumRow total;
  std::vector<RankRow> ranks;
};

AnalysisResult analyse(const std::filesystem::path& vector, const AnalysisOptions& o);

// Singular values (descending) of a row-major rows x cols matrix: exact when
// min(rows, cols) <= probe, else the top `probe` from a randomised SVD.
std::vector<double> top_singular_values(const float* a, int64_t rows, int64_t cols, int probe, int power,
                                        uint64_t seed, bool* exact = nullptr);

// Orthonormal basis (row-major m x l, l <= min(m, n)) of the range of the row-major m x n
// matrix a: Gaussian sketch of l columns (reproducible for a seed), `power` power
// iterations with re-orthonormalisation, QR by LAPACK (Halko et al. 2011, algorithm 4.4).
std::vector<float> range_basis(const float* a, int64_t m, int64_t n, int64_t l, int power, uint64_t seed);

// Smallest r with Σ_{i<r} s_i² >= f·energy, or nullopt when the values given do not reach it.
std::optional<int> energy_rank(const std::vector<double>& s, double energy, double f);

nlohmann::json to_json(const AnalysisResult& r);
std::string to_table(const AnalysisResult& r);
// A small SVG of the per-layer figures: top-k mass fractions and the mean 90 % effective
// rank (as a fraction of min(rows, cols)) per layer.
std::string to_svg(const AnalysisResult& r);

}  // namespace rvec::arith
