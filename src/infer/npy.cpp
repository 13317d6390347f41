#include "infer/npy.h"

#include <cstring>

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
  // The header is a Python dict literal; find the value after each key.
  auto value_after = [&](const std::string& key) -> size_t {
    size_t p = h.find("'" + key + "'");
    if (p == std::string::npos) fail("{}: .npy header lacks '{}'", origin, key);
    p = h.find(':', p);
    if (p == std::string::npos) fail("{}: malformed .npy header", origin);
    return h.find_first_not_of(' ', p + 1);
  };
  size_t d = value_after("descr");
  size_t d_end = d == std::string::npos ? d : h.find('\'', d + 1);
  if (d == std::string::npos || h[d] != '\'' || d_end == std::string::npos) fail("{}: malformed .npy descr", origin);
  const std::string descr = h.substr(d + 1, d_end - d - 1);
  if (descr != "<f4" && descr != "<f8") fail("{}: .npy dtype '{}' unsupported (need <f4 or <f8)", origin, descr);
  if (h.compare(value_after("fortran_order"), 5, "False") != 0) fail("{}: .npy must be C-ordered", origin);
  size_t sp = value_after("shape");
  size_t sp_end = sp == std::string::npos ? sp : h.find(')', sp);
  if (sp == std::string::npos || h[sp] != '(' || sp_end == std::string::npos) fail("{}: malformed .npy shape", origin);
  NpyArray a;
  int64_t cur = -1;
  for (size_t i = sp + 1; i <= sp_end; ++i) {
    const char ch = h[i];
    if (ch >= '0' && ch <= '9') {
      cur = (cur < 0 ? 0 : cur) * 10 + (ch - '0');
      if (cur > (int64_t(1) << 40)) fail("{}: .npy dimension too large", origin);
    } else if (ch == ',' || ch == ')') {
      if (cur >= 0) a.shape.push_back(cur);
      cur = -1;
    } else if (ch != ' ' && ch != 'L') {
      fail("{}: malformed .npy shape", origin);
    }
  }
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
