// --gen-kwargs as lm-eval parses and applies it (utils.simple_parse_args_string / handle_arg_string, then
// task.set_config(generation_kwargs, update=True)): values hand-derived from those rules.
#include "eval/gen_kwargs.h"

#include <gtest/gtest.h>

#include "core/error.h"
#include "eval/runner.h"
#include "scripted_model.h"

using namespace rvec::eval;

TEST(GenKwargs, ParsedAsLmEvalDoes) {
  EvalOptions o;
  apply_gen_kwargs("temperature=0.6,top_p=0.95,,top_k=20,max_gen_toks=512,min_p=0.05", o);
  EXPECT_DOUBLE_EQ(o.min_p, 0.05);
  EXPECT_DOUBLE_EQ(o.temperature, 0.6);
  EXPECT_DOUBLE_EQ(o.top_p, 0.95);
  EXPECT_EQ(o.top_k, 20);
  EXPECT_EQ(o.max_gen_tokens, 512);
  EXPECT_FALSE(o.until.has_value());

  EvalOptions g;  // do_sample=False wins over a temperature (greedy), in any case spelling
  apply_gen_kwargs("temperature=0.7,do_sample=FALSE", g);
  EXPECT_EQ(g.temperature, 0);
  EvalOptions s;  // do_sample=True alone samples at transformers' default temperature
  apply_gen_kwargs("do_sample=True", s);
  EXPECT_EQ(s.temperature, 1.0);
  EvalOptions u;  // a string `until` becomes a one-element list, '=' after the first kept in the value
  apply_gen_kwargs("until=Q:=", u);
  ASSERT_TRUE(u.until.has_value());
  EXPECT_EQ(*u.until, std::vector<std::string>{"Q:="});
  EvalOptions n;  // an integer temperature is a number too
  apply_gen_kwargs("temperature=1", n);
  EXPECT_EQ(n.temperature, 1.0);
}

TEST(GenKwargs, BadInputNamesTheKey) {
  auto msg = [](const std::string& spec) {
    EvalOptions o;
    try {
      apply_gen_kwargs(spec, o);
    } catch (const rvec::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(msg("repetition_penalty=1.1").find("unknown key 'repetition_penalty'"), std::string::npos);
  EXPECT_NE(msg("temperature=hot").find("temperature"), std::string::npos);
  EXPECT_NE(msg("temperature=-1").find("temperature"), std::string::npos);
  EXPECT_NE(msg("top_p=0").find("top_p"), std::string::npos);
  EXPECT_NE(msg("top_k=1.5").find("top_k"), std::string::npos);
  EXPECT_NE(msg("min_p=1.5").find("min_p"), std::string::npos);
  EXPECT_NE(msg("min_p=-0.1").find("min_p"), std::string::npos);
  EXPECT_NE(msg("max_gen_toks=0").find("max_gen_toks"), std::string::npos);
  EXPECT_NE(msg("do_sample=maybe").find("do_sample"), std::string::npos);
  EXPECT_NE(msg("temperature").find("not key=value"), std::string::npos);
}

// The overrides reach the model's requests and the recorded task config.
TEST(GenKwargs, ReachTheRequests) {
  rvec::eval::testing::ScriptedModel m;
  EvalOptions o;
  o.shipped_data_dir = RVEC_DATA_DIR;
  o.quiet = true;
  o.limit = 2;
  apply_gen_kwargs("until=STOP,max_gen_toks=7", o);
  TaskResult r = evaluate_task(m, "gsm8k", o);
  ASSERT_EQ(m.last_gen.size(), 2u);
  for (const auto& req : m.last_gen) {
    EXPECT_EQ(req.until, std::vector<std::string>{"STOP"});
    EXPECT_EQ(req.max_new_tokens, 7);
  }
  EXPECT_EQ(r.config["generation_kwargs"]["until"], nlohmann::json::array({"STOP"}));
  EXPECT_EQ(r.config["generation_kwargs"]["max_gen_toks"], 7);
}
