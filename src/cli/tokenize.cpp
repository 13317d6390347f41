// `rvec tokenize --tokenizer PATH (--text TEXT | --jsonl FILE) [--decode]`: token ids
// of a text as a JSON array (one line per input line with --jsonl), or the reverse.
#include <fmt/format.h>

#include <filesystem>
#include <sstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "core/checked_int.h"
#include "core/error.h"
#include "core/input_file.h"
#include "text/tokenizer.h"

namespace {

using json = nlohmann::json;

std::string ids_json(const std::vector<int32_t>& ids) {
  std::string out = "[";
  for (size_t i = 0; i < ids.size(); ++i) out += (i ? "," : "") + std::to_string(ids[i]);
  return out + "]";
}

std::vector<int32_t> parse_ids(const json& j, const std::string& where) {
  if (!j.is_array()) rvec::fail("{}: expected a JSON array of token ids", where);
  std::vector<int32_t> ids;
  for (size_t i = 0; i < j.size(); ++i)
    ids.push_back(int32_t(rvec::json_int_in_range(j[i], 0, INT32_MAX, fmt::format("{}: token id [{}]", where, i))));
  return ids;
}

struct Args {
  std::string tokenizer, text, jsonl;
  bool decode = false, no_special = false, skip_special = false;
};

rvec::cli::Command cmd(
    "tokenize", "Encode text to token ids (JSON) with a tokenizer.json, or decode ids with --decode",
    [](CLI::App& app) {
      auto a = std::make_shared<Args>();
      app.add_option("--tokenizer", a->tokenizer, "A tokenizer.json or a model directory containing one")->required();
      auto* text = app.add_option("--text", a->text, "Text to encode (with --decode: a JSON array of ids)");
      auto* jsonl = app.add_option("--jsonl", a->jsonl,
                                   "JSONL file, one object per line with a \"text\" field (with --decode: \"ids\"); "
                                   "prints one JSON line per input line");
      text->excludes(jsonl);
      app.add_flag("--decode", a->decode, "Decode token ids to text instead of encoding");
      app.add_flag("--no-special", a->no_special, "Encode special-token markers such as <|im_start|> as plain text");
      app.add_flag("--skip-special", a->skip_special, "With --decode: leave special tokens out of the text");
      return [a, text, jsonl]() -> int {
        if (!*text && !*jsonl) rvec::fail("tokenize: give --text or --jsonl");
        std::filesystem::path p = a->tokenizer;
        auto tok = std::filesystem::is_directory(p) ? rvec::text::Tokenizer::from_model_dir(p)
                                                    : rvec::text::Tokenizer::from_file(p);
        if (*text) {
          if (a->decode) {
            json j;
            try {
              j = json::parse(a->text);
            } catch (const json::exception& e) {
              rvec::fail("--text: not JSON: {}", e.what());
            }
            fmt::print("{}\n", tok.decode(parse_ids(j, "--text"), a->skip_special));
          } else {
            fmt::print("{}\n", ids_json(tok.encode(a->text, !a->no_special)));
          }
          return 0;
        }
        std::istringstream in(rvec::read_file(a->jsonl));
        std::string line, out;
        size_t lineno = 0;
        while (std::getline(in, line)) {
          ++lineno;
          if (!line.empty() && line.back() == '\r') line.pop_back();
          if (line.find_first_not_of(" \t") == std::string::npos) continue;
          std::string where = fmt::format("{}:{}", a->jsonl, lineno);
          json j;
          try {
            j = json::parse(line);
          } catch (const json::exception& e) {
            rvec::fail("{}: not JSON: {}", where, e.what());
          }
          const char* key = a->decode ? "ids" : "text";
          if (!j.is_object() || !j.contains(key)) rvec::fail("{}: no \"{}\" field", where, key);
          if (a->decode) {
            out += json(tok.decode(parse_ids(j.at("ids"), where), a->skip_special)).dump() + "\n";
          } else {
            if (!j.at("text").is_string()) rvec::fail("{}: \"text\" is not a string", where);
            out += ids_json(tok.encode(j.at("text").get<std::string>(), !a->no_special)) + "\n";
          }
          if (out.size() > (1 << 16)) {
            std::fwrite(out.data(), 1, out.size(), stdout);
            out.clear();
          }
        }
        std::fwrite(out.data(), 1, out.size(), stdout);
        return 0;
      };
    });

}  // namespace
