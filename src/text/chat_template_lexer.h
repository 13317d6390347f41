// Chat templates, lexing: the template source cut into text / {{ expression }} /
// {% statement %} items (comments dropped, whitespace control and trim_blocks/
// lstrip_blocks applied), and an expression's text cut into tokens.
#pragma once
#include <string>
#include <vector>

namespace rvec::text::jinja {

struct Tok {
  enum K { Name, Str, Int, Float, Op, End } k;
  std::string v;
};

// The tokens of one expression (ending with an End token); `line` is for errors.
std::vector<Tok> lex_expression(const std::string& src, int line);

struct Item {
  enum K { Text, Expr, Stmt } k;
  std::string s;
  int line;
};


std::vector<Item> lex_template(const std::string& src);

}  // namespace rvec::text::jinja
