// A small Jinja2 interpreter for Hugging Face chat templates (see chat_template.h).
#include "text/chat_template.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <functional>
#include <map>
#include <unordered_map>

#include "core/atomic_output.h"
#include "core/error.h"
#include "text/tokenizer.h"

namespace rvec::text {

using json = nlohmann::ordered_json;

namespace {

// ============================================================ values
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

std::string to_str(const Value& v, bool repr = false);

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

// ============================================================ lexer (expressions)
struct Tok {
  enum K { Name, Str, Int, Float, Op, End } k;
  std::string v;
};

struct ExprLexer {
  std::vector<Tok> toks;
  ExprLexer(const std::string& src, int line) {
    size_t i = 0, n = src.size();
    while (i < n) {
      char c = src[i];
      if (std::isspace(static_cast<unsigned char>(c))) {
        ++i;
      } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t j = i;
        while (j < n && (std::isalnum(static_cast<unsigned char>(src[j])) || src[j] == '_')) ++j;
        toks.push_back({Tok::Name, src.substr(i, j - i)});
        i = j;
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        size_t j = i;
        bool is_float = false;
        while (j < n && (std::isdigit(static_cast<unsigned char>(src[j])) || src[j] == '_')) ++j;
        if (j + 1 < n && src[j] == '.' && std::isdigit(static_cast<unsigned char>(src[j + 1]))) {
          is_float = true;
          ++j;
          while (j < n && std::isdigit(static_cast<unsigned char>(src[j]))) ++j;
        }
        std::string num = src.substr(i, j - i);
        num.erase(std::remove(num.begin(), num.end(), '_'), num.end());
        toks.push_back({is_float ? Tok::Float : Tok::Int, num});
        i = j;
      } else if (c == '\'' || c == '"') {
        std::string s;
        size_t j = i + 1;
        for (;; ++j) {
          if (j >= n) fail("chat template: line {}: unterminated string literal", line);
          char d = src[j];
          if (d == c) break;
          if (d == '\\' && j + 1 < n) {
            char e = src[++j];
            switch (e) {
              case 'n': s += '\n'; break;
              case 't': s += '\t'; break;
              case 'r': s += '\r'; break;
              case '\\': s += '\\'; break;
              case '\'': s += '\''; break;
              case '"': s += '"'; break;
              default:
                s += '\\';
                s += e;
            }
          } else {
            s += d;
          }
        }
        toks.push_back({Tok::Str, s});
        i = j + 1;
      } else {
        static const char* ops2[] = {"==", "!=", "<=", ">=", "//", "**"};
        bool found = false;
        for (const char* op : ops2)
          if (src.compare(i, 2, op) == 0) {
            toks.push_back({Tok::Op, op});
            i += 2;
            found = true;
            break;
          }
        if (found) continue;
        if (std::string("+-*/%~()[]{}.,:|=<>").find(c) == std::string::npos)
          fail("chat template: line {}: unexpected character '{}' in expression", line, c);
        toks.push_back({Tok::Op, std::string(1, c)});
        ++i;
      }
    }
    toks.push_back({Tok::End, ""});
  }
};

// ============================================================ AST
struct Expr {
  enum K { Lit, Var, Attr, Item, Slice, Call, Filter, Test, Not, Neg, Bin, And, Or, ListLit, DictLit, Cond } k;
  Value lit;
  std::string name;  // Var, Attr, Filter/Test name, Bin op
  std::vector<std::unique_ptr<Expr>> a;  // operands / args
  std::vector<std::pair<std::string, std::unique_ptr<Expr>>> kw;
  bool negate = false;
  int line = 0;
};
using ExprP = std::unique_ptr<Expr>;

ExprP mk(Expr::K k, int line) {
  auto e = std::make_unique<Expr>();
  e->k = k;
  e->line = line;
  return e;
}

struct ExprParser {
  std::vector<Tok> t;
  size_t p = 0;
  int line;
  ExprParser(const std::string& src, int ln) : t(ExprLexer(src, ln).toks), line(ln) {}

