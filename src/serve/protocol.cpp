#include "serve/protocol.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "core/error.h"

namespace rvec::serve {

using nlohmann::json;

namespace {
std::string default_type(int status) {
  switch (status) {
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 413: return "request_too_large";
    case 429: return "rate_limit_exceeded";
    case 503: return "service_unavailable";
    default: return status >= 500 ? "internal_server_error" : "invalid_request_error";
  }
}
}  // namespace

ApiError::ApiError(int s, std::string message, std::string p, std::string t)
    : std::runtime_error(std::move(message)), status(s), type(t.empty() ? default_type(s) : t), param(std::move(p)) {}

json ApiError::body() const { return error_json(status, what(), type, param); }

json error_json(int status, const std::string& message, const std::string& type, const std::string& param) {
  return {{"error",
           {{"message", message},
            {"type", type.empty() ? default_type(status) : type},
            {"param", param.empty() ? json(nullptr) : json(param)},
            {"code", status}}}};
}

// ------------------------------------------------------------------ field accessors
namespace {

[[noreturn]] void bad(const std::string& param, const std::string& msg) { throw ApiError(400, msg, param); }

const json* field(const json& b, const char* key) {
  auto it = b.find(key);
  return it == b.end() || it->is_null() ? nullptr : &*it;
}

std::optional<bool> get_bool(const json& b, const char* key) {
  const json* v = field(b, key);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) bad(key, fmt::format("'{}' must be a boolean", key));
  return v->get<bool>();
}

std::optional<double> get_number(const json& b, const char* key, double lo, double hi) {
  const json* v = field(b, key);
  if (!v) return std::nullopt;
  if (!v->is_number()) bad(key, fmt::format("'{}' must be a number", key));
  double d = v->get<double>();
  if (!std::isfinite(d) || d < lo || d > hi) bad(key, fmt::format("'{}' must be in [{}, {}], got {}", key, lo, hi, d));
  return d;
}

std::optional<int64_t> get_int(const json& b, const char* key, int64_t lo, int64_t hi) {
  const json* v = field(b, key);
  if (!v) return std::nullopt;
  if (!v->is_number_integer()) bad(key, fmt::format("'{}' must be an integer", key));
  // nlohmann stores non-negative literals as unsigned: compare in the matching type.
  const bool out = v->is_number_unsigned()
                       ? (v->get<uint64_t>() > uint64_t(hi) || (lo > 0 && v->get<uint64_t>() < uint64_t(lo)))
                       : (v->get<int64_t>() < lo || v->get<int64_t>() > hi);
  if (out)
    bad(key, fmt::format("'{}' must be in [{}, {}], got {}", key, lo, hi, v->dump()));
  return v->get<int64_t>();
}

void check_model(const json& b, const ModelInfo& m) {
  const json* v = field(b, "model");
  if (!v) return;
  if (!v->is_string()) bad("model", "'model' must be a string");
  if (v->get<std::string>() != m.name)
    throw ApiError(404, fmt::format("The model `{}` does not exist.", v->get<std::string>()), "model",
                   "NotFoundError");
}

std::vector<int32_t> id_list(const json& a, const ModelInfo& m, const char* param) {
  std::vector<int32_t> ids;
  ids.reserve(a.size());
  for (const auto& e : a) {
    if (!e.is_number_integer()) bad(param, fmt::format("'{}' token ids must be integers", param));
    if (e.is_number_unsigned() ? e.get<uint64_t>() >= uint64_t(m.vocab_size)
                               : (e.get<int64_t>() < 0 || e.get<int64_t>() >= m.vocab_size))
      bad(param, fmt::format("token id {} is out of vocabulary (size {})", e.dump(), m.vocab_size));
    ids.push_back(e.get<int32_t>());
  }
  return ids;
}

std::vector<int32_t> encode_prompt(const std::string& s, const ModelInfo& m, bool add_special) {
  auto ids = m.tokenizer->encode(s, true);
  // HF's tokenizer(prompt) adds the BOS of Llama/Mistral tokenizers (add_bos_token).
  if (add_special && m.tokenizer->add_bos() && m.tokenizer->bos_id()) ids.insert(ids.begin(), *m.tokenizer->bos_id());
  return ids;
}

std::vector<std::string> get_stop(const json& b, const Limits& lim) {
  const json* v = field(b, "stop");
  std::vector<std::string> out;
  if (!v) return out;
  auto add = [&](const json& s) {
    if (!s.is_string()) bad("stop", "'stop' must be a string or a list of strings");
    if (s.get_ref<const std::string&>().size() > lim.max_stop_len)
      bad("stop", fmt::format("stop strings are limited to {} bytes", lim.max_stop_len));
    if (!s.get_ref<const std::string&>().empty()) out.push_back(s.get<std::string>());
  };
  if (v->is_array()) {
    if (v->size() > lim.max_stop) bad("stop", fmt::format("at most {} stop strings", lim.max_stop));
    for (const auto& s : *v) add(s);
  } else {
    add(*v);
  }
  return out;
}

void reject_unsupported(const json& b) {
  for (const char* k : {"presence_penalty", "frequency_penalty"})
    if (const json* v = field(b, k); v && !(v->is_number() && v->get<double>() == 0))
      bad(k, fmt::format("'{}' is not supported (only 0)", k));
  if (const json* v = field(b, "repetition_penalty"); v && !(v->is_number() && v->get<double>() == 1))
    bad("repetition_penalty", "'repetition_penalty' is not supported (only 1)");
  if (const json* v = field(b, "logit_bias"); v && !(v->is_object() && v->empty()))
    bad("logit_bias", "'logit_bias' is not supported");
  if (const json* v = field(b, "suffix"); v && !(v->is_string() && v->get<std::string>().empty()))
    bad("suffix", "'suffix' is not supported");
}

// The sampling and length fields common to both endpoints; fills `seqs` (one per prompt x n).
void fill_common(const json& b, const ModelInfo& m, const Limits& lim, CompletionRequest& r,
                 const std::vector<std::vector<int32_t>>& prompts, const std::vector<std::string>& texts,
                 std::optional<int64_t> max_tokens, int64_t default_max_tokens, std::vector<int32_t> stop_tokens) {
  reject_unsupported(b);
  infer::SamplingParams sp;
  sp.temperature = float(get_number(b, "temperature", 0, 100).value_or(1.0));
  sp.top_p = float(get_number(b, "top_p", 0, 1).value_or(1.0));
  if (sp.top_p <= 0) bad("top_p", "'top_p' must be in (0, 1]");
  int64_t top_k = get_int(b, "top_k", -1, std::numeric_limits<int32_t>::max()).value_or(0);
  sp.top_k = top_k < 0 ? 0 : int(top_k);
  sp.min_p = float(get_number(b, "min_p", 0, 1).value_or(0.0));
  const int64_t n = get_int(b, "n", 1, lim.max_n).value_or(1);
  if (const json* v = field(b, "best_of"); v && !(v->is_number_integer() && v->get<int64_t>() == n))
    bad("best_of", "'best_of' is not supported (only equal to n)");
  if (prompts.size() * size_t(n) > lim.max_sequences)
    bad("n", fmt::format("{} prompts x n = {} exceeds the limit of {} sequences per request", prompts.size(), n,
                         lim.max_sequences));
  uint64_t seed;
  if (const json* v = field(b, "seed")) {
    if (!v->is_number_integer()) bad("seed", "'seed' must be an integer");
    seed = v->is_number_unsigned() ? v->get<uint64_t>() : uint64_t(v->get<int64_t>());
  } else {
    seed = (uint64_t(std::random_device{}()) << 32) ^ std::random_device{}();
  }
  auto stop = get_stop(b, lim);
  r.stream = get_bool(b, "stream").value_or(false);
  if (const json* so = field(b, "stream_options")) {
    if (!so->is_object()) bad("stream_options", "'stream_options' must be an object");
    r.include_usage = get_bool(*so, "include_usage").value_or(false);
  }
  for (size_t i = 0; i < prompts.size(); ++i) {
    const auto& p = prompts[i];
    if (p.empty()) bad(r.chat ? "messages" : "prompt", "the prompt is empty");
    if (p.size() >= m.max_model_len)
      bad(r.chat ? "messages" : "prompt",
          fmt::format("This model's maximum context length is {} tokens. However, your prompt has {} tokens.",
                      m.max_model_len, p.size()));
    const int64_t room = int64_t(m.max_model_len - p.size());
    const int64_t mt = max_tokens.value_or(std::min(default_max_tokens, room));
    if (mt > room)
      bad(r.chat ? "max_completion_tokens" : "max_tokens",
          fmt::format("This model's maximum context length is {} tokens. However, you requested {} tokens ({} in "
                      "the prompt, {} in the completion). Please reduce the length of the prompt or completion.",
                      m.max_model_len, int64_t(p.size()) + mt, p.size(), mt));
    if (m.kv_cache_bytes > 0 && double(p.size() + size_t(mt)) * double(m.kv_bytes_per_token) > double(m.kv_cache_bytes))
      bad(r.chat ? "max_completion_tokens" : "max_tokens",
          fmt::format("The prompt ({} tokens) and the completion ({} tokens) need {:.3f} GiB of KV cache, more than "
                      "the server's KV cache cap of {:.3f} GiB (--kv-cache-gb).",
                      p.size(), mt, double(p.size() + size_t(mt)) * double(m.kv_bytes_per_token) / double(1 << 30),
                      double(m.kv_cache_bytes) / double(1 << 30)));
    for (int64_t j = 0; j < n; ++j) {
      SeqSpec s;
      s.gen.prompt = p;
      s.gen.max_new_tokens = int(mt);
      s.gen.sampling = sp;
      s.gen.sampling.seed = seed + uint64_t(j);  // distinct samples per choice, reproducible per seed
      s.gen.stop_strings = stop;
      s.gen.stop_tokens = stop_tokens;
      s.prompt_text = texts[i];
      s.choice_index = i * size_t(n) + size_t(j);
      s.sample_index = size_t(j);
      r.seqs.push_back(std::move(s));
    }
  }
}

}  // namespace

