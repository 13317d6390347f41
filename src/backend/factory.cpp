#include "backend/factory.h"

#include "core/error.h"

namespace rvec::backend {

std::unique_ptr<eval::LanguageModel> open_backend(const BackendOptions& o) {
  if (o.kind == "engine") {
    if (o.model.empty()) fail("the engine backend needs a MODEL directory");
    return open_engine_model(o.model, o.engine);
  }
  if (o.kind == "openai") return open_openai_model(o.openai);
  fail("unknown backend '{}' (engine, openai)", o.kind);
}

}  // namespace rvec::backend
