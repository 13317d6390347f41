#include "infer/generator.h"

#include <algorithm>
#include <optional>
#include <random>

#include "core/error.h"

namespace rvec::infer {

struct Generator::Seq {
  uint64_t id;
  GenerationRequest req;
  SeqOptions opts;
  KVCache kv;
  GenerationResult res;
  std::optional<text::StreamDecoder> dec;
  std::mt19937_64 rng;
  size_t kv_bytes = 0;  // reserved while running
  int32_t last = 0;
  size_t streamed = 0;
  bool done = false;
};

namespace {
double uniform01(std::mt19937_64& g) { return double(g() >> 11) * 0x1.0p-53; }
constexpr size_t kPromptLogitRows = 256;  // prompt-logits prefill runs in pieces of this many rows
}  // namespace

Generator::Generator(Engine& eng, Callbacks cb) : eng_(eng), cb_(std::move(cb)) {}
Generator::~Generator() = default;

size_t Generator::prompt_start(const GenerationRequest& rq, size_t max_context) {
  const size_t room = max_context > size_t(std::max(rq.max_new_tokens, 0)) ? max_context - rq.max_new_tokens : 1;
  return rq.prompt.size() > room ? rq.prompt.size() - room : 0;
}

size_t Generator::kv_tokens(const GenerationRequest& rq, size_t max_context) {
  const size_t kept = rq.prompt.size() - std::min(rq.prompt.size(), prompt_start(rq, max_context));
  return std::min(max_context, kept + size_t(std::max(rq.max_new_tokens, 0)));
}

void Generator::add(uint64_t id, GenerationRequest req, SeqOptions opts) {
  const text::Tokenizer* tok = eng_.model().tokenizer();
  if (!req.stop_strings.empty() && !tok)
    fail("{}: stop strings need a tokenizer.json", eng_.model().dir().path().string());
  if (req.prompt.empty()) fail("generate: request {} has an empty prompt", id);
  const EngineOptions& eo = eng_.options();
  const size_t tokens = kv_tokens(req, eo.max_context);
  const size_t bytes = tokens * size_t(kv_bytes_per_token(eng_.model().config(), eo.kv_dtype));
  if (eo.kv_cache_bytes > 0 && bytes > eo.kv_cache_bytes)
    fail("generate: request {} needs a KV cache of {} tokens ({:.3f} GiB: prompt + max_new_tokens), more than the "
         "KV cache cap of {:.3f} GiB (--kv-cache-gb); raise the cap or lower the generation budget",
         id, tokens, double(bytes) / double(1 << 30), double(eo.kv_cache_bytes) / double(1 << 30));
  auto s = std::make_unique<Seq>();
  s->kv_bytes = bytes;
  s->id = id;
  s->req = std::move(req);
  s->opts = opts;
  s->rng.seed(s->req.sampling.seed);
  if (tok) s->dec.emplace(*tok);
  queue_.push_back(std::move(s));
}

bool Generator::cancel(uint64_t id) {
  auto match = [&](const std::unique_ptr<Seq>& s) { return s->id == id; };
  if (auto it = std::find_if(queue_.begin(), queue_.end(), match); it != queue_.end()) {
    queue_.erase(it);
    return true;
  }
  if (auto it = std::find_if(active_.begin(), active_.end(), match); it != active_.end()) {
    reserved_ -= (*it)->kv_bytes;
    active_.erase(it);
    return true;
  }
  return false;
}

bool Generator::accept(Seq& a, int32_t t) {
  const auto& rq = a.req;
  const auto& eos = eng_.model().eos_ids();
  a.res.tokens.push_back(t);
  a.last = t;
  auto cut_at_stop = [&](size_t from_hint) {
    size_t best = std::string::npos;
    for (const auto& s : rq.stop_strings) {
      if (s.empty()) continue;
      size_t from = from_hint >= s.size() ? from_hint - s.size() + 1 : 0;
      best = std::min(best, a.res.text.find(s, from));
    }
    if (best == std::string::npos) return false;
    a.res.text.resize(best);
    a.res.finish_reason = "stop_string";
    return true;
  };
  bool finished = false;
  if (std::find(eos.begin(), eos.end(), t) != eos.end() ||
      std::find(rq.stop_tokens.begin(), rq.stop_tokens.end(), t) != rq.stop_tokens.end()) {
    if (a.dec) a.res.text += a.dec->flush();
    a.res.finish_reason = "stop_token";
    finished = true;
  } else {
    if (a.dec) {
      size_t before = a.res.text.size();
      a.res.text += a.dec->push(t);
      if (!rq.stop_strings.empty() && a.res.text.size() > before) finished = cut_at_stop(before);
    }
    if (!finished &&
        (int64_t(a.res.tokens.size()) >= rq.max_new_tokens || size_t(a.kv.size()) + 1 > eng_.options().max_context)) {
      // A stop string completed by the flushed tail still cuts the text.
      if (a.dec) a.res.text += a.dec->flush();
      if (!cut_at_stop(0)) a.res.finish_reason = "length";
      finished = true;
    }
  }
  stream(a, finished);
  if (finished) {
    a.done = true;
    reserved_ -= a.kv_bytes;
    a.kv = KVCache();  // its memory goes back now, not when the batch is next compacted
    cb_.on_done(a.id, std::move(a.res));
  }
  return finished;
}

void Generator::stream(Seq& a, bool finished) {
  if (!cb_.on_text) return;
  size_t hold = 0;
  if (!finished)
    for (const auto& s : a.req.stop_strings) hold = std::max(hold, s.empty() ? 0 : s.size() - 1);
  size_t safe = a.res.text.size() > hold ? a.res.text.size() - hold : 0;
  // Never split a UTF-8 character.
  while (safe > a.streamed && safe < a.res.text.size() && (uint8_t(a.res.text[safe]) & 0xC0) == 0x80) --safe;
  if (safe > a.streamed) {
    cb_.on_text(a.id, a.res.text.substr(a.streamed, safe - a.streamed));
    a.streamed = safe;
  }
}

void Generator::step() {
  // Admit queued sequences (up to max_batch running, and in order while their KV cache
  // reservations fit the cap) and prefill their prompts together.
  std::vector<std::unique_ptr<Seq>> fresh;
  const size_t cap = eng_.options().kv_cache_bytes;
  while (!queue_.empty() && active_.size() + fresh.size() < size_t(eng_.options().max_batch) &&
         (cap == 0 || reserved_ + queue_.front()->kv_bytes <= cap)) {
    auto s = std::move(queue_.front());
    queue_.pop_front();
    if (s->req.max_new_tokens <= 0 && !s->opts.prompt_logits) {
      cb_.on_done(s->id, GenerationResult{{}, "", "length"});
      continue;
    }
    reserved_ += s->kv_bytes;
    s->kv.limit_growth(int64_t(kv_tokens(s->req, eng_.options().max_context)));
    fresh.push_back(std::move(s));
  }
  if (!fresh.empty()) prefill(fresh);
  else if (!active_.empty()) decode();
}

void Generator::prefill(std::vector<std::unique_ptr<Seq>>& fresh) {
  const int64_t V = eng_.model().config().vocab_size;
  const size_t max_context = eng_.options().max_context;
  // Sequences that report prompt logits prefill alone, in pieces (their logits would not fit
  // one buffer for long prompts); the others prefill together in one pass.
  std::vector<Engine::Row> rows;
  std::vector<Seq*> batched;
  std::vector<float> last_lg(fresh.size() * V);
  for (size_t j = 0; j < fresh.size(); ++j) {
    Seq& a = *fresh[j];
    const auto& p = a.req.prompt;
    size_t start = prompt_start(a.req, max_context);
    if (a.opts.prefix && start == 0) {
      a.kv = *a.opts.prefix;  // the prefix's keys and values, then only the rest is prefilled
      a.kv.limit_growth(int64_t(kv_tokens(a.req, max_context)));
      start = size_t(a.kv.size());
    }
    if (!a.opts.prompt_logits) {
      for (size_t t = start; t < p.size(); ++t) rows.push_back({&a.kv, p[t], t + 1 == p.size()});
      batched.push_back(&a);
      continue;
    }
    std::vector<float> lg;
    for (size_t s = start; s < p.size(); s += kPromptLogitRows) {
      const size_t e = std::min(p.size(), s + kPromptLogitRows);
      std::vector<Engine::Row> piece;
      for (size_t t = s; t < e; ++t) piece.push_back({&a.kv, p[t], true});
      lg.resize((e - s) * V);
      eng_.forward(piece, lg.data());
      if (cb_.on_prompt_logits) cb_.on_prompt_logits(a.id, s, lg.data(), e - s);
    }
    std::copy_n(lg.data() + (lg.size() - V), V, last_lg.data() + j * V);
  }
  if (!rows.empty()) {
    lg_.resize(batched.size() * V);
    eng_.forward(rows, lg_.data());
  }
  for (size_t j = 0, b = 0; j < fresh.size(); ++j) {
    auto& a = fresh[j];
    const float* lg = a->opts.prompt_logits ? last_lg.data() + j * V : lg_.data() + (b++) * V;
    if (a->req.max_new_tokens <= 0) {
      reserved_ -= a->kv_bytes;
      cb_.on_done(a->id, GenerationResult{{}, "", "length"});
      continue;
    }
    int32_t t = sample_token(lg, V, a->req.sampling, uniform01(a->rng));
    if (cb_.on_token) cb_.on_token(a->id, t, lg);
    if (!accept(*a, t)) active_.push_back(std::move(a));
  }
}

void Generator::decode() {
  const int64_t V = eng_.model().config().vocab_size;
  std::vector<Engine::Row> rows;
  for (auto& a : active_) rows.push_back({&a->kv, a->last, true});
  lg_.resize(active_.size() * V);
  eng_.forward(rows, lg_.data());
  for (size_t j = 0; j < active_.size(); ++j) {
    auto& a = active_[j];
    const float* lg = lg_.data() + j * V;
    int32_t t = sample_token(lg, V, a->req.sampling, uniform01(a->rng));
    if (cb_.on_token) cb_.on_token(a->id, t, lg);
    accept(*a, t);
  }
  std::erase_if(active_, [](const std::unique_ptr<Seq>& a) { return a->done; });
}

// ------------------------------------------------------------------ Engine::generate
void Engine::generate(const std::vector<GenerationRequest>& reqs,
                      const std::function<void(size_t, GenerationResult)>& on_done,
                      const std::function<void(size_t, const std::string&)>& on_text) {
  Generator::Callbacks cb;
  cb.on_done = [&](uint64_t i, GenerationResult r) { on_done(size_t(i), std::move(r)); };
  if (on_text) cb.on_text = [&](uint64_t i, const std::string& s) { on_text(size_t(i), s); };
  Generator gen(*this, std::move(cb));

  // Shared prefix: common to every untruncated prompt, and one token shorter than the
  // shortest (each request still prefills its last token, whose logits it needs).
  KVCache shared;
  std::vector<int32_t> shared_tokens;
  if (opts_.share_prefix && reqs.size() >= 2) {
    const std::vector<int32_t>* first = nullptr;
    size_t lcp = 0;
    for (const auto& rq : reqs) {
      if (rq.prompt.empty() || rq.max_new_tokens <= 0 || Generator::prompt_start(rq, opts_.max_context) != 0)
        continue;
      if (!first) {
        first = &rq.prompt;
        lcp = rq.prompt.size() - 1;
        continue;
      }
      lcp = std::min(lcp, rq.prompt.size() - 1);
      lcp = size_t(std::mismatch(first->begin(), first->begin() + lcp, rq.prompt.begin()).first - first->begin());
    }
    if (first && lcp >= kMinSharedPrefix) {
      std::vector<Row> rows;
      for (size_t t = 0; t < lcp; ++t) rows.push_back({&shared, (*first)[t], false});
      forward(rows, nullptr);
      shared_tokens.assign(first->begin(), first->begin() + lcp);
    }
  }
  for (size_t i = 0; i < reqs.size(); ++i) {
    const auto& rq = reqs[i];
    if (rq.prompt.empty() && rq.max_new_tokens > 0) fail("generate: request {} has an empty prompt", i);
    if (rq.prompt.empty()) {
      on_done(i, GenerationResult{{}, "", "length"});
      continue;
    }
    Generator::SeqOptions so;
    if (!shared_tokens.empty() && Generator::prompt_start(rq, opts_.max_context) == 0 &&
        rq.prompt.size() > shared_tokens.size() &&
        std::equal(shared_tokens.begin(), shared_tokens.end(), rq.prompt.begin()))
      so.prefix = &shared;
    gen.add(i, rq, so);
  }
  while (!gen.idle()) gen.step();
}

}  // namespace rvec::infer
