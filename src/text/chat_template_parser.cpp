#include "text/chat_template_parser.h"

#include <fmt/format.h>

#include <cctype>
#include <functional>

#include "core/error.h"
#include "text/chat_template_lexer.h"

namespace rvec::text::jinja {
namespace {

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
  ExprParser(const std::string& src, int ln) : t(lex_expression(src, ln)), line(ln) {}

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
    NestGuard guard(*this);  // `not not ... x` recurses here, not through primary()
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
    NestGuard guard(*this);  // so does `- - ... x`
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

}  // namespace

Body parse_template(const std::string& src) {
  TemplateParser tp;
  tp.items = lex_template(src);
  std::string ended;
  Body body = tp.block({}, ended);
  // break/continue outside a loop would escape render(): reject them up front.
  std::function<void(const Body&, int)> check = [&](const Body& b, int loops) {
    for (const auto& n : b) {
      if ((n->k == Node::Break || n->k == Node::Continue) && loops == 0)
        fail("chat template: line {}: break/continue outside a loop", n->line);
      for (const auto& sub : n->bodies) check(sub, loops + (n->k == Node::For ? 1 : 0));
    }
  };
  check(body, 0);
  return body;
}

}  // namespace rvec::text::jinja
