// Optional string and boolean fields of untrusted JSON objects. nlohmann's value() throws
// its own type_error on a wrong type, naming neither the file nor the key; these give the
// default for an absent or null key and an rvec::Error "<what>: key '<key>' must be ..."
// for any other type.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace rvec {

// `obj` must be a JSON object (else rvec::Error "<what> must be a JSON object").
std::string json_string_or(const nlohmann::json& obj, std::string_view key, std::string_view dflt,
                           std::string_view what);
bool json_bool_or(const nlohmann::json& obj, std::string_view key, bool dflt, std::string_view what);

}  // namespace rvec
