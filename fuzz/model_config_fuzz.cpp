// libFuzzer target: config.json plus model loading. The input is a config.json; it goes
// through the strict JSON reader and ModelConfig validation, and, when accepted, a model
// directory with that config and a matching tiny zero-filled model.safetensors is opened
// and its weights bound, as `rvec` does on a downloaded checkpoint. Anything must either
// load or throw rvec::Error; never crash, hang or allocate without bound (the config's
// weights are only written for shapes under kMaxBytes).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "core/atomic_output.h"
#include "core/error.h"
#include "core/json_strict.h"
#include "io/model_dir.h"
#include "io/safetensors_writer.h"
#include "arith/testmodel.h"
#include "model/config.h"
#include "model/weights.h"

namespace fs = std::filesystem;

namespace {

constexpr uint64_t kMaxBytes = 1u << 20;  // skip writing weights for larger fuzzed shapes

const fs::path& scratch() {
  static const fs::path p = fs::temp_directory_path() / ("rvec-fuzz-config-" + std::to_string(getpid()));
  return p;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    auto j = rvec::parse_json_strict(text, "config.json");
    auto c = rvec::model::ModelConfig::from_json(j, "config.json");
    // Accepted configs are internally consistent.
    if (c.hidden_size <= 0 || c.num_layers <= 0 || c.num_heads % c.num_kv_heads != 0 || c.head_dim % 2 != 0 ||
        !(c.rope_theta > 0) || !(c.rms_norm_eps >= 0))
      std::abort();
    for (int32_t id : c.eos_token_ids)
      if (id < 0 || id >= c.vocab_size) std::abort();
    if (c.bos_token_id && (*c.bos_token_id < 0 || *c.bos_token_id >= c.vocab_size)) std::abort();
    // Load a directory with these shapes when they are small.
    const double H = c.hidden_size, params = double(c.num_layers) * (2 * H * c.q_dim() + 2 * H * c.kv_dim() +
                                                                      3 * H * c.intermediate_size) +
                                              2 * double(c.vocab_size) * H;
    if (params * 4 > double(kMaxBytes)) return 0;
    fs::remove_all(scratch());
    fs::create_directories(scratch());
    rvec::write_file_atomic(scratch() / "config.json", std::string(text));
    auto specs = rvec::arith::decoder_tensors(j, rvec::DType::F32);
    uint64_t total = 0;
    for (const auto& t : specs) total += t.nbytes();
    if (total > kMaxBytes) return 0;
    std::vector<uint8_t> zeros(size_t(total) + 1);
    std::vector<const void*> ptrs;
    uint64_t off = 0;
    for (const auto& t : specs) {
      ptrs.push_back(zeros.data() + off);
      off += t.nbytes();
    }
    rvec::io::write_safetensors_file(scratch() / "model.safetensors", specs, ptrs);
    auto dir = rvec::io::ModelDir::open(scratch());
    (void)rvec::model::Weights::bind(*dir, c);
  } catch (const rvec::Error&) {
  }
  return 0;
}
