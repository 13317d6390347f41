#include "core/json_fields.h"

#include "core/error.h"

namespace rvec {
namespace {

// A wrong value is quoted in the error, cut short: it may be a megabyte-long array.
std::string quoted(const nlohmann::json& v) {
  std::string s = v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return s.size() > 80 ? s.substr(0, 77) + "..." : s;
}

const nlohmann::json* field(const nlohmann::json& obj, std::string_view key, std::string_view what) {
  if (!obj.is_object()) fail("{} must be a JSON object, got {}", what, quoted(obj));
  auto it = obj.find(key);
  return it == obj.end() || it->is_null() ? nullptr : &*it;
}

}  // namespace

std::string json_string_or(const nlohmann::json& obj, std::string_view key, std::string_view dflt,
                           std::string_view what) {
  const nlohmann::json* v = field(obj, key, what);
  if (!v) return std::string(dflt);
  if (!v->is_string()) fail("{}: key '{}' must be a string, got {}", what, key, quoted(*v));
  return v->get<std::string>();
}

bool json_bool_or(const nlohmann::json& obj, std::string_view key, bool dflt, std::string_view what) {
  const nlohmann::json* v = field(obj, key, what);
  if (!v) return dflt;
  if (!v->is_boolean()) fail("{}: key '{}' must be true or false, got {}", what, key, quoted(*v));
  return v->get<bool>();
}

}  // namespace rvec
