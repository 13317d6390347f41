#include "backend/encode.h"

#include <nlohmann/json.hpp>

#include "core/atomic_output.h"
#include "core/checked_int.h"
#include "core/error.h"
#include "eval/pyregex.h"
#include "model/config.h"

namespace fs = std::filesystem;

namespace rvec::backend {

std::pair<std::vector<int32_t>, std::vector<int32_t>> lm_eval_encode_pair(const text::Tokenizer& tok,
                                                                          std::string context,
                                                                          std::string continuation,
                                                                          int32_t prefix_token) {
  return lm_eval_encode_pair([&](const std::string& s) { return tok.encode(s, true); }, std::move(context),
                             std::move(continuation), prefix_token);
}

std::pair<std::vector<int32_t>, std::vector<int32_t>> lm_eval_encode_pair(const EncodeFn& encode,
                                                                          std::string context,
                                                                          std::string continuation,
                                                                          int32_t prefix_token) {
  std::string stripped = eval::py_rstrip(context);
  size_t n_spaces = context.size() - stripped.size();
  if (n_spaces > 0) {
    // (appends instead of operator+: GCC 12 -O3 reports a false -Wrestrict on the latter)
    std::string moved;
    moved.reserve(n_spaces + continuation.size());
    moved.append(context, context.size() - n_spaces, n_spaces);
    moved.append(continuation);
    continuation = std::move(moved);
    context = std::move(stripped);
  }
  if (context.empty()) return {{prefix_token}, encode(continuation)};
  std::string joined;
  joined.reserve(context.size() + continuation.size());
  joined.append(context);
  joined.append(continuation);
  std::vector<int32_t> whole = encode(joined), ctx = encode(context);
  std::vector<int32_t> cont(whole.begin() + std::min(ctx.size(), whole.size()), whole.end());
  return {ctx, cont};
}

namespace {
nlohmann::json read_json_if_exists(const fs::path& p) {
  if (!fs::exists(p)) return nlohmann::json::object();
  try {
    return nlohmann::json::parse(read_file(p));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: invalid JSON: {}", p.string(), e.what());
  }
}
}  // namespace

std::optional<int32_t> prefix_token_of_model_dir(const fs::path& dir) {
  nlohmann::json cfg = read_json_if_exists(dir / "config.json"), gen = read_json_if_exists(dir / "generation_config.json");
  if (cfg.is_object() && cfg.contains("bos_token_id") && !cfg["bos_token_id"].is_null())
    return int32_t(json_int_in_range(cfg["bos_token_id"], 0, INT32_MAX, (dir / "config.json").string() + ": key 'bos_token_id'"));
  for (const char* name : {"generation_config.json", "config.json"}) {
    const nlohmann::json& j = std::string(name) == "config.json" ? cfg : gen;
    if (j.is_object() && j.contains("eos_token_id")) {
      auto ids = model::parse_token_id_list(j["eos_token_id"], (dir / name).string() + ": key 'eos_token_id'", 0);
      if (!ids.empty()) return ids.front();
    }
  }
  return std::nullopt;
}

}  // namespace rvec::backend
