#include "infer/npy.h"

#include <cstring>
#include <regex>

#include "core/atomic_output.h"
#include "core/error.h"

namespace rvec::infer {

int64_t NpyArray::numel() const {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

NpyArray parse_npy(const std::string& b, const std::string& origin) {
  if (b.size() < 10 || std::memcmp(b.data(), "\x93NUMPY", 6) != 0) fail("{}: not a .npy file (bad magic)", origin);
  const int major = uint8_t(b[6]);
  size_t hlen, hstart;
  if (major == 1) {
    hlen = uint8_t(b[8]) | size_t(uint8_t(b[9])) << 8;
    hstart = 10;
  } else if (major == 2 || major == 3) {
    if (b.size() < 12) fail("{}: truncated .npy header", origin);
    hlen = 0;
    for (int i = 0; i < 4; ++i) hlen |= size_t(uint8_t(b[8 + i])) << (8 * i);
    hstart = 12;
  } else {
    fail("{}: unsupported .npy version {}", origin, major);
  }
  if (hstart + hlen > b.size()) fail("{}: truncated .npy header", origin);
  const std::string h = b.substr(hstart, hlen);
  std::smatch m;
  if (!std::regex_search(h, m, std::regex(R"('descr'\s*:\s*'([^']*)')")))
    fail("{}: .npy header lacks descr", origin);
  const std::string descr = m[1];
  if (descr != "<f4" && descr != "<f8") fail("{}: .npy dtype '{}' unsupported (need <f4 or <f8)", origin, descr);
  if (!std::regex_search(h, m, std::regex(R"('fortran_order'\s*:\s*(True|False))")) || m[1] != "False")
    fail("{}: .npy must be C-ordered", origin);
  if (!std::regex_search(h, m, std::regex(R"('shape'\s*:\s*\(([^)]*)\))"))) fail("{}: .npy header lacks shape", origin);
  NpyArray a;
  const std::string dims = m[1];
  std::regex num(R"(\d+)");
  for (auto it = std::sregex_iterator(dims.begin(), dims.end(), num); it != std::sregex_iterator(); ++it)
    a.shape.push_back(std::stoll(it->str()));
  const size_t esz = descr == "<f4" ? 4 : 8;
  const size_t n = size_t(a.numel());
  const size_t off = hstart + hlen;
  if (b.size() - off != n * esz)
    fail("{}: .npy data has {} bytes, shape needs {}", origin, b.size() - off, n * esz);
  a.data.resize(n);
  if (esz == 4) {
    std::memcpy(a.data.data(), b.data() + off, n * 4);
  } else {
    for (size_t i = 0; i < n; ++i) {
      double d;
      std::memcpy(&d, b.data() + off + 8 * i, 8);
      a.data[i] = float(d);
    }
  }
  return a;
}

NpyArray read_npy(const std::filesystem::path& path) { return parse_npy(read_file(path), path.string()); }

std::string npy_bytes(const float* data, const std::vector<int64_t>& shape) {
  std::string dims;
  int64_t n = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    dims += (i ? ", " : "") + std::to_string(shape[i]);
    n *= shape[i];
  }
  if (shape.size() == 1) dims += ",";  // numpy writes (3,) and (10, 1024)
  std::string h = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  // Pad so that magic(6)+version(2)+len(2)+header is a multiple of 64, ending in '\n'.
  size_t total = 10 + h.size() + 1;
  h.append((64 - total % 64) % 64, ' ');
  h += '\n';
  std::string out("\x93NUMPY\x01\x00", 8);
  out += char(h.size() & 0xff);
  out += char(h.size() >> 8);
  out += h;
  out.append(reinterpret_cast<const char*>(data), size_t(n) * 4);
  return out;
}

void write_npy(const std::filesystem::path& path, const float* data, const std::vector<int64_t>& shape) {
  write_file_atomic(path, npy_bytes(data, shape));
}

}  // namespace rvec::infer
