#include "io/model_resolver.h"

#include <mutex>

namespace rvec::io {
namespace {
std::mutex g_mu;
ModelResolver& resolver() {
  static ModelResolver r;
  return r;
}
}  // namespace

void set_model_resolver(ModelResolver r) {
  std::lock_guard lk(g_mu);
  resolver() = std::move(r);
}

std::filesystem::path resolve_model_path(const std::filesystem::path& p) {
  std::error_code ec;
  if (p.empty() || std::filesystem::exists(p, ec)) return p;
  ModelResolver r;
  {
    std::lock_guard lk(g_mu);
    r = resolver();
  }
  return r ? r(p.string()) : p;
}

}  // namespace rvec::io
