// Chat templates, values: the dynamic values a Jinja2 template computes with (Python's
// None/bool/int/float/str/list/dict plus callables), and their Python-like printing,
// truthiness, equality and json.dumps.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace rvec::text::jinja {

using json = nlohmann::ordered_json;

struct Value;
using List = std::vector<Value>;
using Dict = std::vector<std::pair<std::string, Value>>;  // insertion ordered, like Python dicts
using Args = std::vector<Value>;
using Kwargs = std::vector<std::pair<std::string, Value>>;
using Func = std::function<Value(Args&, Kwargs&)>;

struct Value {
  enum class T { Undef, None, Bool, Int, Float, Str, List, Dict, Func } t = T::Undef;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;  // Str, or the variable name of an Undef
  std::shared_ptr<List> l;
  std::shared_ptr<Dict> d;
  std::shared_ptr<Func> fn;
  bool is_ns = false;

  static Value undef(std::string name = "") {
    Value v;
    v.s = std::move(name);
    return v;
  }
  static Value none() {
    Value v;
    v.t = T::None;
    return v;
  }
  static Value boolean(bool x) {
    Value v;
    v.t = T::Bool;
    v.b = x;
    return v;
  }
  static Value integer(int64_t x) {
    Value v;
    v.t = T::Int;
    v.i = x;
    return v;
  }
  static Value real(double x) {
    Value v;
    v.t = T::Float;
    v.f = x;
    return v;
  }
  static Value str(std::string x) {
    Value v;
    v.t = T::Str;
    v.s = std::move(x);
    return v;
  }
  static Value list(List x = {}) {
    Value v;
    v.t = T::List;
    v.l = std::make_shared<List>(std::move(x));
    return v;
  }
  static Value dict(Dict x = {}) {
    Value v;
    v.t = T::Dict;
    v.d = std::make_shared<Dict>(std::move(x));
    return v;
  }
  static Value func(Func f) {
    Value v;
    v.t = T::Func;
    v.fn = std::make_shared<Func>(std::move(f));
    return v;
  }
  bool is_num() const { return t == T::Int || t == T::Float || t == T::Bool; }
  double num() const { return t == T::Float ? f : t == T::Bool ? double(b) : double(i); }
  const Value* get(const std::string& k) const {
    if (t != T::Dict) return nullptr;
    for (const auto& [key, v] : *d)
      if (key == k) return &v;
    return nullptr;
  }
};

const char* type_name(const Value& v);
Value from_json(const json& j);
bool truthy(const Value& v);
std::string py_float(double x);             // Python's repr of a float
std::string py_repr_str(const std::string& s);  // Python's repr of a str
std::string to_str(const Value& v, bool repr = false);
// json.dumps(x, ensure_ascii=False, indent=indent) as transformers' tojson filter does.
void to_json(const Value& v, int indent, int level, std::string& out);
bool equal(const Value& a, const Value& b);
std::vector<std::string> utf8_chars(const std::string& s);

}  // namespace rvec::text::jinja
