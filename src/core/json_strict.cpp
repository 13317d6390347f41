#include "core/json_strict.h"

#include <vector>

#include "core/error.h"

namespace rvec {
namespace {

using json = nlohmann::json;

// Builds the DOM like nlohmann's json_sax_dom_parser, but reports duplicate keys.
class StrictBuilder : public nlohmann::json_sax<json> {
 public:
  explicit StrictBuilder(json& root) : root_(root) {}

  bool null() override { return put(json(nullptr)) != nullptr; }
  bool boolean(bool v) override { return put(json(v)) != nullptr; }
  bool number_integer(number_integer_t v) override { return put(json(v)) != nullptr; }
  bool number_unsigned(number_unsigned_t v) override { return put(json(v)) != nullptr; }
  bool number_float(number_float_t v, const string_t&) override { return put(json(v)) != nullptr; }
  bool string(string_t& v) override { return put(json(std::move(v))) != nullptr; }
  bool binary(binary_t& v) override { return put(json::binary(std::move(v))) != nullptr; }
  bool start_object(std::size_t) override {
    json* v = put(json::object());
    stack_.push_back(v);
    return true;
  }
  bool key(string_t& k) override {
    auto& obj = stack_.back()->get_ref<json::object_t&>();
    auto [it, inserted] = obj.emplace(k, nullptr);
    if (!inserted) {
      duplicate_ = k;
      return false;  // stops the parse
    }
    slot_ = &it->second;
    return true;
  }
  bool end_object() override {
    stack_.pop_back();
    return true;
  }
  bool start_array(std::size_t) override {
    stack_.push_back(put(json::array()));
    return true;
  }
  bool end_array() override {
    stack_.pop_back();
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& ex) override {
    error_ = ex.what();
    return false;
  }

  const std::string& duplicate() const { return duplicate_; }
  const std::string& error() const { return error_; }
  // Where the duplicate was found: depth 1 is the top-level object.
  size_t depth() const { return stack_.size(); }

 private:
  // Places a value where the parse currently is and returns its address (stable until
  // the parent container grows, which only happens after this value's subtree ends).
  json* put(json v) {
    if (stack_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    json* parent = stack_.back();
    if (parent->is_array()) {
      auto& arr = parent->get_ref<json::array_t&>();
      arr.push_back(std::move(v));
      return &arr.back();
    }
    *slot_ = std::move(v);
    return slot_;
  }

  json& root_;
  std::vector<json*> stack_;
  json* slot_ = nullptr;
  std::string duplicate_, error_;
};

}  // namespace

nlohmann::json parse_json_strict(std::string_view text, const std::string& what) {
  json root;
  StrictBuilder b(root);
  bool ok = json::sax_parse(text.begin(), text.end(), &b, nlohmann::detail::input_format_t::json, true);
  if (!b.duplicate().empty())
    throw DuplicateKeyError(
        fmt::format("{}: duplicate key \"{}\" in {}", what, b.duplicate(),
                    b.depth() <= 1 ? std::string("the top-level object") : fmt::format("an object at depth {}", b.depth())),
        b.duplicate(), b.depth());
  if (!ok) fail("{}: not valid JSON: {}", what, b.error());
  return root;
}

}  // namespace rvec