CompletionRequest parse_completion(const json& b, const ModelInfo& m, const Limits& lim) {
  if (!b.is_object()) bad("", "the request body must be a JSON object");
  check_model(b, m);
  CompletionRequest r;
  const json* p = field(b, "prompt");
  if (!p) bad("prompt", "'prompt' is required");
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::string> texts;
  auto add_text = [&](const std::string& s) {
    prompts.push_back(encode_prompt(s, m, true));
    texts.push_back(s);
  };
  auto add_ids = [&](const json& a) {
    prompts.push_back(id_list(a, m, "prompt"));
    texts.push_back(m.tokenizer->decode(prompts.back()));
  };
  if (p->is_string()) {
    add_text(p->get<std::string>());
  } else if (p->is_array() && !p->empty()) {
    if (p->size() > lim.max_sequences) bad("prompt", fmt::format("at most {} prompts per request", lim.max_sequences));
    const auto& first = (*p)[0];
    if (first.is_number()) {
      add_ids(*p);
    } else {
      for (const auto& e : *p) {
        if (e.is_string() && first.is_string()) add_text(e.get<std::string>());
        else if (e.is_array() && first.is_array()) add_ids(e);
        else bad("prompt", "'prompt' must be a string, a list of strings, a list of token ids or a list of lists");
      }
    }
  } else {
    bad("prompt", "'prompt' must be a string, a list of strings, a list of token ids or a list of lists");
  }
  r.echo = get_bool(b, "echo").value_or(false);
  if (const json* v = field(b, "logprobs")) {
    if (!v->is_number_integer()) bad("logprobs", "'logprobs' must be an integer (the number of top alternatives)");
    r.logprobs = int(get_int(b, "logprobs", 0, lim.max_logprobs).value());
  }
  const auto max_tokens = get_int(b, "max_tokens", 0, std::numeric_limits<int64_t>::max());
  fill_common(b, m, lim, r, prompts, texts, max_tokens, 16, {});
  return r;
}

