#include "io/safetensors.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_strict.h"

namespace rvec::io {

using nlohmann::json;

uint64_t TensorInfo::numel() const {
  uint64_t n = 1;
  for (int64_t d : shape) n *= uint64_t(d);
  return n;
}

std::string TensorInfo::shape_str() const { return fmt::format("[{}]", fmt::join(shape, ", ")); }

namespace {

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

TensorInfo parse_entry(const std::string& what, const std::string& name, const json& e) {
  if (!e.is_object()) fail("{}: tensor '{}': header entry is not an object", what, name);
  TensorInfo t;
  t.name = name;
  auto dt = e.find("dtype");
  if (dt == e.end() || !dt->is_string()) fail("{}: tensor '{}': missing or non-string \"dtype\"", what, name);
  auto parsed = parse_dtype(dt->get<std::string>());
  if (!parsed) fail("{}: tensor '{}': unknown dtype \"{}\"", what, name, dt->get<std::string>());
  t.dtype = *parsed;
  auto sh = e.find("shape");
  if (sh == e.end() || !sh->is_array()) fail("{}: tensor '{}': missing or non-array \"shape\"", what, name);
  if (sh->size() > 16) fail("{}: tensor '{}': shape has {} dimensions (limit 16)", what, name, sh->size());
  uint64_t numel = 1;
  for (const auto& d : *sh) {
    if (!d.is_number_unsigned()) fail("{}: tensor '{}': shape entries must be non-negative integers", what, name);
    uint64_t v = d.get<uint64_t>();
    if (v > uint64_t(INT64_MAX) || __builtin_mul_overflow(numel, v, &numel))
      fail("{}: tensor '{}': shape {} overflows", what, name, sh->dump());
    t.shape.push_back(int64_t(v));
  }
  auto off = e.find("data_offsets");
  if (off == e.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
      !(*off)[1].is_number_unsigned())
    fail("{}: tensor '{}': \"data_offsets\" must be [begin, end] with non-negative integers", what, name);
  t.begin = (*off)[0].get<uint64_t>();
  t.end = (*off)[1].get<uint64_t>();
  if (t.end < t.begin) fail("{}: tensor '{}': data_offsets [{}, {}] end before begin", what, name, t.begin, t.end);
  uint64_t nbytes;
  if (__builtin_mul_overflow(numel, uint64_t(dtype_size(t.dtype)), &nbytes))
    fail("{}: tensor '{}': byte size overflows", what, name);
  if (nbytes != t.end - t.begin)
    fail("{}: tensor '{}': shape {} x {} needs {} bytes but data_offsets span {}", what, name, t.shape_str(),
         dtype_name(t.dtype), nbytes, t.end - t.begin);
  for (auto it = e.begin(); it != e.end(); ++it)
    if (it.key() != "dtype" && it.key() != "shape" && it.key() != "data_offsets")
      fail("{}: tensor '{}': unexpected key \"{}\"", what, name, it.key());
  return t;
}

}  // namespace

ParsedHeader parse_safetensors(const uint8_t* bytes, size_t size, const std::string& what) {
  if (size < 8) fail("{}: not a safetensors file: {} bytes, shorter than the 8-byte header length", what, size);
  uint64_t n = read_u64_le(bytes);
  if (n > kMaxHeaderBytes) fail("{}: header length {} exceeds the {} byte limit", what, n, kMaxHeaderBytes);
  if (n > size - 8) fail("{}: header length {} runs past the end of the file ({} bytes): truncated file?", what, n, size);
  if (n < 2) fail("{}: header length {} is too small for a JSON object", what, n);
  ParsedHeader out;
  out.data_start = 8 + n;
  const char* hb = reinterpret_cast<const char*>(bytes + 8);
  if (hb[0] != '{') fail("{}: header does not start with '{{'", what);

  // Linear in the header size (the 100 MB cap allows ~1.4 million tensors); duplicate
  // names are refused since nlohmann would keep only the last.
  json header;
  try {
    header = parse_json_strict(std::string_view(hb, n), what + ": header");
  } catch (const DuplicateKeyError& e) {
    if (e.depth() == 1) fail("{}: duplicate tensor name '{}' in header", what, e.key());
    throw;
  }
  if (!header.is_object()) fail("{}: header is not a JSON object", what);

  const uint64_t data_size = size - out.data_start;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it->is_object()) fail("{}: __metadata__ is not an object", what);
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string()) fail("{}: __metadata__ value for \"{}\" is not a string", what, m.key());
        out.metadata[m.key()] = m->get<std::string>();
      }
      continue;
    }
    TensorInfo t = parse_entry(what, it.key(), *it);
    if (t.end > data_size)
      fail("{}: tensor '{}': data_offsets [{}, {}] lie outside the {}-byte data section (truncated file?)", what,
           t.name, t.begin, t.end, data_size);
    out.tensors.push_back(std::move(t));
  }
  std::sort(out.tensors.begin(), out.tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  // Tensors must tile the data section exactly: no overlaps, no holes (as HF safetensors requires).
  uint64_t cursor = 0;
  for (const auto& t : out.tensors) {
    if (t.begin < cursor) fail("{}: tensor '{}' overlaps the previous tensor (begins at {}, before {})", what, t.name, t.begin, cursor);
    if (t.begin > cursor) fail("{}: tensor '{}' leaves a {}-byte hole before it in the data section", what, t.name, t.begin - cursor);
    cursor = t.end;
  }
  if (cursor != data_size)
    fail("{}: data section has {} bytes but the tensors cover {}", what, data_size, cursor);
  return out;
}

SafetensorsFile::SafetensorsFile(const std::filesystem::path& path, Backing backing) : map_(path, backing) {
  header_ = parse_safetensors(map_.data(), map_.size(), path.string());
  for (size_t i = 0; i < header_.tensors.size(); ++i) {
    auto& t = header_.tensors[i];
    t.data = map_.data() + header_.data_start + t.begin;
    index_.emplace(t.name, i);
  }
}

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const std::filesystem::path& path, Backing backing) {
  return std::unique_ptr<SafetensorsFile>(new SafetensorsFile(path, backing));
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &header_.tensors[it->second];
}

}  // namespace rvec::io
