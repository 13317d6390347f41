#include "eval/gen_kwargs.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <optional>
#include <variant>

#include "core/error.h"

namespace rvec::eval {

namespace {

// lm-eval's handle_arg_string: booleans, then int, then float, else the string itself.
using Value = std::variant<bool, long long, double, std::string>;
Value parse_value(const std::string& v) {
  std::string low;
  for (char c : v) low += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (low == "true") return true;
  if (low == "false") return false;
  if (!v.empty()) {
    char* end = nullptr;
    errno = 0;
    long long i = std::strtoll(v.c_str(), &end, 10);
    if (errno == 0 && end && *end == '\0') return i;
    errno = 0;
    double d = std::strtod(v.c_str(), &end);
    if (errno == 0 && end && *end == '\0') return d;
  }
  return v;
}

double number(const std::string& key, const Value& v) {
  if (auto* i = std::get_if<long long>(&v)) return static_cast<double>(*i);
  if (auto* d = std::get_if<double>(&v)) return *d;
  fail("--gen-kwargs {}: expected a number", key);
}

}  // namespace

void apply_gen_kwargs(const std::string& spec, EvalOptions& o) {
  std::optional<bool> do_sample;
  bool temperature_set = false;
  size_t p = 0;
  while (p <= spec.size()) {
    size_t c = spec.find(',', p);
    std::string item = spec.substr(p, c == std::string::npos ? std::string::npos : c - p);
    p = c == std::string::npos ? spec.size() + 1 : c + 1;
    if (item.empty()) continue;
    size_t eq = item.find('=');
    if (eq == std::string::npos) fail("--gen-kwargs: '{}' is not key=value", item);
    std::string key = item.substr(0, eq);
    Value v = parse_value(item.substr(eq + 1));
    if (key == "temperature") {
      double t = number(key, v);
      if (!(t >= 0) || !std::isfinite(t)) fail("--gen-kwargs temperature: must be >= 0 (got {})", t);
      o.temperature = t;
      temperature_set = true;
    } else if (key == "top_p") {
      double t = number(key, v);
      if (!(t > 0 && t <= 1)) fail("--gen-kwargs top_p: must be in (0, 1] (got {})", t);
      o.top_p = t;
    } else if (key == "min_p") {
      double m = number(key, v);
      if (!(m >= 0 && m <= 1)) fail("--gen-kwargs min_p: must be in [0, 1] (got {})", m);
      o.min_p = m;
    } else if (key == "top_k") {
      auto* i = std::get_if<long long>(&v);
      if (!i || *i < 0 || *i > (1 << 30)) fail("--gen-kwargs top_k: expected an integer >= 0");
      o.top_k = static_cast<int>(*i);
    } else if (key == "max_gen_toks") {
      auto* i = std::get_if<long long>(&v);
      if (!i || *i < 1 || *i > (1 << 24)) fail("--gen-kwargs max_gen_toks: expected an integer >= 1");
      o.max_gen_tokens = static_cast<int>(*i);
    } else if (key == "do_sample") {
      auto* b = std::get_if<bool>(&v);
      if (!b) fail("--gen-kwargs do_sample: expected true or false");
      do_sample = *b;
    } else if (key == "until") {
      auto* s = std::get_if<std::string>(&v);
      o.until = std::vector<std::string>{s ? *s : item.substr(eq + 1)};
    } else {
      fail("--gen-kwargs: unknown key '{}' (rvec knows temperature, top_p, top_k, min_p, max_gen_toks, do_sample, until)",
           key);
    }
  }
  if (do_sample && !*do_sample) o.temperature = 0;  // greedy whatever the temperature says
  if (do_sample && *do_sample && !temperature_set && o.temperature <= 0) o.temperature = 1.0;
}

}  // namespace rvec::eval
