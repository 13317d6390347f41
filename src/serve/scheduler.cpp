#include "serve/scheduler.h"

#include <omp.h>

#include <chrono>
#include <unordered_map>

#include "infer/generator.h"

namespace rvec::serve {

namespace {
struct Entry {
  std::shared_ptr<Ticket> ticket;
  size_t idx;
  int k;  // top alternatives; -1: no logprobs
  std::vector<int32_t> prompt;
};
struct Incoming {
  uint64_t id;
  Entry entry;
  infer::GenerationRequest gen;
  bool prompt_logits;
};
}  // namespace

struct Scheduler::Impl {
  const infer::Model& model;
  Options opts;
  std::mutex m;
  std::condition_variable cv;
  std::deque<Incoming> incoming;
  std::vector<uint64_t> cancels;
  bool stop = false, draining = false;
  uint64_t next_id = 1;
  std::atomic<uint64_t> requests{0}, prompt_tokens{0}, generation_tokens{0};
  std::atomic<size_t> queued{0}, running{0};
  std::unordered_map<const Ticket*, std::vector<uint64_t>> ids;  // guarded by m
  std::thread worker;
  Impl(const infer::Model& mo, Options o) : model(mo), opts(o) {}
};

Scheduler::Scheduler(const infer::Model& model, Options opts) : impl_(std::make_unique<Impl>(model, opts)) {
  impl_->worker = std::thread([this] { run(); });
}

Scheduler::~Scheduler() {
  {
    std::lock_guard lk(impl_->m);
    impl_->stop = true;
  }
  impl_->cv.notify_all();
  if (impl_->worker.joinable()) impl_->worker.join();
}

std::shared_ptr<Ticket> Scheduler::submit(const CompletionRequest& req) {
  auto t = std::make_shared<Ticket>();
  t->outs.resize(req.seqs.size());
  t->pending_text.resize(req.seqs.size());
  t->done.assign(req.seqs.size(), false);
  Impl& I = *impl_;
  std::lock_guard lk(I.m);
  if (I.draining || I.stop) throw ShuttingDown("the server is shutting down");
  if (I.queued + I.incoming.size() + req.seqs.size() > I.opts.max_queue)
    throw QueueFull("the server's queue is full; retry later");
  auto& ids = I.ids[t.get()];
  uint64_t ptoks = 0;
  for (size_t i = 0; i < req.seqs.size(); ++i) {
    const uint64_t id = I.next_id++;
    ids.push_back(id);
    const auto& s = req.seqs[i];
    I.incoming.push_back({id, {t, i, req.logprobs, s.gen.prompt}, s.gen, req.prompt_logprobs()});
    if (s.sample_index == 0) ptoks += s.gen.prompt.size();
  }
  I.requests++;
  I.prompt_tokens += ptoks;
  I.cv.notify_all();
  return t;
}

void Scheduler::cancel(const std::shared_ptr<Ticket>& t) {
  Impl& I = *impl_;
  std::lock_guard lk(I.m);
  auto it = I.ids.find(t.get());
  if (it == I.ids.end()) return;
  I.cancels.insert(I.cancels.end(), it->second.begin(), it->second.end());
  I.ids.erase(it);
  I.cv.notify_all();
}

void Scheduler::drain(double grace_s) {
  Impl& I = *impl_;
  {
    std::lock_guard lk(I.m);
    I.draining = true;
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(grace_s);
  while (std::chrono::steady_clock::now() < deadline) {
    {
      std::lock_guard lk(I.m);
      if (I.incoming.empty() && I.queued == 0 && I.running == 0) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  {
    std::lock_guard lk(I.m);
    I.stop = true;
  }
  I.cv.notify_all();
  if (I.worker.joinable()) I.worker.join();
}

Scheduler::Stats Scheduler::stats() const {
  const Impl& I = *impl_;
  return {I.requests, I.prompt_tokens, I.generation_tokens, I.queued, I.running};
}

void Scheduler::run() {
  Impl& I = *impl_;
  // OpenMP settings are per thread: the worker runs the forward passes.
  if (I.opts.threads > 0) omp_set_num_threads(I.opts.threads);
  infer::Engine eng(I.model, I.opts.engine);
  const int64_t V = I.model.config().vocab_size;
  std::unordered_map<uint64_t, Entry> live;  // worker-owned

  auto with_ticket = [&](uint64_t id, auto&& fn) {
    auto it = live.find(id);
    if (it == live.end()) return;
    Entry& e = it->second;
    {
      std::lock_guard lk(e.ticket->m);
      fn(e, e.ticket->outs[e.idx]);
    }
    e.ticket->cv.notify_all();
  };
  infer::Generator::Callbacks cb;
  cb.on_token = [&](uint64_t id, int32_t tok, const float* lg) {
    I.generation_tokens++;
    auto it = live.find(id);
    if (it == live.end() || it->second.k < 0) return;
    TokenLogprob lp = token_logprob(lg, V, tok, it->second.k);  // outside the ticket's lock
    with_ticket(id, [&](Entry&, SeqOutput& o) { o.logprobs.push_back(std::move(lp)); });
  };
  cb.on_text = [&](uint64_t id, const std::string& piece) {
    with_ticket(id, [&](Entry& e, SeqOutput&) { e.ticket->pending_text[e.idx] += piece; });
  };
  cb.on_prompt_logits = [&](uint64_t id, size_t first, const float* lg, size_t n) {
    auto it = live.find(id);
    if (it == live.end()) return;
    std::vector<TokenLogprob> lps;
    const auto& p = it->second.prompt;
    for (size_t j = 0; j < n && first + j + 1 < p.size(); ++j)
      lps.push_back(token_logprob(lg + j * V, V, p[first + j + 1], it->second.k));
    with_ticket(id, [&](Entry&, SeqOutput& o) {
      o.prompt_logprobs.insert(o.prompt_logprobs.end(), lps.begin(), lps.end());
    });
  };
  cb.on_done = [&](uint64_t id, infer::GenerationResult r) {
    with_ticket(id, [&](Entry& e, SeqOutput& o) {
      o.result = std::move(r);
      e.ticket->done[e.idx] = true;
      e.ticket->n_done++;
    });
    auto it = live.find(id);
    if (it == live.end()) return;
    const Ticket* t = it->second.ticket.get();
    live.erase(it);
    bool any = false;
    for (const auto& [oid, e] : live) any = any || e.ticket.get() == t;
    if (!any) {  // a finished request needs no cancel entry any more
      std::lock_guard lk(I.m);
      bool pending = false;
      for (const auto& in : I.incoming) pending = pending || in.entry.ticket.get() == t;
      if (!pending) I.ids.erase(t);
    }
  };
  auto gen = std::make_unique<infer::Generator>(eng, cb);
  auto fail_all = [&](const std::string& msg) {
    for (auto& [id, e] : live) {
      {
        std::lock_guard lk(e.ticket->m);
        e.ticket->error = msg;
      }
      e.ticket->cv.notify_all();
    }
    std::lock_guard lk(I.m);
    for (auto& [id, e] : live) I.ids.erase(e.ticket.get());
    live.clear();
  };

  for (;;) {
    {
      std::unique_lock lk(I.m);
      I.cv.wait(lk, [&] { return I.stop || !I.incoming.empty() || !I.cancels.empty() || !gen->idle(); });
      if (I.stop) break;
      while (!I.incoming.empty()) {
        Incoming in = std::move(I.incoming.front());
        I.incoming.pop_front();
        auto ticket = in.entry.ticket;
        live.emplace(in.id, std::move(in.entry));
        try {
          gen->add(in.id, std::move(in.gen), {.prompt_logits = in.prompt_logits});
        } catch (const std::exception& e) {  // validation should have caught it; never kill the worker
          live.erase(in.id);
          std::lock_guard tl(ticket->m);
          ticket->error = e.what();
          ticket->cv.notify_all();
        }
      }
      for (uint64_t id : I.cancels) {
        gen->cancel(id);
        live.erase(id);
      }
      I.cancels.clear();
    }
    try {
      gen->step();
    } catch (const std::exception& e) {
      fail_all(std::string("engine error: ") + e.what());
      gen = std::make_unique<infer::Generator>(eng, cb);
    }
    {
      std::lock_guard lk(I.m);
      I.queued = gen->queued();
      I.running = gen->running();
    }
  }
  fail_all("the server is shutting down");
  I.queued = 0;
  I.running = 0;
}

}  // namespace rvec::serve
