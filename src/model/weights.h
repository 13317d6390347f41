// Weights of a Qwen2/Qwen3/Llama/Mistral/OLMo2 model bound by their Hugging Face names. Matrices
// are used in place from the memory-mapped safetensors files in their stored dtype
// (BF16, F16 or F32) - no conversion copy of the model; only the small vectors
// (norm weights, biases) are converted to f32 copies.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/dtype.h"
#include "io/model_dir.h"
#include "model/config.h"

namespace rvec::model {

// A [rows, cols] matrix (HF Linear weight: [out_features, in_features]), row-major, or with
// kblock > 0 stored as column blocks: columns [b * kblock, (b + 1) * kblock) of all rows form
// block b, a row-major [rows, width] matrix, and the blocks follow each other (the last may
// be narrower). model/column_blocks.h explains why decode wants that for long rows.
struct Matrix {
  DType dtype = DType::F32;
  const void* data = nullptr;
  int64_t rows = 0, cols = 0;
  int64_t kblock = 0;  // 0: row-major
  size_t bytes() const { return size_t(rows) * size_t(cols) * dtype_size(dtype); }
  int64_t blocks() const { return kblock > 0 ? (cols + kblock - 1) / kblock : 1; }
  // Block b as a row-major matrix (the matrix itself when row-major).
  Matrix block(int64_t b) const {
    if (kblock <= 0) return *this;
    const int64_t c0 = b * kblock;
    return {dtype, static_cast<const uint8_t*>(data) + size_t(rows) * size_t(c0) * dtype_size(dtype), rows,
            std::min(kblock, cols - c0), 0};
  }
};

struct Linear {
  Matrix w;
  std::vector<float> bias;  // empty when the layer has none
};

struct LayerWeights {
  // OLMo2 (post_block_norms): input_norm is empty, post_attention_norm normalises the
  // attention output and post_ffw_norm the MLP output. Otherwise post_ffw_norm is empty.
  std::vector<float> input_norm, post_attention_norm, post_ffw_norm;
  std::vector<float> q_norm, k_norm;  // QkNorm::PerHead: [head_dim]; Full: [q_dim] / [kv_dim]; else empty
  Linear q, k, v, o, gate, up, down;
};

struct Weights {
  Matrix embed;  // [vocab, hidden]
  std::vector<LayerWeights> layers;
  std::vector<float> final_norm;
  Linear lm_head;  // tied: same matrix as embed
  // Binds and shape-checks every tensor; throws rvec::Error naming the directory and tensor.
  static Weights bind(const io::ModelDir& dir, const ModelConfig& cfg);
  // The matrices one decode step reads, in the order it reads them (each layer's q, k, v, o,
  // gate, up, down, then the lm_head), and their bytes.
  std::vector<const Matrix*> decode_matrices() const;
  uint64_t matmul_bytes_per_token() const;
};

}  // namespace rvec::model
