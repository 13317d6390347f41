// Chat templates, parsing: the syntax tree of a template (expressions and statement
// nodes) built from the lexer's items; syntax errors name the template line.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "text/chat_template_value.h"

namespace rvec::text::jinja {

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

// Parses a whole template; also rejects break/continue outside a loop.
Body parse_template(const std::string& src);

}  // namespace rvec::text::jinja
