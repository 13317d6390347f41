// The experiment's VectorOps on top of rvec::arith (extract / apply / random_like / compress).
#include "arith/arith.h"
#include "arith/compress.h"
#include "arith/lora.h"
#include "exp/runner.h"

namespace fs = std::filesystem;

namespace rvec::experiment {

namespace {

class ArithOps : public VectorOps {
 public:
  void extract(const fs::path& base, const fs::path& tuned, const fs::path& out) override {
    arith::Options o;
    o.out = out;
    o.force = true;
    o.quiet = true;
    o.hash_inputs = false;
    arith::extract(base, tuned, o);
  }
  void apply(const fs::path& target, const fs::path& vector, double alpha, const fs::path& out) override {
    arith::Options o;
    o.out = out;
    o.force = true;
    o.quiet = true;
    o.hash_inputs = false;
    if (fs::exists(vector / "adapter_config.json"))  // compress: {method: lora}
      arith::lora::apply_adapters(target, {}, {{vector, alpha}}, o);
    else
      arith::apply(target, {{vector, alpha}}, o);
  }
  void random_like(const fs::path& vector, uint64_t seed, const fs::path& out) override {
    arith::Options o;
    o.out = out;
    o.force = true;
    o.quiet = true;
    o.hash_inputs = false;
    arith::random_like(vector, seed, o);
  }
  void compress(const fs::path& vector, const CompressConfig& c, const fs::path& out) override {
    arith::CompressOptions o;
    if (c.rank > 0) o.rank = c.rank;
    if (c.energy > 0) o.energy = c.energy;
    o.method = c.method;
    o.density = c.density;
    o.scope = c.scope;
    o.out = out;
    o.force = true;
    o.quiet = true;
    arith::compress(vector, o);
  }
};

}  // namespace

std::unique_ptr<VectorOps> make_arith_ops() { return std::make_unique<ArithOps>(); }

}  // namespace rvec::experiment
