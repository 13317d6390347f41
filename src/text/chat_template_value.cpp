#include "text/chat_template_value.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace rvec::text::jinja {

const char* type_name(const Value& v) {
  switch (v.t) {
    case Value::T::Undef: return "undefined";
    case Value::T::None: return "none";
    case Value::T::Bool: return "bool";
    case Value::T::Int: return "int";
    case Value::T::Float: return "float";
    case Value::T::Str: return "string";
    case Value::T::List: return "list";
    case Value::T::Dict: return "dict";
    case Value::T::Func: return "function";
  }
  return "?";
}

Value from_json(const json& j) {
  switch (j.type()) {
    case json::value_t::null: return Value::none();
    case json::value_t::boolean: return Value::boolean(j.get<bool>());
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return Value::integer(j.get<int64_t>());
    case json::value_t::number_float: return Value::real(j.get<double>());
    case json::value_t::string: return Value::str(j.get<std::string>());
    case json::value_t::array: {
      List l;
      for (const auto& x : j) l.push_back(from_json(x));
      return Value::list(std::move(l));
    }
    case json::value_t::object: {
      Dict d;
      for (const auto& [k, x] : j.items()) d.emplace_back(k, from_json(x));
      return Value::dict(std::move(d));
    }
    default: return Value::none();
  }
}

bool truthy(const Value& v) {
  switch (v.t) {
    case Value::T::Undef:
    case Value::T::None: return false;
    case Value::T::Bool: return v.b;
    case Value::T::Int: return v.i != 0;
    case Value::T::Float: return v.f != 0;
    case Value::T::Str: return !v.s.empty();
    case Value::T::List: return !v.l->empty();
    case Value::T::Dict: return !v.d->empty();
    case Value::T::Func: return true;
  }
  return false;
}

std::string py_float(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  std::string s = fmt::format("{}", x);
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

std::string py_repr_str(const std::string& s) {
  char q = (s.find('\'') != std::string::npos && s.find('"') == std::string::npos) ? '"' : '\'';
  std::string out(1, q);
  for (char c : s) {
    if (c == q || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else {
      out += c;
    }
  }
  return out + q;
}

std::string to_str(const Value& v, bool repr) {
  switch (v.t) {
    case Value::T::Undef: return "";
    case Value::T::None: return "None";
    case Value::T::Bool: return v.b ? "True" : "False";
    case Value::T::Int: return std::to_string(v.i);
    case Value::T::Float: return py_float(v.f);
    case Value::T::Str: return repr ? py_repr_str(v.s) : v.s;
    case Value::T::List: {
      std::string out = "[";
      for (size_t k = 0; k < v.l->size(); ++k) out += (k ? ", " : "") + to_str((*v.l)[k], true);
      return out + "]";
    }
    case Value::T::Dict: {
      std::string out = "{";
      size_t k = 0;
      for (const auto& [key, x] : *v.d) out += (k++ ? ", " : "") + py_repr_str(key) + ": " + to_str(x, true);
      return out + "}";
    }
    case Value::T::Func: return "<function>";
  }
  return "";
}

// json.dumps(x, ensure_ascii=False, indent=indent) as transformers' tojson filter does.
void to_json(const Value& v, int indent, int level, std::string& out) {
  auto nl = [&](int lv) {
    if (indent < 0) return;
    out += '\n';
    out.append(size_t(indent * lv), ' ');
  };
  switch (v.t) {
    case Value::T::Undef:
    case Value::T::None: out += "null"; return;
    case Value::T::Bool: out += v.b ? "true" : "false"; return;
    case Value::T::Int: out += std::to_string(v.i); return;
    case Value::T::Float:
      out += std::isnan(v.f) ? "NaN" : std::isinf(v.f) ? (v.f > 0 ? "Infinity" : "-Infinity") : py_float(v.f);
      return;
    case Value::T::Str:
      out += '"';
      for (char c : v.s) {
        auto u = static_cast<unsigned char>(c);
        switch (c) {
          case '"': out += "\\\""; break;
          case '\\': out += "\\\\"; break;
          case '\n': out += "\\n"; break;
          case '\r': out += "\\r"; break;
          case '\t': out += "\\t"; break;
          case '\b': out += "\\b"; break;
          case '\f': out += "\\f"; break;
          default:
            if (u < 0x20)
              out += fmt::format("\\u{:04x}", u);
            else
              out += c;
        }
      }
      out += '"';
      return;
    case Value::T::List:
      if (v.l->empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (size_t k = 0; k < v.l->size(); ++k) {
        if (k) out += indent < 0 ? ", " : ",";
        nl(level + 1);
        to_json((*v.l)[k], indent, level + 1, out);
      }
      nl(level);
      out += ']';
      return;
    case Value::T::Dict: {
      if (v.d->empty()) {
        out += "{}";
        return;
      }
      out += '{';
      size_t k = 0;
      for (const auto& [key, x] : *v.d) {
        if (k++) out += indent < 0 ? ", " : ",";
        nl(level + 1);
        to_json(Value::str(key), indent, level + 1, out);
        out += ": ";
        to_json(x, indent, level + 1, out);
      }
      nl(level);
      out += '}';
      return;
    }
    case Value::T::Func: out += "null"; return;
  }
}

bool equal(const Value& a, const Value& b) {
  if (a.is_num() && b.is_num()) return a.num() == b.num();
  if (a.t != b.t) return false;
  switch (a.t) {
    case Value::T::Undef:
    case Value::T::None: return true;
    case Value::T::Str: return a.s == b.s;
    case Value::T::List:
      if (a.l->size() != b.l->size()) return false;
      for (size_t k = 0; k < a.l->size(); ++k)
        if (!equal((*a.l)[k], (*b.l)[k])) return false;
      return true;
    case Value::T::Dict:
      if (a.d->size() != b.d->size()) return false;
      for (const auto& [k, x] : *a.d) {
        const Value* y = b.get(k);
        if (!y || !equal(x, *y)) return false;
      }
      return true;
    default: return a.fn == b.fn;
  }
}

std::vector<std::string> utf8_chars(const std::string& s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    len = std::min(len, s.size() - i);
    out.push_back(s.substr(i, len));
    i += len;
  }
  return out;
}

}  // namespace rvec::text::jinja
