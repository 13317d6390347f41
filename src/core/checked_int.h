// Integers from untrusted text (JSON files, command lines) range-checked before they are
// narrowed: a token id of 2^40 must be an error, not id 0. Errors print the value as it
// was written ("-1", "4294967297"), never a wrapped or truncated one.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace rvec {

// `v` must be a JSON integer in [lo, hi] (24.0 is refused too: transformers writes
// integer fields as integers). Throws rvec::Error "<what> must be an integer in
// [lo, hi], got <v as written>".
int64_t json_int_in_range(const nlohmann::json& v, int64_t lo, int64_t hi, std::string_view what);
int64_t json_int_in_range(const nlohmann::ordered_json& v, int64_t lo, int64_t hi, std::string_view what);

// A decimal integer (optional sign, nothing else) in [lo, hi]; same error format.
int64_t parse_int_in_range(std::string_view s, int64_t lo, int64_t hi, std::string_view what);

}  // namespace rvec
