// `rvec random-vector VEC --seed S -o OUT`: a random direction with VEC's per-tensor norms.
#include <fmt/format.h>

#include "cli/arith_common.h"
#include "cli/command.h"

namespace {
rvec::cli::Command cmd("random-vector", "A random vector with the same per-tensor L2 norms as a task vector",
                       [](CLI::App& app) {
                         auto a = std::make_shared<rvec::cli::ArithArgs>();
                         auto vec = std::make_shared<std::string>();
                         auto seed = std::make_shared<uint64_t>(0);
                         app.add_option("vector", *vec, "Task vector directory")->required();
                         app.add_option("--seed", *seed, "Random seed (default 0)");
                         a->add(app, false, false);
                         return [a, vec, seed] {
                           auto r = rvec::arith::random_like(*vec, *seed, a->finish());
                           rvec::arith::print_report(r, "random-vector");
                           return 0;
                         };
                       });
}  // namespace