CompletionRequest parse_chat(const json& b, const ModelInfo& m, const Limits& lim) {
  if (!b.is_object()) bad("", "the request body must be a JSON object");
  check_model(b, m);
  CompletionRequest r;
  r.chat = true;
  const json* ms = field(b, "messages");
  if (!ms || !ms->is_array() || ms->empty()) bad("messages", "'messages' must be a non-empty list");
  std::vector<text::ChatMessage> msgs;
  for (const auto& e : *ms) {
    if (!e.is_object()) bad("messages", "each message must be an object");
    const json* role = field(e, "role");
    if (!role || !role->is_string()) bad("messages", "each message needs a string 'role'");
    static const std::vector<std::string> roles{"system", "developer", "user", "assistant", "tool"};
    if (std::find(roles.begin(), roles.end(), role->get<std::string>()) == roles.end())
      bad("messages", fmt::format("unknown role '{}'", role->get<std::string>()));
    std::string content;
    if (const json* c = field(e, "content")) {
      if (c->is_string()) {
        content = c->get<std::string>();
      } else if (c->is_array()) {  // content parts: only text
        for (const auto& part : *c) {
          if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
              !part["text"].is_string())
            bad("messages", "content parts must be {\"type\": \"text\", \"text\": string}");
          content += part["text"].get<std::string>();
        }
      } else {
        bad("messages", "'content' must be a string or a list of text parts");
      }
    }
    msgs.push_back({role->get<std::string>(), std::move(content)});
  }
  if (!m.chat_template)
    bad("messages", "the model has no chat template; start the server with --chat-template FILE");
  const bool add_gen = get_bool(b, "add_generation_prompt").value_or(true);
  // vLLM's chat_template_kwargs: extra template variables (e.g. {"enable_thinking": false}).
  nlohmann::ordered_json tpl_kwargs = nlohmann::ordered_json::object();
  if (const json* k = field(b, "chat_template_kwargs")) {
    if (!k->is_object()) bad("chat_template_kwargs", "'chat_template_kwargs' must be an object");
    tpl_kwargs = nlohmann::ordered_json::parse(k->dump());
  }
  std::string rendered;
  try {
    rendered = m.chat_template->render(msgs, add_gen, tpl_kwargs);
  } catch (const std::exception& e) {
    bad("messages", fmt::format("chat template: {}", e.what()));
  }
  // The rendered template carries its own BOS text; no BOS is added (apply_chat_template).
  std::vector<std::vector<int32_t>> prompts{encode_prompt(rendered, m, false)};
  const bool lp = get_bool(b, "logprobs").value_or(false);
  const auto top = get_int(b, "top_logprobs", 0, lim.max_logprobs);
  if (top && !lp) bad("top_logprobs", "'top_logprobs' needs 'logprobs': true");
  if (lp) r.logprobs = int(top.value_or(0));
  auto max_tokens = get_int(b, "max_completion_tokens", 0, std::numeric_limits<int64_t>::max());
  if (!max_tokens) max_tokens = get_int(b, "max_tokens", 0, std::numeric_limits<int64_t>::max());
  std::vector<int32_t> stop_tokens;
  if (auto e = m.tokenizer->eos_id()) stop_tokens.push_back(*e);  // the end-of-turn token
  fill_common(b, m, lim, r, prompts, {rendered}, max_tokens, std::numeric_limits<int64_t>::max(), stop_tokens);
  return r;
}