  const Tok& cur() const { return t[p]; }
  bool is_op(const char* o) const { return t[p].k == Tok::Op && t[p].v == o; }
  bool is_name(const char* n) const { return t[p].k == Tok::Name && t[p].v == n; }
  bool at_end() const { return t[p].k == Tok::End; }
  [[noreturn]] void err(const std::string& what) const {
    fail("chat template: line {}: {} (at '{}')", line, what, at_end() ? "end of tag" : t[p].v);
  }
  void expect_op(const char* o) {
    if (!is_op(o)) err(fmt::format("expected '{}'", o));
    ++p;
  }
  std::string expect_name() {
    if (t[p].k != Tok::Name) err("expected a name");
    return t[p++].v;
  }

  ExprP expr() {
    ExprP e = or_expr();
    if (is_name("if")) {
      ++p;
      auto c = mk(Expr::Cond, line);
      ExprP cond = or_expr();
      ExprP other;
      if (is_name("else")) {
        ++p;
        other = expr();
      } else {
        other = mk(Expr::Lit, line);
        other->lit = Value::undef();
      }
      c->a.push_back(std::move(cond));
      c->a.push_back(std::move(e));
      c->a.push_back(std::move(other));
      return c;
    }
    return e;
  }
  ExprP or_expr() {
    ExprP e = and_expr();
    while (is_name("or")) {
      ++p;
      auto o = mk(Expr::Or, line);
      o->a.push_back(std::move(e));
      o->a.push_back(and_expr());
      e = std::move(o);
    }
    return e;
  }
  ExprP and_expr() {
    ExprP e = not_expr();
    while (is_name("and")) {
      ++p;
      auto o = mk(Expr::And, line);
      o->a.push_back(std::move(e));
      o->a.push_back(not_expr());
      e = std::move(o);
    }
    return e;
  }
  ExprP not_expr() {
    if (is_name("not")) {
      ++p;
      auto o = mk(Expr::Not, line);
      o->a.push_back(not_expr());
      return o;
    }
    return compare();
  }
  ExprP compare() {
    ExprP e = math1();
    for (;;) {
      std::string op;
      if (cur().k == Tok::Op && (cur().v == "==" || cur().v == "!=" || cur().v == "<" || cur().v == ">" ||
                                 cur().v == "<=" || cur().v == ">=")) {
        op = cur().v;
        ++p;
      } else if (is_name("in")) {
        op = "in";
        ++p;
      } else if (is_name("not") && t[p + 1].k == Tok::Name && t[p + 1].v == "in") {
        op = "notin";
        p += 2;
      } else {
        return e;
      }
      auto b = mk(Expr::Bin, line);
      b->name = op;
      b->a.push_back(std::move(e));
      b->a.push_back(math1());
      e = std::move(b);
    }
  }
  ExprP binary_chain(ExprP (ExprParser::*next)(), std::initializer_list<const char*> ops) {
    ExprP e = (this->*next)();
    for (;;) {
      const char* hit = nullptr;
      for (const char* o : ops)
        if (is_op(o)) hit = o;
      if (!hit) return e;
      ++p;
      auto b = mk(Expr::Bin, line);
      b->name = hit;
      b->a.push_back(std::move(e));
      b->a.push_back((this->*next)());
      e = std::move(b);
    }
  }
  ExprP math1() { return binary_chain(&ExprParser::concat, {"+", "-"}); }
  ExprP concat() { return binary_chain(&ExprParser::math2, {"~"}); }
  ExprP math2() { return binary_chain(&ExprParser::pow_expr, {"*", "/", "//", "%"}); }
  ExprP pow_expr() { return binary_chain(&ExprParser::unary_f, {"**"}); }
  ExprP unary_f() { return unary(true); }
  ExprP unary(bool with_filter) {
    ExprP e;
    if (is_op("-")) {
      ++p;
      e = mk(Expr::Neg, line);
      e->a.push_back(unary(false));
    } else if (is_op("+")) {
      ++p;
      e = unary(false);
    } else {
      e = postfix(primary());
    }
    if (with_filter) e = filters(std::move(e));
    return e;
  }
  void call_args(Expr& e) {
    expect_op("(");
    while (!is_op(")")) {
      if (cur().k == Tok::Name && t[p + 1].k == Tok::Op && t[p + 1].v == "=") {
        std::string k = cur().v;
        p += 2;
        e.kw.emplace_back(k, expr());
      } else {
        e.a.push_back(expr());
      }
      if (!is_op(",")) break;
      ++p;
    }
    expect_op(")");
  }
  ExprP filters(ExprP e) {
    for (;;) {
      if (is_op("|")) {
        ++p;
        auto f = mk(Expr::Filter, line);
        f->name = expect_name();
        f->a.push_back(std::move(e));
        if (is_op("(")) call_args(*f);
        e = std::move(f);
      } else if (is_name("is")) {
        ++p;
        auto f = mk(Expr::Test, line);
        if (is_name("not")) {
          ++p;
          f->negate = true;
        }
        if (cur().k == Tok::Name) {
          f->name = cur().v;
          ++p;
        } else if (cur().k == Tok::Op && (cur().v == "==" || cur().v == "!=" || cur().v == "<" || cur().v == ">" ||
                                          cur().v == "<=" || cur().v == ">=")) {
          f->name = cur().v;
          ++p;
        } else {
          err("expected a test name after 'is'");
        }
        f->a.push_back(std::move(e));
        if (is_op("(")) {
          call_args(*f);
        } else if (cur().k == Tok::Str || cur().k == Tok::Int || cur().k == Tok::Float ||
                   (cur().k == Tok::Name && cur().v != "and" && cur().v != "or" && cur().v != "else" &&
                    cur().v != "if" && cur().v != "is" && cur().v != "in" && cur().v != "not")) {
          f->a.push_back(postfix(primary()));  // `is sameas x`, `is divisibleby 3`
        }
        e = std::move(f);
      } else {
        return e;
      }
    }
  }
  int nest = 0;
  struct NestGuard {
    ExprParser& p;
    explicit NestGuard(ExprParser& q) : p(q) {
      if (++p.nest > 100) p.err("expression nested too deeply");
    }
    ~NestGuard() { --p.nest; }
  };
  ExprP primary() {
    NestGuard guard(*this);
    const Tok& k = cur();
    if (k.k == Tok::Str) {
      auto e = mk(Expr::Lit, line);
      std::string s;
      while (cur().k == Tok::Str) s += t[p++].v;  // adjacent literals concatenate
      e->lit = Value::str(s);
      return e;
    }
    if (k.k == Tok::Int || k.k == Tok::Float) {
      auto e = mk(Expr::Lit, line);
      try {
        e->lit = k.k == Tok::Int ? Value::integer(std::stoll(k.v)) : Value::real(std::stod(k.v));
      } catch (const std::exception&) {
        err("bad number");
      }
      ++p;
      return e;
    }
    if (k.k == Tok::Name) {
      auto e = mk(Expr::Lit, line);
      if (k.v == "true" || k.v == "True") {
        e->lit = Value::boolean(true);
      } else if (k.v == "false" || k.v == "False") {
        e->lit = Value::boolean(false);
      } else if (k.v == "none" || k.v == "None") {
        e->lit = Value::none();
      } else {
        e->k = Expr::Var;
        e->name = k.v;
      }
      ++p;
      return e;
    }
    if (is_op("(")) {
      ++p;
      ExprP e = expr();
      if (is_op(",")) {  // tuple -> list
        auto l = mk(Expr::ListLit, line);
        l->a.push_back(std::move(e));
        while (is_op(",")) {
          ++p;
          if (is_op(")")) break;
          l->a.push_back(expr());
        }
        e = std::move(l);
      }
      expect_op(")");
      return e;
    }
    if (is_op("[")) {
      ++p;
      auto l = mk(Expr::ListLit, line);
      while (!is_op("]")) {
        l->a.push_back(expr());
        if (!is_op(",")) break;
        ++p;
      }
      expect_op("]");
      return l;
    }
    if (is_op("{")) {
      ++p;
      auto d = mk(Expr::DictLit, line);
      while (!is_op("}")) {
        d->a.push_back(expr());
        expect_op(":");
        d->a.push_back(expr());
        if (!is_op(",")) break;
        ++p;
      }
      expect_op("}");
      return d;
    }
    err("expected an expression");
  }
  ExprP postfix(ExprP e) {
    for (;;) {
      if (is_op(".")) {
        ++p;
        auto a = mk(Expr::Attr, line);
        if (cur().k == Tok::Int) {  // x.0 == x[0]
          a->k = Expr::Item;
          auto idx = mk(Expr::Lit, line);
          try {
            idx->lit = Value::integer(std::stoll(cur().v));
          } catch (const std::exception&) {
            err("bad index");
          }
          ++p;
          a->a.push_back(std::move(e));
          a->a.push_back(std::move(idx));
        } else {
          a->name = expect_name();
          a->a.push_back(std::move(e));
        }
        e = std::move(a);
      } else if (is_op("[")) {
        ++p;
        ExprP parts[3];
        bool slice = false;
        int idx = 0;
        while (!is_op("]")) {
          if (is_op(":")) {
            slice = true;
            ++p;
            if (++idx > 2) err("bad slice");
            continue;
          }
          parts[idx] = expr();
        }
        expect_op("]");
        if (slice) {
          auto s = mk(Expr::Slice, line);
          s->a.push_back(std::move(e));
          for (auto& x : parts) s->a.push_back(std::move(x));  // may be null
          e = std::move(s);
        } else {
          if (!parts[0]) err("empty subscript");
          auto it = mk(Expr::Item, line);
          it->a.push_back(std::move(e));
          it->a.push_back(std::move(parts[0]));
          e = std::move(it);
        }
      } else if (is_op("(")) {
        auto c = mk(Expr::Call, line);
        c->a.push_back(std::move(e));
        call_args(*c);
        e = std::move(c);
      } else {
        return e;
      }
    }
  }
};

// ============================================================ template structure
struct Node {
  enum K { Text, Out, If, For, Set, SetBlock, Break, Continue } k;
  std::string text;                                  // Text
  std::vector<ExprP> conds;                          // If: one per branch (else branch has none)
  std::vector<std::vector<std::unique_ptr<Node>>> bodies;  // If branches / For body + else / SetBlock body
  std::vector<std::string> targets;                  // For loop vars / Set names ("ns.attr" as 2 parts)
  std::string attr;                                  // Set ns.attr
  ExprP e, filter;                                   // Out / For iterable / Set value; For filter
  int line = 0;
};
using NodeP = std::unique_ptr<Node>;
using Body = std::vector<NodeP>;

struct Item {
  enum K { Text, Expr, Stmt } k;
  std::string s;
  int line;
};

std::vector<Item> lex_template(const std::string& src) {
  std::vector<Item> items;
  size_t pos = 0, n = src.size();
  bool strip_next = false;
  auto line_of = [&](size_t at) { return 1 + int(std::count(src.begin(), src.begin() + std::ptrdiff_t(at), '\n')); };
  while (pos <= n) {
    size_t k = pos;
    for (; k + 1 < n; ++k)
      if (src[k] == '{' && (src[k + 1] == '{' || src[k + 1] == '%' || src[k + 1] == '#')) break;
    if (k + 1 >= n) k = n;
    std::string text = src.substr(pos, k - pos);
    if (strip_next) text.erase(0, text.find_first_not_of(" \t\r\n\v\f") == std::string::npos
                                      ? text.size()
                                      : text.find_first_not_of(" \t\r\n\v\f"));
    strip_next = false;
    if (k >= n) {
      if (!text.empty()) items.push_back({Item::Text, text, line_of(pos)});
      break;
    }
    char kind = src[k + 1];
    char mod = k + 2 < n ? src[k + 2] : '\0';
    if (mod == '-') {
      size_t e = text.find_last_not_of(" \t\r\n\v\f");
      text.erase(e == std::string::npos ? 0 : e + 1);
    } else if (kind != '{' && mod != '+') {  // lstrip_blocks
      size_t nl = text.rfind('\n');
      size_t from = nl == std::string::npos ? 0 : nl + 1;
      bool line_start = nl != std::string::npos || pos == 0 || src[pos - 1] == '\n';
      if (line_start && text.find_first_not_of(" \t", from) == std::string::npos) text.erase(from);
    }
    if (!text.empty()) items.push_back({Item::Text, text, line_of(pos)});
    // find the closing delimiter, skipping string literals
    const char* close = kind == '{' ? "}}" : kind == '%' ? "%}" : "#}";
    size_t j = k + 2;
    char quote = 0;
    for (; j + 1 < n; ++j) {
      char c = src[j];
      if (kind != '#') {
        if (quote) {
          if (c == '\\') {
            ++j;
          } else if (c == quote) {
            quote = 0;
          }
          continue;
        }
        if (c == '\'' || c == '"') {
          quote = c;
          continue;
        }
      }
      if (src[j] == close[0] && src[j + 1] == close[1]) break;
    }
    if (j + 1 >= n) fail("chat template: line {}: unclosed '{{{}'", line_of(k), kind);
    size_t in_start = k + 2 + ((mod == '-' || mod == '+') ? 1 : 0);
    size_t in_end = j;
    bool close_minus = in_end > in_start && src[in_end - 1] == '-';
    bool close_plus = in_end > in_start && src[in_end - 1] == '+';
    if (close_minus || close_plus) --in_end;
    std::string inner = src.substr(in_start, in_end - in_start);
    if (kind == '{') items.push_back({Item::Expr, inner, line_of(k)});
    if (kind == '%') {
      // {% raw %}...{% endraw %}
      std::string trimmed = inner;
      trimmed.erase(0, trimmed.find_first_not_of(" \t\r\n"));
      trimmed.erase(trimmed.find_last_not_of(" \t\r\n") + 1);
      if (trimmed == "raw") {
        size_t endraw = src.find("endraw", j);
        size_t open = endraw == std::string::npos ? std::string::npos : src.rfind("{%", endraw);
        size_t close2 = endraw == std::string::npos ? std::string::npos : src.find("%}", endraw);
        if (open == std::string::npos || close2 == std::string::npos)
          fail("chat template: line {}: {{% raw %}} without {{% endraw %}}", line_of(k));
        items.push_back({Item::Text, src.substr(j + 2, open - j - 2), line_of(j)});
        pos = close2 + 2;
        continue;
      }
      items.push_back({Item::Stmt, inner, line_of(k)});
    }
    pos = j + 2;
    if (close_minus) {
      strip_next = true;
    } else if (kind != '{' && !close_plus) {  // trim_blocks
      if (pos < n && src[pos] == '\n') {
        ++pos;
      } else if (pos + 1 < n && src[pos] == '\r' && src[pos + 1] == '\n') {
        pos += 2;
      }
    }
  }
  return items;
}

struct TemplateParser {
  std::vector<Item> items;
  size_t p = 0;

