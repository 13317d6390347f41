#include "core/checked_int.h"

#include <charconv>

#include "core/error.h"

namespace rvec {
namespace {

[[noreturn]] void bad(std::string_view what, int64_t lo, int64_t hi, std::string_view got) {
  fail("{} must be an integer in [{}, {}], got {}", what, lo, hi, got);
}

template <typename J>
int64_t checked(const J& v, int64_t lo, int64_t hi, std::string_view what) {
  if (v.is_number_unsigned()) {
    uint64_t u = v.template get<uint64_t>();
    if (hi < 0 || u > uint64_t(hi) || int64_t(u) < lo) bad(what, lo, hi, v.dump());
    return int64_t(u);
  }
  if (v.is_number_integer()) {
    int64_t i = v.template get<int64_t>();
    if (i < lo || i > hi) bad(what, lo, hi, v.dump());
    return i;
  }
  bad(what, lo, hi, v.dump());
}

}  // namespace

int64_t json_int_in_range(const nlohmann::json& v, int64_t lo, int64_t hi, std::string_view what) {
  return checked(v, lo, hi, what);
}
int64_t json_int_in_range(const nlohmann::ordered_json& v, int64_t lo, int64_t hi, std::string_view what) {
  return checked(v, lo, hi, what);
}

int64_t parse_int_in_range(std::string_view s, int64_t lo, int64_t hi, std::string_view what) {
  std::string_view t = s;
  if (!t.empty() && t[0] == '+') t.remove_prefix(1);
  int64_t v = 0;
  auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (t.empty() || ec != std::errc() || end != t.data() + t.size() || v < lo || v > hi)
    bad(what, lo, hi, fmt::format("\"{}\"", s));
  return v;
}

}  // namespace rvec