std::vector<int32_t> parse_tokenize(const json& b, const ModelInfo& m) {
  if (!b.is_object()) bad("", "the request body must be a JSON object");
  check_model(b, m);
  const bool special = get_bool(b, "add_special_tokens").value_or(true);
  if (const json* p = field(b, "prompt")) {
    if (!p->is_string()) bad("prompt", "'prompt' must be a string");
    return encode_prompt(p->get<std::string>(), m, special);
  }
  if (field(b, "messages")) {
    json c = b;
    c.erase("model");
    return parse_chat(c, m, Limits{}).seqs.at(0).gen.prompt;
  }
  bad("prompt", "'prompt' (or 'messages') is required");
}

std::vector<int32_t> parse_detokenize(const json& b, const ModelInfo& m) {
  if (!b.is_object()) bad("", "the request body must be a JSON object");
  check_model(b, m);
  const json* t = field(b, "tokens");
  if (!t || !t->is_array()) bad("tokens", "'tokens' must be a list of token ids");
  return id_list(*t, m, "tokens");
}

// ------------------------------------------------------------------ responses
TokenLogprob token_logprob(const float* lg, int64_t V, int32_t token, int k) {
  infer::LogSoftmax ls(lg, V);
  TokenLogprob r{token, ls(token), {}};
  if (k > 0) {
    // Ties go to the lower id, as argmax (greedy sampling) does: a greedy token is top-1.
    std::vector<int32_t> idx(static_cast<size_t>(V));
    std::iota(idx.begin(), idx.end(), 0);
    const size_t kk = std::min<size_t>(size_t(k), size_t(V));
    std::partial_sort(idx.begin(), idx.begin() + kk, idx.end(),
                      [&](int32_t a, int32_t b) { return lg[a] > lg[b] || (lg[a] == lg[b] && a < b); });
    for (size_t i = 0; i < kk; ++i) r.top.emplace_back(idx[i], ls(idx[i]));
  }
  return r;
}

