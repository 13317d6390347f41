// libFuzzer target: the safetensors header parser on arbitrary bytes. Any input
// must either parse into a consistent layout or throw rvec::Error; never crash.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "core/error.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto h = rvec::io::parse_safetensors(data, size, "fuzz");
    // Invariants of an accepted file: tensors tile the data section inside the input.
    uint64_t cursor = 0;
    for (const auto& t : h.tensors) {
      if (t.begin != cursor || t.end < t.begin || h.data_start + t.end > size) std::abort();
      if (t.numel() * rvec::dtype_size(t.dtype) != t.nbytes()) std::abort();
      cursor = t.end;
    }
    if (h.data_start + cursor != size) std::abort();
  } catch (const rvec::Error&) {
  }
  return 0;
}
