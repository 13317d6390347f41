// A minimal XML 1.0 well-formedness checker for the tests (elements, attributes,
// character/entity references, comments, the XML declaration). Parses into a tiny DOM
// so tests can count elements; throws std::runtime_error with an offset on any error.
#pragma once
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace xmlcheck {

struct Node {
  std::string name;
  std::map<std::string, std::string> attrs;
  std::vector<std::unique_ptr<Node>> children;
  std::string text;
};

class Parser {
 public:
  explicit Parser(const std::string& s) : s_(s) {}
  std::unique_ptr<Node> parse() {
    if (s_.compare(0, 5, "<?xml") == 0) {
      size_t e = s_.find("?>");
      if (e == std::string::npos) err("unterminated XML declaration");
      i_ = e + 2;
    }
    skip_misc();
    auto root = element();
    skip_misc();
    if (i_ != s_.size()) err("content after the root element");
    return root;
  }

 private:
  [[noreturn]] void err(const std::string& m) { throw std::runtime_error(m + " at offset " + std::to_string(i_)); }
  static bool name_start(char c) { return std::isalpha((unsigned char)c) || c == '_' || c == ':'; }
  static bool name_char(char c) { return name_start(c) || std::isdigit((unsigned char)c) || c == '-' || c == '.'; }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\t' || s_[i_] == '\r')) ++i_;
  }
  void skip_misc() {
    for (;;) {
      ws();
      if (s_.compare(i_, 4, "<!--") == 0) {
        size_t e = s_.find("-->", i_ + 4);
        if (e == std::string::npos) err("unterminated comment");
        i_ = e + 3;
      } else {
        return;
      }
    }
  }
  std::string name() {
    if (i_ >= s_.size() || !name_start(s_[i_])) err("expected a name");
    size_t b = i_;
    while (i_ < s_.size() && name_char(s_[i_])) ++i_;
    return s_.substr(b, i_ - b);
  }
  std::string chars(char stop) {  // text or attribute value up to `stop`, references resolved
    std::string out;
    while (i_ < s_.size() && s_[i_] != stop) {
      char c = s_[i_];
      if (c == '<' ) {
        if (stop == '<') break;
        err("'<' in attribute value");
      }
      if ((unsigned char)c < 0x20 && c != '\t' && c != '\n' && c != '\r') err("control character");
      if (c == '&') {
        size_t e = s_.find(';', i_);
        if (e == std::string::npos) err("unterminated reference");
        std::string ref = s_.substr(i_ + 1, e - i_ - 1);
        static const std::map<std::string, std::string> ents{
            {"amp", "&"}, {"lt", "<"}, {"gt", ">"}, {"quot", "\""}, {"apos", "'"}};
        if (auto it = ents.find(ref); it != ents.end()) out += it->second;
        else if (ref.size() > 1 && ref[0] == '#') out += '?';
        else err("unknown entity &" + ref + ";");
        i_ = e + 1;
        continue;
      }
      out += c;
      ++i_;
    }
    return out;
  }
  std::unique_ptr<Node> element() {
    if (i_ >= s_.size() || s_[i_] != '<') err("expected '<'");
    ++i_;
    auto n = std::make_unique<Node>();
    n->name = name();
    for (;;) {
      size_t before = i_;
      ws();
      if (i_ >= s_.size()) err("unterminated start tag");
      if (s_[i_] == '/') {
        if (s_.compare(i_, 2, "/>") != 0) err("bad empty-element tag");
        i_ += 2;
        return n;
      }
      if (s_[i_] == '>') {
        ++i_;
        break;
      }
      if (i_ == before) err("attributes must be separated by whitespace");
      std::string a = name();
      ws();
      if (i_ >= s_.size() || s_[i_] != '=') err("expected '=' after attribute " + a);
      ++i_;
      ws();
      if (i_ >= s_.size() || (s_[i_] != '"' && s_[i_] != '\'')) err("unquoted attribute " + a);
      char q = s_[i_++];
      std::string v = chars(q);
      if (i_ >= s_.size()) err("unterminated attribute " + a);
      ++i_;
      if (!n->attrs.emplace(a, v).second) err("duplicate attribute " + a);
    }
    for (;;) {
      n->text += chars('<');
      if (i_ >= s_.size()) err("unterminated element " + n->name);
      if (s_.compare(i_, 4, "<!--") == 0) {
        size_t e = s_.find("-->", i_ + 4);
        if (e == std::string::npos) err("unterminated comment");
        i_ = e + 3;
        continue;
      }
      if (s_.compare(i_, 2, "</") == 0) {
        i_ += 2;
        std::string c = name();
        if (c != n->name) err("end tag </" + c + "> does not match <" + n->name + ">");
        ws();
        if (i_ >= s_.size() || s_[i_] != '>') err("bad end tag");
        ++i_;
        return n;
      }
      n->children.push_back(element());
    }
  }
  const std::string& s_;
  size_t i_ = 0;
};

inline std::unique_ptr<Node> parse(const std::string& s) { return Parser(s).parse(); }

template <typename F>
void visit(const Node& n, F&& f) {
  f(n);
  for (const auto& c : n.children) visit(*c, f);
}

}  // namespace xmlcheck