std::string finish_reason(const infer::GenerationResult& r) { return r.finish_reason == "length" ? "length" : "stop"; }

namespace {

std::string tok_str(const text::Tokenizer& tok, int32_t id) { return tok.decode(std::span<const int32_t>(&id, 1)); }

// The completions API's top_logprobs entry: the top k plus the token itself (as vLLM).
json top_dict(const TokenLogprob& t, const text::Tokenizer& tok) {
  json d = json::object();
  auto put = [&](int32_t id, double lp) {
    std::string s = tok_str(tok, id);
    if (!d.contains(s) || d[s].get<double>() < lp) d[s] = lp;
  };
  for (const auto& [id, lp] : t.top) put(id, lp);
  put(t.token, t.logprob);
  return d;
}

json completion_logprobs(const std::vector<const TokenLogprob*>& lps, bool leading_null, int32_t first_token,
                         size_t offset0, const text::Tokenizer& tok) {
  json tokens = json::array(), tlp = json::array(), top = json::array(), off = json::array();
  size_t o = offset0;
  auto add = [&](int32_t id, const TokenLogprob* t) {
    std::string s = tok_str(tok, id);
    tokens.push_back(s);
    tlp.push_back(t ? json(t->logprob) : json(nullptr));
    top.push_back(t ? top_dict(*t, tok) : json(nullptr));
    off.push_back(o);
    o += s.size();
  };
  if (leading_null) add(first_token, nullptr);
  for (const auto* t : lps) add(t->token, t);
  return {{"tokens", tokens}, {"token_logprobs", tlp}, {"top_logprobs", top}, {"text_offset", off}};
}

json bytes_of(const std::string& s) {
  json b = json::array();
  for (unsigned char c : s) b.push_back(int(c));
  return b;
}

json chat_logprobs(const std::vector<TokenLogprob>& lps, size_t from, size_t to, const text::Tokenizer& tok) {
  json content = json::array();
  for (size_t i = from; i < to; ++i) {
    const auto& t = lps[i];
    json top = json::array();
    for (const auto& [id, lp] : t.top) {
      std::string s = tok_str(tok, id);
      top.push_back({{"token", s}, {"logprob", lp}, {"bytes", bytes_of(tok.token_bytes(id))}});
    }
    content.push_back({{"token", tok_str(tok, t.token)},
                       {"logprob", t.logprob},
                       {"bytes", bytes_of(tok.token_bytes(t.token))},
                       {"top_logprobs", top}});
  }
  return {{"content", content}};
}

}  // namespace

json usage_json(const CompletionRequest& req, const std::vector<SeqOutput>& outs) {
  size_t prompt = 0, gen = 0;
  for (size_t i = 0; i < req.seqs.size(); ++i) {
    if (req.seqs[i].sample_index == 0) prompt += req.seqs[i].gen.prompt.size();  // once per prompt, not per sample
    gen += outs[i].result.tokens.size();
  }
  return {{"prompt_tokens", prompt}, {"completion_tokens", gen}, {"total_tokens", prompt + gen}};
}

