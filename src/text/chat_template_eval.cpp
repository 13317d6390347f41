#include "text/chat_template_eval.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <unordered_map>

#include "core/error.h"

static constexpr int kMaxEvalDepth = 200;

namespace rvec::text::jinja {
namespace {

// ============================================================ evaluation
struct BreakSignal {};
struct ContinueSignal {};

struct Interp {
  std::vector<std::unordered_map<std::string, Value>> frames;
  ChatTemplateLimits lim;
  uint64_t steps = 0, total_bytes = 0;
  int depth = 0;  // eval() recursion: `a + a + ... + a` parses to a tree as deep as it is long
  // Every namespace() made, so that the end of the evaluation can empty them: a namespace is the
  // one mutable value, and `{% set ns.self = ns %}` makes a reference cycle shared_ptr never frees.
  std::vector<std::shared_ptr<Dict>> namespaces;

  Interp() = default;
  Interp(const Interp&) = delete;
  Interp& operator=(const Interp&) = delete;
  ~Interp() {
    for (auto& d : namespaces) d->clear();
  }

  // The budget (ChatTemplateLimits): every expression evaluated and statement or loop
  // iteration executed is a step; every string/list/dict computed is charged its size.
  void step(int line) {
    if (++steps > lim.max_steps)
      err(line, fmt::format("evaluation budget exceeded: more than {} steps (a runaway loop?)", lim.max_steps));
  }
  // Refuses a value of `bytes` before it is built.
  void check_size(uint64_t bytes, int line, const char* what) {
    if (bytes > lim.max_value_bytes)
      err(line, fmt::format("{} would take {} bytes, over the {}-byte limit for one value", what, bytes,
                            lim.max_value_bytes));
  }
  static uint64_t size_of(const Value& v) {
    switch (v.t) {
      case Value::T::Str: return v.s.size();
      case Value::T::List: return v.l->size() * sizeof(Value);
      case Value::T::Dict: return v.d->size() * sizeof(Dict::value_type);
      default: return 0;
    }
  }
  void charge(const Value& v, int line) {
    uint64_t b = size_of(v);
    check_size(b, line, "a computed value");
    total_bytes += b;
    if (total_bytes > lim.max_total_bytes)
      err(line, fmt::format("memory budget exceeded: values computed so far take more than {} bytes",
                            lim.max_total_bytes));
  }
  void check_output(const std::string& out, int line) {
    if (out.size() > lim.max_output_bytes)
      err(line, fmt::format("output exceeds the {}-byte limit", lim.max_output_bytes));
  }

  Value lookup(const std::string& name) const {
    for (auto it = frames.rbegin(); it != frames.rend(); ++it) {
      auto f = it->find(name);
      if (f != it->end()) return f->second;
    }
    return Value::undef(name);
  }

  [[noreturn]] static void err(int line, const std::string& msg) { fail("chat template: line {}: {}", line, msg); }

  static int64_t to_int(const Value& v, int line) {
    if (v.t == Value::T::Int) return v.i;
    if (v.t == Value::T::Bool) return v.b;
    if (v.t == Value::T::Float) return int64_t(v.f);
    err(line, fmt::format("expected an integer, got {}", type_name(v)));
  }

  static List iterate(const Value& v, int line) {
    switch (v.t) {
      case Value::T::Undef: return {};
      case Value::T::List: return *v.l;
      case Value::T::Dict: {
        List out;
        for (const auto& kv : *v.d) out.push_back(Value::str(kv.first));
        return out;
      }
      case Value::T::Str: {
        List out;
        for (auto& c : utf8_chars(v.s)) out.push_back(Value::str(c));
        return out;
      }
      default: err(line, fmt::format("'{}' object is not iterable", type_name(v)));
    }
  }

  static const Value* kwarg(const Kwargs& kw, const char* name) {
    for (const auto& [k, v] : kw)
      if (k == name) return &v;
    return nullptr;
  }

  static Value arg(const Args& a, const Kwargs& kw, size_t i, const char* name, Value dflt) {
    if (i < a.size()) return a[i];
    if (const Value* v = kwarg(kw, name)) return *v;
    return dflt;
  }

  static std::string strip(const std::string& s, const std::string& chars, bool left, bool right) {
    size_t a = 0, b = s.size();
    if (left)
      while (a < b && chars.find(s[a]) != std::string::npos) ++a;
    if (right)
      while (b > a && chars.find(s[b - 1]) != std::string::npos) --b;
    return s.substr(a, b - a);
  }

