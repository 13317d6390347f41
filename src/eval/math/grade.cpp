#include "eval/math/grade.h"

#include "core/error.h"
#include "eval/math/hendrycks.h"
#include "eval/math/math_verify.h"
#include "eval/math/minerva.h"
#include "eval/math/pystr.h"
#include "eval/math/qwen_equal.h"
#include "eval/math/qwen_extract.h"
#include "eval/math/symbolic.h"

namespace rvec::eval::math {

Scheme parse_scheme(const std::string& n) {
  if (n == "qwen") return Scheme::Qwen;
  if (n == "math_verify") return Scheme::MathVerify;
  if (n == "minerva") return Scheme::Minerva;
  if (n == "hendrycks") return Scheme::Hendrycks;
  fail("unknown grading scheme '{}' (qwen, math_verify, minerva, hendrycks)", n);
}

const char* scheme_name(Scheme s) {
  switch (s) {
    case Scheme::Qwen: return "qwen";
    case Scheme::MathVerify: return "math_verify";
    case Scheme::Minerva: return "minerva";
    case Scheme::Hendrycks: return "hendrycks";
  }
  return "?";
}

nlohmann::json GradeResult::to_json() const {
  nlohmann::json j = {{"correct", correct}, {"extracted", extracted}, {"gold_normalized", gold_normalized}, {"rule", rule}};
  if (limit) j["limit"] = true;
  return j;
}

namespace {
std::string mv_gold_text(const std::string& gold) {
  return contains(gold, "\\boxed") || contains(gold, "$") ? gold : "\\boxed{" + gold + "}";
}
}  // namespace

GradeResult grade(Scheme scheme, const std::string& gold, const std::string& output, const std::string& data_name) {
  GradeResult r;
  switch (scheme) {
    case Scheme::Qwen: {
      r.gold_normalized = qwen_gold_from_answer(gold, data_name);
      if (output.empty() || output == "error") {
        r.rule = "empty_generation";
        return r;
      }
      std::string how;
      r.extracted = qwen_extract_answer(output, data_name, &how);
      Verdict v = qwen_math_equal(r.extracted, r.gold_normalized);
      r.correct = v.correct;
      r.limit = v.limit;
      r.rule = how + "/" + v.rule;
      return r;
    }
    case Scheme::MathVerify: {
      MvParsed g = mv_parse(mv_gold_text(gold)), p = mv_parse(output);
      r.gold_normalized = g.source;
      r.extracted = p.source;
      r.correct = mv_verify(g, p);
      r.limit = !r.correct && (g.limit || p.limit);
      r.rule = !p.value && p.source.empty() ? "no_answer_found" : r.correct ? "equal" : r.limit ? "limit" : "not_equal";
      return r;
    }
    case Scheme::Minerva: {
      std::string raw = minerva_unnormalized_answer(output);
      r.extracted = minerva_normalize_final_answer(raw);
      r.gold_normalized = minerva_normalize_final_answer(gold);
      if (raw == kMinervaInvalid) {
        r.rule = "no_final_answer_sentence";
      }
      SymbolicVerdict v = minerva_is_equiv(r.extracted, r.gold_normalized);
      r.correct = v.equal;
      r.limit = v.limit;
      if (r.rule.empty()) r.rule = v.how;
      return r;
    }
    case Scheme::Hendrycks: {
      r.extracted = hendrycks_extract(output);
      auto g = hendrycks_strip_string(gold);
      r.gold_normalized = g ? *g : gold;
      r.correct = hendrycks_is_equiv(r.extracted, gold);
      r.rule = r.correct ? "strip_string_equal" : "not_equal";
      return r;
    }
  }
  return r;
}

bool same_answer(Scheme scheme, const std::string& a, const std::string& b) {
  if (a.empty() || b.empty() || a == kMinervaInvalid || b == kMinervaInvalid) return false;
  switch (scheme) {
    case Scheme::Qwen: return qwen_math_equal(a, b).correct;
    case Scheme::MathVerify: {
      MvParsed x = mv_parse("$" + a + "$"), y = mv_parse("$" + b + "$");
      return mv_verify(x, y);
    }
    case Scheme::Minerva: return minerva_is_equiv(a, b).equal;
    case Scheme::Hendrycks: return hendrycks_is_equiv(a, b);
  }
  return false;
}

}  // namespace rvec::eval::math