  static std::string first_word(const std::string& s) {
    size_t a = s.find_first_not_of(" \t\r\n");
    if (a == std::string::npos) return "";
    size_t b = a;
    while (b < s.size() && (std::isalnum(static_cast<unsigned char>(s[b])) || s[b] == '_')) ++b;
    return s.substr(a, b - a);
  }
  static std::string rest(const std::string& s) {
    size_t a = s.find_first_not_of(" \t\r\n");
    if (a == std::string::npos) return "";
    size_t b = a;
    while (b < s.size() && (std::isalnum(static_cast<unsigned char>(s[b])) || s[b] == '_')) ++b;
    return s.substr(b);
  }

  // Parses until one of `ends` (returned in `ended`, its item index left at p-1).
  Body block(std::initializer_list<const char*> ends, std::string& ended) {
    Body body;
    while (p < items.size()) {
      const Item& it = items[p];
      if (it.k == Item::Text) {
        auto nd = std::make_unique<Node>();
        nd->k = Node::Text;
        nd->text = it.s;
        body.push_back(std::move(nd));
        ++p;
        continue;
      }
      if (it.k == Item::Expr) {
        auto nd = std::make_unique<Node>();
        nd->k = Node::Out;
        nd->line = it.line;
        ExprParser ep(it.s, it.line);
        nd->e = ep.expr();
        if (!ep.at_end()) ep.err("unexpected token after expression");
        body.push_back(std::move(nd));
        ++p;
        continue;
      }
      std::string w = first_word(it.s);
      for (const char* e : ends)
        if (w == e) {
          ended = w;
          ++p;
          return body;
        }
      ++p;
      body.push_back(statement(w, it));
    }
    if (ends.size()) {
      std::string want;
      for (const char* e : ends) want += std::string(want.empty() ? "" : " or ") + e;
      fail("chat template: missing {{% {} %}} at end of template", want);
    }
    return body;
  }

