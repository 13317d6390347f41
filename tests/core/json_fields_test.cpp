// Optional string/boolean fields of untrusted JSON: absent or null gives the default, a
// value of another type is an rvec::Error naming where and which key (not nlohmann's
// type_error, which escaped the model_config fuzzer as a crash).
#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "core/error.h"
#include "core/json_fields.h"

using nlohmann::json;

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const rvec::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(JsonFields, AbsentAndNullGiveTheDefault) {
  const json j = json::parse(R"({"s":"x","b":false,"n":null})");
  EXPECT_EQ(rvec::json_string_or(j, "s", "d", "f.json"), "x");
  EXPECT_EQ(rvec::json_string_or(j, "missing", "d", "f.json"), "d");
  EXPECT_EQ(rvec::json_string_or(j, "n", "d", "f.json"), "d");
  EXPECT_FALSE(rvec::json_bool_or(j, "b", true, "f.json"));
  EXPECT_TRUE(rvec::json_bool_or(j, "missing", true, "f.json"));
  EXPECT_TRUE(rvec::json_bool_or(j, "n", true, "f.json"));
}

TEST(JsonFields, OtherTypesNameTheFileAndKey) {
  const json j = json::parse(R"({"s":5,"b":"yes","long":[")" + std::string(200, 'x') + "\"]}");
  EXPECT_EQ(error_of([&] { rvec::json_string_or(j, "s", "", "f.json"); }), "f.json: key 's' must be a string, got 5");
  EXPECT_EQ(error_of([&] { rvec::json_bool_or(j, "b", false, "f.json"); }),
            "f.json: key 'b' must be true or false, got \"yes\"");
  // A huge value is quoted cut short.
  std::string m = error_of([&] { rvec::json_string_or(j, "long", "", "f.json"); });
  EXPECT_LT(m.size(), 140u) << m;
  EXPECT_NE(m.find("got [\"xxxx"), std::string::npos) << m;
  EXPECT_NE(m.find("..."), std::string::npos) << m;
  EXPECT_EQ(error_of([&] { rvec::json_string_or(json::array(), "s", "", "f.json"); }),
            "f.json must be a JSON object, got []");
}