json completion_response(const CompletionRequest& req, const std::vector<SeqOutput>& outs, const ResponseMeta& meta,
                         const text::Tokenizer& tok) {
  json choices = json::array();
  for (size_t i = 0; i < req.seqs.size(); ++i) {
    const auto& s = req.seqs[i];
    const auto& o = outs[i];
    json c;
    c["index"] = s.choice_index;
    c["finish_reason"] = finish_reason(o.result);
    if (req.chat) {
      c["message"] = {{"role", "assistant"}, {"content", o.result.text}};
      c["logprobs"] = req.logprobs >= 0 ? chat_logprobs(o.logprobs, 0, o.logprobs.size(), tok) : json(nullptr);
    } else {
      c["text"] = req.echo ? s.prompt_text + o.result.text : o.result.text;
      if (req.logprobs < 0) {
        c["logprobs"] = nullptr;
      } else {
        std::vector<const TokenLogprob*> lps;
        if (req.echo)
          for (const auto& t : o.prompt_logprobs) lps.push_back(&t);
        for (const auto& t : o.logprobs) lps.push_back(&t);
        c["logprobs"] = completion_logprobs(lps, req.echo, s.gen.prompt.at(0), req.echo ? 0 : s.prompt_text.size(), tok);
      }
    }
    choices.push_back(std::move(c));
  }
  return {{"id", meta.id},
          {"object", req.chat ? "chat.completion" : "text_completion"},
          {"created", meta.created},
          {"model", meta.model},
          {"choices", choices},
          {"usage", usage_json(req, outs)}};
}

json stream_chunk(const CompletionRequest& req, size_t i, const std::string& text, const std::vector<TokenLogprob>& lps,
                  const std::optional<std::string>& finish, const ResponseMeta& meta, const text::Tokenizer& tok,
                  bool first) {
  json c;
  c["index"] = req.seqs[i].choice_index;
  c["finish_reason"] = finish ? json(*finish) : json(nullptr);
  if (req.chat) {
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (!text.empty() || first) delta["content"] = text;
    c["delta"] = delta;
    c["logprobs"] = req.logprobs >= 0 && !lps.empty() ? chat_logprobs(lps, 0, lps.size(), tok) : json(nullptr);
  } else {
    c["text"] = text;
    std::vector<const TokenLogprob*> p;
    for (const auto& t : lps) p.push_back(&t);
    c["logprobs"] = req.logprobs >= 0 && !lps.empty() ? completion_logprobs(p, false, 0, 0, tok) : json(nullptr);
  }
  return {{"id", meta.id},
          {"object", req.chat ? "chat.completion.chunk" : "text_completion"},
          {"created", meta.created},
          {"model", meta.model},
          {"choices", json::array({c})}};
}

json echo_chunk(const CompletionRequest& req, size_t i, const SeqOutput& out, const std::string& text,
                const std::vector<TokenLogprob>& lps, const ResponseMeta& meta, const text::Tokenizer& tok) {
  const SeqSpec& s = req.seqs[i];
  json c = stream_chunk(req, i, s.prompt_text + text, {}, std::nullopt, meta, tok);
  if (req.logprobs >= 0) {
    std::vector<const TokenLogprob*> p;
    for (const auto& t : out.prompt_logprobs) p.push_back(&t);
    for (const auto& t : lps) p.push_back(&t);
    c["choices"][0]["logprobs"] = completion_logprobs(p, true, s.gen.prompt.at(0), 0, tok);
  }
  return c;
}

json usage_chunk(const CompletionRequest& req, const std::vector<SeqOutput>& outs, const ResponseMeta& meta) {
  return {{"id", meta.id},
          {"object", req.chat ? "chat.completion.chunk" : "text_completion"},
          {"created", meta.created},
          {"model", meta.model},
          {"choices", json::array()},
          {"usage", usage_json(req, outs)}};
}

}  // namespace rvec::serve