  bool test(const std::string& name, const Value& v, const Args& args, int line) {
    auto need = [&](size_t n) {
      if (args.size() < n) err(line, fmt::format("test '{}' needs an argument", name));
    };
    if (name == "defined") return v.t != Value::T::Undef;
    if (name == "undefined") return v.t == Value::T::Undef;
    if (name == "none") return v.t == Value::T::None;
    if (name == "string") return v.t == Value::T::Str;
    if (name == "number") return v.t == Value::T::Int || v.t == Value::T::Float;
    if (name == "integer") return v.t == Value::T::Int;
    if (name == "float") return v.t == Value::T::Float;
    if (name == "boolean") return v.t == Value::T::Bool;
    if (name == "mapping") return v.t == Value::T::Dict;
    if (name == "sequence") return v.t == Value::T::List || v.t == Value::T::Str || v.t == Value::T::Dict;
    if (name == "iterable") return v.t == Value::T::List || v.t == Value::T::Str || v.t == Value::T::Dict;
    if (name == "callable") return v.t == Value::T::Func;
    if (name == "true") return v.t == Value::T::Bool && v.b;
    if (name == "false") return v.t == Value::T::Bool && !v.b;
    if (name == "even") return to_int(v, line) % 2 == 0;
    if (name == "odd") return to_int(v, line) % 2 != 0;
    if (name == "divisibleby") {
      need(1);
      int64_t d = to_int(args[0], line);
      if (d == 0) err(line, "divisibleby 0");
      return to_int(v, line) % d == 0;
    }
    if (name == "eq" || name == "equalto" || name == "==" || name == "sameas") {
      need(1);
      return equal(v, args[0]);
    }
    if (name == "ne" || name == "!=") {
      need(1);
      return !equal(v, args[0]);
    }
    if (name == "lt" || name == "lessthan" || name == "<" || name == "gt" || name == "greaterthan" || name == ">" ||
        name == "le" || name == "<=" || name == "ge" || name == ">=") {
      need(1);
      std::string op = name == "lt" || name == "lessthan" ? "<"
                       : name == "gt" || name == "greaterthan" ? ">"
                       : name == "le" ? "<="
                       : name == "ge" ? ">="
                                      : name;
      return truthy(binop(op, v, args[0], line));
    }
    if (name == "in") {
      need(1);
      return truthy(binop("in", v, args[0], line));
    }
    if (name == "lower") return v.t == Value::T::Str && v.s == lower(v.s);
    if (name == "upper") return v.t == Value::T::Str && v.s == upper(v.s);
    err(line, fmt::format("unknown test '{}'", name));
  }

