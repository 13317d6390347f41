// `rvec logits MODEL --tokens 1,2,3 --out FILE.npy`: logits at every position, float32 [T, vocab].
#include <fmt/format.h>

#include "cli/command.h"
#include "cli/infer_common.h"
#include "core/checked_int.h"
#include "infer/npy.h"

namespace {

struct Args {
  rvec::cli::InferArgs common;
  std::string tokens, text, out;
};

rvec::cli::Command cmd(
    "logits", "Write the logits of every position of a token sequence to a float32 [T, vocab] .npy",
    [](CLI::App& app) {
      auto a = std::make_shared<Args>();
      rvec::cli::add_infer_options(app, a->common);
      auto* t = app.add_option("--tokens", a->tokens, "Comma-separated token ids, e.g. 1,2,3");
      auto* x = app.add_option("--text", a->text, "Text to tokenize instead of --tokens");
      t->excludes(x);
      app.add_option("--out", a->out, "Output .npy file")->required();
      return [a]() -> int {
        using namespace rvec;
        cli::apply_infer_options(a->common);
        auto model = infer::load_model(a->common.model);
        std::vector<int32_t> ids;
        if (!a->text.empty()) {
          if (!model->tokenizer()) fail("{}: no tokenizer.json for --text", a->common.model);
          ids = model->tokenizer()->encode(a->text);
        } else {
          std::string s = a->tokens;
          size_t p = 0;
          while (p <= s.size() && !s.empty()) {
            size_t q = s.find(',', p);
            std::string item = s.substr(p, q == std::string::npos ? std::string::npos : q - p);
            ids.push_back(int32_t(parse_int_in_range(item, 0, INT32_MAX, "--tokens: a token id")));
            if (q == std::string::npos) break;
            p = q + 1;
          }
        }
        if (ids.empty()) fail("no tokens given (--tokens 1,2,3 or --text TEXT)");
        infer::Engine eng(*model, {.threads = a->common.threads,
                                   .max_batch = 1,
                                   .max_context = std::max<size_t>(ids.size(), 2),
                                   .kv_dtype = cli::kv_dtype(a->common)});
        auto lg = eng.logits(ids);
        infer::write_npy(a->out, lg.data(), {int64_t(ids.size()), model->config().vocab_size});
        fmt::print(stderr, "wrote {} [{}, {}]\n", a->out, ids.size(), model->config().vocab_size);
        return 0;
      };
    });

}  // namespace