  int nest = 0;
  NodeP statement(const std::string& w, const Item& it) {
    if (++nest > 100) fail("chat template: line {}: blocks nested too deeply", it.line);
    struct Dec {
      int& n;
      ~Dec() { --n; }
    } dec{nest};
    auto nd = std::make_unique<Node>();
    nd->line = it.line;
    std::string r = rest(it.s);
    if (w == "if") {
      nd->k = Node::If;
      ExprParser ep(r, it.line);
      nd->conds.push_back(ep.expr());
      if (!ep.at_end()) ep.err("unexpected token in if");
      for (;;) {
        std::string ended;
        nd->bodies.push_back(block({"elif", "else", "endif"}, ended));
        if (ended == "endif") break;
        const Item& br = items[p - 1];
        if (ended == "elif") {
          ExprParser e2(rest(br.s), br.line);
          nd->conds.push_back(e2.expr());
          if (!e2.at_end()) e2.err("unexpected token in elif");
        } else {
          std::string ended2;
          nd->bodies.push_back(block({"endif"}, ended2));
          break;
        }
      }
      return nd;
    }
    if (w == "for") {
      nd->k = Node::For;
      ExprParser ep(r, it.line);
      nd->targets.push_back(ep.expect_name());
      while (ep.is_op(",")) {
        ++ep.p;
        nd->targets.push_back(ep.expect_name());
      }
      if (!ep.is_name("in")) ep.err("expected 'in' in for");
      ++ep.p;
      nd->e = ep.or_expr();  // not expr(): a trailing `if` is the loop filter
      if (ep.is_name("if")) {
        ++ep.p;
        nd->filter = ep.expr();
      }
      if (ep.is_name("recursive")) ep.err("recursive loops are not supported");
      if (!ep.at_end()) ep.err("unexpected token in for");
      std::string ended;
      nd->bodies.push_back(block({"else", "endfor"}, ended));
      if (ended == "else") {
        std::string e2;
        nd->bodies.push_back(block({"endfor"}, e2));
      }
      return nd;
    }
    if (w == "set") {
      ExprParser ep(r, it.line);
      std::string name = ep.expect_name();
      nd->targets.push_back(name);
      if (ep.is_op(".")) {
        ++ep.p;
        nd->attr = ep.expect_name();
      }
      while (ep.is_op(",")) {
        ++ep.p;
        nd->targets.push_back(ep.expect_name());
      }
      if (ep.at_end()) {
        if (nd->targets.size() != 1 || !nd->attr.empty()) ep.err("bad block set");
        nd->k = Node::SetBlock;
        std::string ended;
        nd->bodies.push_back(block({"endset"}, ended));
        return nd;
      }
      nd->k = Node::Set;
      ep.expect_op("=");
      nd->e = ep.expr();
      if (ep.is_op(",")) {  // set a, b = x, y
        auto l = mk(Expr::ListLit, it.line);
        l->a.push_back(std::move(nd->e));
        while (ep.is_op(",")) {
          ++ep.p;
          l->a.push_back(ep.expr());
        }
        nd->e = std::move(l);
      }
      if (!ep.at_end()) ep.err("unexpected token in set");
      return nd;
    }
    if (w == "break" || w == "continue") {
      nd->k = w == "break" ? Node::Break : Node::Continue;
      return nd;
    }
    if (w == "generation") {  // transformers' {% generation %}: renders its body as is
      nd->k = Node::If;
      auto t = mk(Expr::Lit, it.line);
      t->lit = Value::boolean(true);
      nd->conds.push_back(std::move(t));
      std::string ended;
      nd->bodies.push_back(block({"endgeneration"}, ended));
      return nd;
    }
    fail("chat template: line {}: unsupported tag {{% {} %}}", it.line, w.empty() ? it.s : w);
  }
};

// ============================================================ evaluation
struct BreakSignal {};
struct ContinueSignal {};

struct Interp {
  std::vector<std::unordered_map<std::string, Value>> frames;
  int depth = 0;

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
    if (op == "*" && a.t == Value::T::Str && (b.t == Value::T::Int)) {
      std::string out;
      for (int64_t k = 0; k < b.i && k < 1000000; ++k) out += a.s;
      return Value::str(out);
    }
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
      if (op == "+") return Value::integer(x + y);
      if (op == "-") return Value::integer(x - y);
      if (op == "*") return Value::integer(x * y);
      if (op == "//" || op == "%") {
        if (y == 0) err(line, "division by zero");
        int64_t q = x / y, r = x % y;
        if (r != 0 && ((r < 0) != (y < 0))) {
          --q;
          r += y;
        }
        return Value::integer(op == "//" ? q : r);
      }
      if (op == "**") return Value::integer(int64_t(std::pow(double(x), double(y))));
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
    switch (n.k) {
      case Node::Text: out += n.text; return;
      case Node::Out: out += to_str(eval(*n.e)); return;
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

struct ChatTemplate::Program {
  std::string source;
  Body body;
};

ChatTemplate ChatTemplate::from_string(std::string source, std::string bos_token, std::string eos_token) {
  auto prog = std::make_shared<Program>();
  prog->source = std::move(source);
  TemplateParser tp;
  tp.items = lex_template(prog->source);
  std::string ended;
  prog->body = tp.block({}, ended);
  // break/continue outside a loop would escape render(): reject them up front.
  std::function<void(const Body&, int)> check = [&](const Body& b, int loops) {
    for (const auto& n : b) {
      if ((n->k == Node::Break || n->k == Node::Continue) && loops == 0)
        fail("chat template: line {}: break/continue outside a loop", n->line);
      for (const auto& sub : n->bodies) check(sub, loops + (n->k == Node::For ? 1 : 0));
    }
  };
  check(prog->body, 0);
  ChatTemplate t;
  t.prog_ = std::move(prog);
  t.bos_ = std::move(bos_token);
  t.eos_ = std::move(eos_token);
  return t;
}

ChatTemplate ChatTemplate::from_file(const std::filesystem::path& jinja_file, std::string bos_token,
                                     std::string eos_token) {
  try {
    return from_string(read_file(jinja_file), std::move(bos_token), std::move(eos_token));
  } catch (const Error& e) {
    fail("{}: {}", jinja_file.string(), e.what());
  }
}

std::optional<ChatTemplate> ChatTemplate::from_model_dir(const std::filesystem::path& dir) {
  std::string bos, eos, source;
  bool found = false;
  auto cfg_path = dir / "tokenizer_config.json";
  if (std::filesystem::exists(cfg_path)) {
    json cfg;
    try {
      cfg = json::parse(read_file(cfg_path));
    } catch (const json::exception& e) {
      fail("{}: invalid JSON: {}", cfg_path.string(), e.what());
    }
    auto tok_str = [&](const char* key) -> std::string {
      if (!cfg.is_object() || !cfg.contains(key)) return "";
      const json& v = cfg.at(key);
      if (v.is_string()) return v.get<std::string>();
      if (v.is_object() && v.contains("content") && v.at("content").is_string()) return v.at("content").get<std::string>();
      return "";
    };
    bos = tok_str("bos_token");
    eos = tok_str("eos_token");
    if (cfg.is_object() && cfg.contains("chat_template")) {
      const json& ct = cfg.at("chat_template");
      if (ct.is_string()) {
        source = ct.get<std::string>();
        found = true;
      } else if (ct.is_array()) {
        for (const auto& e : ct)
          if (e.is_object() && e.value("name", "") == "default" && e.contains("template") && e.at("template").is_string()) {
            source = e.at("template").get<std::string>();
            found = true;
          }
        if (!found) fail("{}: chat_template list has no \"default\" entry", cfg_path.string());
      }
    }
  }
  auto jinja = dir / "chat_template.jinja";
  if (std::filesystem::exists(jinja)) {
    source = read_file(jinja);
    found = true;
  }
  if (!found) return std::nullopt;
  try {
    return from_string(std::move(source), std::move(bos), std::move(eos));
  } catch (const Error& e) {
    fail("{}: {}", dir.string(), e.what());
  }
}

const std::string& ChatTemplate::source() const { return prog_->source; }

std::string ChatTemplate::render(const std::vector<ChatMessage>& msgs, bool add_generation_prompt) const {
  json m = json::array();
  for (const auto& x : msgs) m.push_back({{"role", x.role}, {"content", x.content}});
  return render_json(m, add_generation_prompt);
}

std::string ChatTemplate::render_json(const json& messages, bool add_generation_prompt, const json& extra) const {
  Interp in;
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
  g["namespace"] = Value::func([](Args& a, Kwargs& kw) {
    Value v = Value::dict();
    v.is_ns = true;
    if (!a.empty() && a[0].t == Value::T::Dict) *v.d = *a[0].d;
    for (auto& [k, x] : kw) v.d->emplace_back(k, x);
    return v;
  });
  g["range"] = Value::func([](Args& a, Kwargs&) {
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
    List l;
    for (int64_t k = start; step > 0 ? k < stop : k > stop; k += step) {
      if (l.size() > 1000000) fail("chat template: range() too long");
      l.push_back(Value::integer(k));
    }
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
  in.exec(prog_->body, out);
  return out;
}

}  // namespace rvec::text