  static std::string lower(std::string s) {
    for (auto& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
    return s;
  }
  static std::string upper(std::string s) {
    for (auto& c : s) c = char(std::toupper(static_cast<unsigned char>(c)));
    return s;
  }

  Value binop(const std::string& op, const Value& a, const Value& b, int line) {
    if (op == "==") return Value::boolean(equal(a, b));
    if (op == "!=") return Value::boolean(!equal(a, b));
    if (op == "in" || op == "notin") {
      bool r;
      if (b.t == Value::T::Str) {
        if (a.t != Value::T::Str) err(line, "'in <string>' requires a string on the left");
        r = b.s.find(a.s) != std::string::npos;
      } else if (b.t == Value::T::List) {
        r = std::any_of(b.l->begin(), b.l->end(), [&](const Value& x) { return equal(x, a); });
      } else if (b.t == Value::T::Dict) {
        r = a.t == Value::T::Str && b.get(a.s) != nullptr;
      } else if (b.t == Value::T::Undef) {
        err(line, fmt::format("'{}' is undefined", b.s));
      } else {
        err(line, fmt::format("argument of type '{}' is not iterable", type_name(b)));
      }
      return Value::boolean(op == "in" ? r : !r);
    }
    if (op == "~") return Value::str(to_str(a) + to_str(b));
    if (op == "<" || op == ">" || op == "<=" || op == ">=") {
      int c;
      if (a.is_num() && b.is_num()) {
        c = a.num() < b.num() ? -1 : a.num() > b.num() ? 1 : 0;
      } else if (a.t == Value::T::Str && b.t == Value::T::Str) {
        c = a.s.compare(b.s);
      } else {
        err(line, fmt::format("cannot compare {} and {}", type_name(a), type_name(b)));
      }
      bool r = op == "<" ? c < 0 : op == ">" ? c > 0 : op == "<=" ? c <= 0 : c >= 0;
      return Value::boolean(r);
    }
    if (op == "+") {
      if (a.t == Value::T::Str && b.t == Value::T::Str) return Value::str(a.s + b.s);
      if (a.t == Value::T::List && b.t == Value::T::List) {
        List l = *a.l;
        l.insert(l.end(), b.l->begin(), b.l->end());
        return Value::list(std::move(l));
      }
    }
    if (op == "*" && a.t == Value::T::Str && (b.t == Value::T::Int || b.t == Value::T::Bool)) {
      const int64_t n = b.t == Value::T::Bool ? b.b : b.i;
      if (n <= 0 || a.s.empty()) return Value::str("");
      uint64_t bytes;
      if (__builtin_mul_overflow(uint64_t(a.s.size()), uint64_t(n), &bytes)) bytes = UINT64_MAX;
      check_size(bytes, line, fmt::format("string repetition ({} bytes x {})", a.s.size(), n).c_str());
      std::string out;
      out.reserve(size_t(bytes));
      for (int64_t k = 0; k < n; ++k) out += a.s;
      return Value::str(std::move(out));
    }
    if (op == "*" && a.t == Value::T::Str && b.t == Value::T::Float)
      err(line, "can't multiply sequence by non-int of type 'float'");
    if (!a.is_num() || !b.is_num()) {
      std::string what = a.t == Value::T::Undef ? fmt::format(" ('{}' is undefined)", a.s)
                         : b.t == Value::T::Undef ? fmt::format(" ('{}' is undefined)", b.s)
                                                  : "";
      err(line, fmt::format("unsupported operand types for {}: {} and {}{}", op, type_name(a), type_name(b), what));
    }
    bool ints = a.t != Value::T::Float && b.t != Value::T::Float;
    if (op == "/") {
      if (b.num() == 0) err(line, "division by zero");
      return Value::real(a.num() / b.num());
    }
    if (ints) {
      int64_t x = a.t == Value::T::Bool ? a.b : a.i, y = b.t == Value::T::Bool ? b.b : b.i;
      int64_t res = 0;
      if ((op == "+" && __builtin_add_overflow(x, y, &res)) || (op == "-" && __builtin_sub_overflow(x, y, &res)) ||
          (op == "*" && __builtin_mul_overflow(x, y, &res)))
        err(line, fmt::format("integer overflow in {} {} {}", x, op, y));
      if (op == "+" || op == "-" || op == "*") return Value::integer(res);
      if (op == "//" || op == "%") {
        if (y == 0) err(line, "division by zero");
        int64_t q = x / y, r = x % y;
        if (r != 0 && ((r < 0) != (y < 0))) {
          --q;
          r += y;
        }
        return Value::integer(op == "//" ? q : r);
      }
      if (op == "**") {
        double p = std::pow(double(x), double(y));
        if (!(std::fabs(p) < 9.2e18)) err(line, fmt::format("integer overflow in {} ** {}", x, y));
        return Value::integer(int64_t(p));
      }
    }
    double x = a.num(), y = b.num();
    if (op == "+") return Value::real(x + y);
    if (op == "-") return Value::real(x - y);
    if (op == "*") return Value::real(x * y);
    if (op == "//") return Value::real(std::floor(x / y));
    if (op == "%") return Value::real(x - y * std::floor(x / y));
    if (op == "**") return Value::real(std::pow(x, y));
    err(line, fmt::format("unknown operator {}", op));
  }

  Value attr(const Value& obj, const std::string& name, int line) {
    if (obj.t == Value::T::Undef)
      err(line, fmt::format("'{}' is undefined (accessing .{})", obj.s.empty() ? "value" : obj.s, name));
    if (obj.t == Value::T::Dict) {
      if (const Value* v = obj.get(name)) return *v;
    }
    return Value::undef(name);
  }

  Value item(const Value& obj, const Value& key, int line) {
    if (obj.t == Value::T::Undef) err(line, fmt::format("'{}' is undefined (subscripted)", obj.s));
    if (obj.t == Value::T::Dict) {
      if (key.t == Value::T::Str)
        if (const Value* v = obj.get(key.s)) return *v;
      return Value::undef(to_str(key));
    }
    if ((obj.t == Value::T::List || obj.t == Value::T::Str) && (key.t == Value::T::Int || key.t == Value::T::Bool)) {
      if (obj.t == Value::T::List) {
        int64_t n = int64_t(obj.l->size()), k = to_int(key, line);
        if (k < 0) k += n;
        if (k < 0 || k >= n) return Value::undef("index");
        return (*obj.l)[size_t(k)];
      }
      auto chars = utf8_chars(obj.s);
      int64_t n = int64_t(chars.size()), k = to_int(key, line);
      if (k < 0) k += n;
      if (k < 0 || k >= n) return Value::undef("index");
      return Value::str(chars[size_t(k)]);
    }
    if (key.t == Value::T::Str) return attr(obj, key.s, line);
    return Value::undef(to_str(key));
  }

  Value slice(const Value& obj, const Value* s0, const Value* s1, const Value* s2, int line) {
    List src;
    bool is_str = obj.t == Value::T::Str;
    if (is_str) {
      for (auto& c : utf8_chars(obj.s)) src.push_back(Value::str(c));
    } else if (obj.t == Value::T::List) {
      src = *obj.l;
    } else {
      err(line, fmt::format("cannot slice {}", type_name(obj)));
    }
    int64_t n = int64_t(src.size());
    int64_t step = s2 && s2->t != Value::T::None ? to_int(*s2, line) : 1;
    if (step == 0) err(line, "slice step cannot be zero");
    auto norm = [&](const Value* v, int64_t dflt) {
      if (!v || v->t == Value::T::None) return dflt;
      int64_t k = to_int(*v, line);
      if (k < 0) k += n;
      if (step > 0) return std::clamp<int64_t>(k, 0, n);
      return std::clamp<int64_t>(k, -1, n - 1);
    };
    int64_t a = norm(s0, step > 0 ? 0 : n - 1), b = norm(s1, step > 0 ? n : -1);
    List out;
    for (int64_t k = a; step > 0 ? k < b : k > b; k += step) out.push_back(src[size_t(k)]);
    if (is_str) {
      std::string s;
      for (auto& v : out) s += v.s;
      return Value::str(s);
    }
    return Value::list(std::move(out));
  }

  Value filter(const std::string& name, Value v, Args& args, Kwargs& kw, int line) {
    if (name == "trim" || name == "strip") {
      return Value::str(strip(to_str(v), " \t\n\r\v\f", true, true));
    }
    if (name == "tojson") {
      Value ind = arg(args, kw, 0, "indent", Value::none());
      std::string out;
      to_json(v, ind.t == Value::T::None ? -1 : int(to_int(ind, line)), 0, out);
      return Value::str(out);
    }
    if (name == "length" || name == "count") {
      switch (v.t) {
        case Value::T::Str: return Value::integer(int64_t(utf8_chars(v.s).size()));
        case Value::T::List: return Value::integer(int64_t(v.l->size()));
        case Value::T::Dict: return Value::integer(int64_t(v.d->size()));
        case Value::T::Undef: return Value::integer(0);
        default: err(line, fmt::format("object of type {} has no length", type_name(v)));
      }
    }
    if (name == "upper") return Value::str(upper(to_str(v)));
    if (name == "lower") return Value::str(lower(to_str(v)));
    if (name == "capitalize") {
      std::string s = lower(to_str(v));
      if (!s.empty()) s[0] = char(std::toupper(static_cast<unsigned char>(s[0])));
      return Value::str(s);
    }
    if (name == "title") {
      std::string s = to_str(v);
      bool start = true;
      for (auto& c : s) {
        auto u = static_cast<unsigned char>(c);
        c = char(start ? std::toupper(u) : std::tolower(u));
        start = !std::isalnum(u);
      }
      return Value::str(s);
    }
    if (name == "default" || name == "d") {
      Value dflt = arg(args, kw, 0, "default_value", Value::str(""));
      bool boolean = truthy(arg(args, kw, 1, "boolean", Value::boolean(false)));
      if (v.t == Value::T::Undef || (boolean && !truthy(v))) return dflt;
      return v;
    }
    if (name == "first" || name == "last") {
      List l = iterate(v, line);
      if (l.empty()) return Value::undef(name);
      return name == "first" ? l.front() : l.back();
    }
    if (name == "join") {
      std::string sep = to_str(arg(args, kw, 0, "d", Value::str("")));
      std::string out;
      List l = iterate(v, line);
      for (size_t k = 0; k < l.size(); ++k) out += (k ? sep : "") + to_str(l[k]);
      return Value::str(out);
    }
    if (name == "string") return Value::str(to_str(v));
    if (name == "safe" || name == "e" || name == "escape") return v;  // autoescape is off in HF
    if (name == "int") {
      if (v.t == Value::T::Str) {
        try {
          return Value::integer(std::stoll(v.s));
        } catch (const std::exception&) {
          return Value::integer(0);
        }
      }
      return v.is_num() ? Value::integer(int64_t(v.num())) : Value::integer(0);
    }
    if (name == "float") {
      if (v.t == Value::T::Str) {
        try {
          return Value::real(std::stod(v.s));
        } catch (const std::exception&) {
          return Value::real(0);
        }
      }
      return v.is_num() ? Value::real(v.num()) : Value::real(0);
    }
    if (name == "abs") {
      if (v.t == Value::T::Int) return Value::integer(v.i < 0 ? -v.i : v.i);
      return Value::real(std::fabs(v.num()));
    }
    if (name == "list") return Value::list(iterate(v, line));
    if (name == "reverse") {
      if (v.t == Value::T::Str) {
        auto c = utf8_chars(v.s);
        std::string s;
        for (auto it = c.rbegin(); it != c.rend(); ++it) s += *it;
        return Value::str(s);
      }
      List l = iterate(v, line);
      std::reverse(l.begin(), l.end());
      return Value::list(std::move(l));
    }
    if (name == "items") {
      if (v.t == Value::T::Undef) return Value::list();
      if (v.t != Value::T::Dict) err(line, "items filter needs a mapping");
      List out;
      for (const auto& [k, x] : *v.d) out.push_back(Value::list({Value::str(k), x}));
      return Value::list(std::move(out));
    }
    if (name == "replace") {
      std::string s = to_str(v), a = to_str(arg(args, kw, 0, "old", Value::str(""))),
                  b = to_str(arg(args, kw, 1, "new", Value::str("")));
      if (a.empty()) return Value::str(s);
      std::string out;
      size_t pos = 0, f;
      while ((f = s.find(a, pos)) != std::string::npos) {
        out += s.substr(pos, f - pos) + b;
        pos = f + a.size();
        check_size(out.size(), line, "replace()'s result");
      }
      return Value::str(out + s.substr(pos));
    }
    if (name == "map") {
      const Value* at = kwarg(kw, "attribute");
      List out;
      for (auto& x : iterate(v, line)) {
        if (at) {
          out.push_back(item(x, *at, line));
        } else if (!args.empty()) {
          Args none;
          Kwargs nokw;
          out.push_back(filter(to_str(args[0]), x, none, nokw, line));
        } else {
          err(line, "map needs a filter name or attribute=");
        }
      }
      return Value::list(std::move(out));
    }
    if (name == "selectattr" || name == "rejectattr") {
      if (args.empty()) err(line, fmt::format("{} needs an attribute name", name));
      List out;
      for (auto& x : iterate(v, line)) {
        Value a = x.t == Value::T::Dict ? item(x, args[0], line) : Value::undef();
        bool ok;
        if (args.size() >= 2) {
          Args targs(args.begin() + 2, args.end());
          ok = test(to_str(args[1]), a, targs, line);
        } else {
          ok = truthy(a);
        }
        if (ok == (name == "selectattr")) out.push_back(x);
      }
      return Value::list(std::move(out));
    }
    err(line, fmt::format("unknown filter '{}'", name));
  }

  Value method(const Value& obj, const std::string& name, Args& a, Kwargs& kw, int line) {
    if (obj.t == Value::T::Str) {
      const std::string& s = obj.s;
      const std::string ws = " \t\n\r\v\f";
      if (name == "strip" || name == "lstrip" || name == "rstrip") {
        std::string chars = a.empty() || a[0].t == Value::T::None ? ws : to_str(a[0]);
        return Value::str(strip(s, chars, name != "rstrip", name != "lstrip"));
      }
      if (name == "upper") return Value::str(upper(s));
      if (name == "lower") return Value::str(lower(s));
      if (name == "title" || name == "capitalize") return filter(name, obj, a, kw, line);
      if (name == "startswith" || name == "endswith") {
        if (a.empty()) err(line, fmt::format("{} needs an argument", name));
        std::vector<std::string> pats;
        if (a[0].t == Value::T::List) {
          for (auto& x : *a[0].l) pats.push_back(to_str(x));
        } else {
          pats.push_back(to_str(a[0]));
        }
        for (auto& pfx : pats) {
          bool r = name == "startswith" ? s.compare(0, pfx.size(), pfx) == 0
                                        : s.size() >= pfx.size() && s.compare(s.size() - pfx.size(), pfx.size(), pfx) == 0;
          if (r) return Value::boolean(true);
        }
        return Value::boolean(false);
      }
      if (name == "split" || name == "rsplit") {
        Value sepv = arg(a, kw, 0, "sep", Value::none());
        int64_t maxsplit = to_int(arg(a, kw, 1, "maxsplit", Value::integer(-1)), line);
        List out;
        if (sepv.t == Value::T::None) {
          size_t i = 0;
          int64_t splits = 0;
          while (i < s.size()) {
            while (i < s.size() && ws.find(s[i]) != std::string::npos) ++i;
            if (i >= s.size()) break;
            if (maxsplit >= 0 && splits == maxsplit) {
              out.push_back(Value::str(strip(s.substr(i), ws, false, true)));
              break;
            }
            size_t j = i;
            while (j < s.size() && ws.find(s[j]) == std::string::npos) ++j;
            out.push_back(Value::str(s.substr(i, j - i)));
            ++splits;
            i = j;
          }
          return Value::list(std::move(out));
        }
        std::string sep = to_str(sepv);
        if (sep.empty()) err(line, "empty separator");
        size_t pos = 0, f;
        int64_t splits = 0;
        while ((maxsplit < 0 || splits < maxsplit) && (f = s.find(sep, pos)) != std::string::npos) {
          out.push_back(Value::str(s.substr(pos, f - pos)));
          pos = f + sep.size();
          ++splits;
        }
        out.push_back(Value::str(s.substr(pos)));
        return Value::list(std::move(out));
      }
      if (name == "replace") return filter("replace", obj, a, kw, line);
      if (name == "join") {
        if (a.empty()) err(line, "join needs an argument");
        Args sep{obj};
        Kwargs none;
        return filter("join", a[0], sep, none, line);
      }
      if (name == "find") {
        if (a.empty()) err(line, "find needs an argument");
        size_t f = s.find(to_str(a[0]));
        return Value::integer(f == std::string::npos ? -1 : int64_t(f));
      }
      if (name == "count") {
        if (a.empty()) err(line, "count needs an argument");
        std::string pat = to_str(a[0]);
        if (pat.empty()) return Value::integer(int64_t(utf8_chars(s).size()) + 1);
        int64_t c = 0;
        for (size_t pos = s.find(pat); pos != std::string::npos; pos = s.find(pat, pos + pat.size())) ++c;
        return Value::integer(c);
      }
    }
    if (obj.t == Value::T::Dict) {
      if (name == "items" && a.empty()) return filter("items", obj, a, kw, line);
      if (name == "keys") {
        List out;
        for (auto& kv : *obj.d) out.push_back(Value::str(kv.first));
        return Value::list(std::move(out));
      }
      if (name == "values") {
        List out;
        for (auto& kv : *obj.d) out.push_back(kv.second);
        return Value::list(std::move(out));
      }
      if (name == "get") {
        if (a.empty()) err(line, "get needs a key");
        if (a[0].t == Value::T::Str)
          if (const Value* v = obj.get(a[0].s)) return *v;
        return a.size() > 1 ? a[1] : Value::none();
      }
      if (const Value* f = obj.get(name); f && f->t == Value::T::Func) return (*f->fn)(a, kw);
    }
    if (obj.t == Value::T::Undef) err(line, fmt::format("'{}' is undefined (calling .{}())", obj.s, name));
    err(line, fmt::format("'{}' object has no method '{}'", type_name(obj), name));
  }

  Value eval(const Expr& e) {
    step(e.line);
    // 200 levels: real templates nest a few dozen; deeper trees (a long left-associative chain such as
    // 1 + 1 + ... parses without recursion) must not exhaust the stack, even with sanitizer-sized frames.
    if (depth >= kMaxEvalDepth) err(e.line, fmt::format("expression nested more than {} levels deep", kMaxEvalDepth));
    ++depth;
    struct Leave {
      int& d;
      ~Leave() { --d; }
    } leave{depth};
    Value v = eval_node(e);
    switch (e.k) {  // the kinds that compute a new value
      case Expr::Slice: case Expr::Call: case Expr::Filter: case Expr::Bin: case Expr::ListLit: case Expr::DictLit:
        charge(v, e.line);
        break;
      default: break;
    }
    return v;
  }

  Value eval_node(const Expr& e) {
    switch (e.k) {
      case Expr::Lit: return e.lit;
      case Expr::Var: return lookup(e.name);
      case Expr::Attr: return attr(eval(*e.a[0]), e.name, e.line);
      case Expr::Item: return item(eval(*e.a[0]), eval(*e.a[1]), e.line);
      case Expr::Slice: {
        Value obj = eval(*e.a[0]);
        Value p[3];
        const Value* pp[3] = {nullptr, nullptr, nullptr};
        for (int k = 0; k < 3; ++k)
          if (e.a[size_t(k) + 1]) {
            p[k] = eval(*e.a[size_t(k) + 1]);
            pp[k] = &p[k];
          }
        return slice(obj, pp[0], pp[1], pp[2], e.line);
      }
      case Expr::Call: {
        Args args;
        Kwargs kw;
        for (size_t k = 1; k < e.a.size(); ++k) args.push_back(eval(*e.a[k]));
        for (const auto& [k, x] : e.kw) kw.emplace_back(k, eval(*x));
        const Expr& callee = *e.a[0];
        if (callee.k == Expr::Attr) return method(eval(*callee.a[0]), callee.name, args, kw, e.line);
        Value f = eval(callee);
        if (f.t != Value::T::Func) {
          if (f.t == Value::T::Undef) err(e.line, fmt::format("'{}' is undefined (called as a function)", f.s));
          err(e.line, fmt::format("'{}' object is not callable", type_name(f)));
        }
        return (*f.fn)(args, kw);
      }
      case Expr::Filter: {
        Value v = eval(*e.a[0]);
        Args args;
        Kwargs kw;
        for (size_t k = 1; k < e.a.size(); ++k) args.push_back(eval(*e.a[k]));
        for (const auto& [k, x] : e.kw) kw.emplace_back(k, eval(*x));
        return filter(e.name, std::move(v), args, kw, e.line);
      }
      case Expr::Test: {
        Value v = eval(*e.a[0]);
        Args args;
        for (size_t k = 1; k < e.a.size(); ++k) args.push_back(eval(*e.a[k]));
        return Value::boolean(test(e.name, v, args, e.line) != e.negate);
      }
      case Expr::Not: return Value::boolean(!truthy(eval(*e.a[0])));
      case Expr::Neg: {
        Value v = eval(*e.a[0]);
        if (v.t == Value::T::Int) return Value::integer(-v.i);
        if (v.t == Value::T::Float) return Value::real(-v.f);
        err(e.line, fmt::format("bad operand type for unary -: {}", type_name(v)));
      }
      case Expr::Bin: {
        Value a = eval(*e.a[0]);
        Value b = eval(*e.a[1]);
        return binop(e.name, a, b, e.line);
      }
      case Expr::And: {
        Value a = eval(*e.a[0]);
        return truthy(a) ? eval(*e.a[1]) : a;
      }
      case Expr::Or: {
        Value a = eval(*e.a[0]);
        return truthy(a) ? a : eval(*e.a[1]);
      }
      case Expr::ListLit: {
        List l;
        for (const auto& x : e.a) l.push_back(eval(*x));
        return Value::list(std::move(l));
      }
      case Expr::DictLit: {
        Dict d;
        for (size_t k = 0; k + 1 < e.a.size(); k += 2) {
          Value key = eval(*e.a[k]);
          Value val = eval(*e.a[k + 1]);
          std::string ks = to_str(key);
          auto it = std::find_if(d.begin(), d.end(), [&](auto& kv) { return kv.first == ks; });
          if (it != d.end()) {
            it->second = val;
          } else {
            d.emplace_back(ks, val);
          }
        }
        return Value::dict(std::move(d));
      }
      case Expr::Cond: return truthy(eval(*e.a[0])) ? eval(*e.a[1]) : eval(*e.a[2]);
    }
    return Value::undef();
  }

  void assign(const std::string& name, Value v) { frames.back()[name] = std::move(v); }

  void exec(const Body& body, std::string& out) {
    for (const auto& n : body) exec(*n, out);
  }

  void exec(const Node& n, std::string& out) {
    step(n.line);
    switch (n.k) {
      case Node::Text:
        out += n.text;
        check_output(out, n.line);
        return;
      case Node::Out:
        out += to_str(eval(*n.e));
        check_output(out, n.line);
        return;
      case Node::If:
        for (size_t k = 0; k < n.bodies.size(); ++k) {
          if (k >= n.conds.size() || truthy(eval(*n.conds[k]))) {
            exec(n.bodies[k], out);
            return;
          }
        }
        return;
      case Node::For: {
        Value seq = eval(*n.e);
        List items = iterate(seq, n.line);
        frames.emplace_back();
        auto bind = [&](const Value& x) {
          if (n.targets.size() == 1) {
            assign(n.targets[0], x);
          } else {
            List parts = iterate(x, n.line);
            if (parts.size() != n.targets.size())
              err(n.line, fmt::format("cannot unpack {} values into {} names", parts.size(), n.targets.size()));
            for (size_t k = 0; k < parts.size(); ++k) assign(n.targets[k], parts[k]);
          }
        };
        if (n.filter) {
          List kept;
          for (const auto& x : items) {
            bind(x);
            if (truthy(eval(*n.filter))) kept.push_back(x);
          }
          items = std::move(kept);
        }
        const size_t len = items.size();
        for (size_t k = 0; k < len; ++k) {
          step(n.line);
          bind(items[k]);
          Dict loop = {{"index", Value::integer(int64_t(k) + 1)},
                       {"index0", Value::integer(int64_t(k))},
                       {"revindex", Value::integer(int64_t(len - k))},
                       {"revindex0", Value::integer(int64_t(len - k) - 1)},
                       {"first", Value::boolean(k == 0)},
                       {"last", Value::boolean(k + 1 == len)},
                       {"length", Value::integer(int64_t(len))},
                       {"previtem", k > 0 ? items[k - 1] : Value::undef("previtem")},
                       {"nextitem", k + 1 < len ? items[k + 1] : Value::undef("nextitem")}};
          assign("loop", Value::dict(std::move(loop)));
          try {
            exec(n.bodies[0], out);
          } catch (const ContinueSignal&) {
          } catch (const BreakSignal&) {
            break;
          }
        }
        frames.pop_back();
        if (len == 0 && n.bodies.size() > 1) exec(n.bodies[1], out);
        return;
      }
      case Node::Set: {
        Value v = eval(*n.e);
        if (!n.attr.empty()) {
          Value ns = lookup(n.targets[0]);
          if (ns.t != Value::T::Dict || !ns.is_ns)
            err(n.line, fmt::format("cannot set attribute of '{}': not a namespace()", n.targets[0]));
          auto it = std::find_if(ns.d->begin(), ns.d->end(), [&](auto& kv) { return kv.first == n.attr; });
          if (it != ns.d->end()) {
            it->second = v;
          } else {
            ns.d->emplace_back(n.attr, v);
          }
        } else if (n.targets.size() == 1) {
          assign(n.targets[0], v);
        } else {
          List parts = iterate(v, n.line);
          if (parts.size() != n.targets.size())
            err(n.line, fmt::format("cannot unpack {} values into {} names", parts.size(), n.targets.size()));
          for (size_t k = 0; k < parts.size(); ++k) assign(n.targets[k], parts[k]);
        }
        return;
      }
      case Node::SetBlock: {
        std::string s;
        exec(n.bodies[0], s);
        assign(n.targets[0], Value::str(s));
        return;
      }
      case Node::Break: throw BreakSignal{};
      case Node::Continue: throw ContinueSignal{};
    }
  }
};

}  // namespace

std::string evaluate(const Body& body, const json& messages, bool add_generation_prompt, const json& extra,
                     const std::string& bos_, const std::string& eos_, const ChatTemplateLimits& limits) {
  Interp in;
  in.lim = limits;
  in.frames.emplace_back();
  auto& g = in.frames.back();
  g["messages"] = from_json(messages);
  g["add_generation_prompt"] = Value::boolean(add_generation_prompt);
  g["tools"] = Value::none();
  g["documents"] = Value::none();
  if (!bos_.empty()) g["bos_token"] = Value::str(bos_);
  if (!eos_.empty()) g["eos_token"] = Value::str(eos_);
  g["raise_exception"] = Value::func([](Args& a, Kwargs&) -> Value {
    fail("chat template raised an exception: {}", a.empty() ? std::string("(no message)") : to_str(a[0]));
  });
  g["namespace"] = Value::func([&in](Args& a, Kwargs& kw) {
    Value v = Value::dict();
    v.is_ns = true;
    in.namespaces.push_back(v.d);
    if (!a.empty() && a[0].t == Value::T::Dict) *v.d = *a[0].d;
    for (auto& [k, x] : kw) v.d->emplace_back(k, x);
    return v;
  });
  g["range"] = Value::func([&in](Args& a, Kwargs&) {
    auto iv = [](const Value& v) { return v.t == Value::T::Int ? v.i : int64_t(v.num()); };
    int64_t start = 0, stop = 0, step = 1;
    if (a.size() == 1) {
      stop = iv(a[0]);
    } else if (a.size() >= 2) {
      start = iv(a[0]);
      stop = iv(a[1]);
      if (a.size() > 2) step = iv(a[2]);
    }
    if (step == 0) fail("chat template: range() step must not be zero");
    // Length as Python computes it, in 128 bits (range(-2**62, 2**62) must not overflow).
    __int128 span = step > 0 ? __int128(stop) - start : __int128(start) - stop;
    __int128 m = step > 0 ? step : -__int128(step);
    uint64_t n = span <= 0 ? 0 : uint64_t(std::min<__int128>((span + m - 1) / m, __int128(UINT64_MAX / sizeof(Value))));
    in.check_size(n * sizeof(Value), 0, fmt::format("range() of {} numbers", n).c_str());
    List l;
    l.reserve(size_t(n));
    for (uint64_t i = 0; i < n; ++i) l.push_back(Value::integer(int64_t(start + __int128(i) * step)));
    return Value::list(std::move(l));
  });
  g["strftime_now"] = Value::func([](Args& a, Kwargs&) {
    std::string f = a.empty() ? "%Y-%m-%d" : to_str(a[0]);
    std::time_t now = std::time(nullptr);
    std::tm tm{};
    localtime_r(&now, &tm);
    char buf[256];
    size_t n = std::strftime(buf, sizeof buf, f.c_str(), &tm);
    return Value::str(std::string(buf, n));
  });
  if (extra.is_object())
    for (const auto& [k, v] : extra.items()) g[k] = from_json(v);
  std::string out;
  in.exec(body, out);
  return out;
}

}  // namespace rvec::text::jinja
