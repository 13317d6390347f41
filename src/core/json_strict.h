// JSON from untrusted files, parsed in linear time with duplicate keys refused.
// nlohmann's parser silently keeps the last duplicate, and its callback parser (the
// usual way to see duplicates) rescans the parent object after every nested object,
// which is quadratic in the number of keys; this builds the DOM through the SAX
// interface instead, one map insertion per key.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "core/error.h"

namespace rvec {

// A key seen twice in one object; depth 1 is the top-level object.
class DuplicateKeyError : public Error {
 public:
  DuplicateKeyError(const std::string& msg, std::string key, size_t depth)
      : Error(msg), key_(std::move(key)), depth_(depth) {}
  const std::string& key() const { return key_; }
  size_t depth() const { return depth_; }

 private:
  std::string key_;
  size_t depth_;
};

// Parses `text`; throws rvec::Error "<what>: ..." on invalid JSON, DuplicateKeyError on a key
// that appears twice in one object.
nlohmann::json parse_json_strict(std::string_view text, const std::string& what);

}  // namespace rvec
