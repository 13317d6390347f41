// `rvec grade --scheme qwen|math_verify|minerva|hendrycks [--data-name NAME] (--gold G --output TEXT |
// --jsonl FILE)`: the math answer checker on its own. Prints one JSON object per comparison:
// {"correct", "extracted", "gold_normalized", "rule"}.
#include <fmt/format.h>

#include <sstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "core/error.h"
#include "core/input_file.h"
#include "core/json_fields.h"
#include "eval/math/grade.h"

namespace {

struct Args {
  std::string scheme, data_name = "math", gold, output, jsonl;
  bool has_gold = false, has_output = false;
};

rvec::cli::Command cmd("grade", "Check a math answer against a gold answer (the math tasks' scorers)",
                       [](CLI::App& app) {
  auto a = std::make_shared<Args>();
  app.add_option("--scheme", a->scheme, "qwen | math_verify | minerva | hendrycks")->required();
  app.add_option("--data-name", a->data_name, "qwen: the toolkit's data name (math, math500, minerva_math, aime24, "
                                              "amc23, olympiadbench, ...; default math)");
  auto* g = app.add_option("--gold", a->gold, "gold answer as the data files hold it");
  auto* o = app.add_option("--output", a->output, "model output to grade");
  auto* j = app.add_option("--jsonl", a->jsonl, "file of {\"gold\", \"output\"[, \"data_name\"]} rows");
  j->excludes(g)->excludes(o);
  return [a]() -> int {
    using namespace rvec::eval::math;
    Scheme scheme = parse_scheme(a->scheme);
    if (a->jsonl.empty()) {
      if (a->gold.empty() && a->output.empty()) rvec::fail("rvec grade: give --gold and --output, or --jsonl FILE");
      fmt::print("{}\n", grade(scheme, a->gold, a->output, a->data_name).to_json().dump());
      return 0;
    }
    std::istringstream in(rvec::read_file(a->jsonl));
    std::string line, out;
    int lineno = 0;
    while (std::getline(in, line)) {
      lineno++;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      nlohmann::json row;
      try {
        row = nlohmann::json::parse(line);
      } catch (const std::exception& e) {
        rvec::fail("{}:{}: invalid JSON: {}", a->jsonl, lineno, e.what());
      }
      for (const char* k : {"gold", "output"})
        if (!row.contains(k) || !row[k].is_string()) rvec::fail("{}:{}: missing string field '{}'", a->jsonl, lineno, k);
      std::string dn = rvec::json_string_or(row, "data_name", a->data_name, fmt::format("{}:{}", a->jsonl, lineno));
      out += grade(scheme, row["gold"].get<std::string>(), row["output"].get<std::string>(), dn).to_json().dump() + "\n";
    }
    fmt::print("{}", out);
    return 0;
  };
});

}  // namespace
