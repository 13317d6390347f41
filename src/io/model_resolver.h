// Model names that are not directories (e.g. Hugging Face `ORG/NAME[@REV]`) are turned
// into directories by a resolver the program installs at start-up (the CLI installs the
// hub's cache lookup); io and the modules above it stay free of network code.
#pragma once
#include <filesystem>
#include <functional>
#include <string>

namespace rvec::io {

// Returns the directory for `name`, or throws rvec::Error saying why there is none.
using ModelResolver = std::function<std::filesystem::path(const std::string& name)>;
void set_model_resolver(ModelResolver r);

// `p` itself when it exists (or no resolver is installed), else the resolver's answer.
std::filesystem::path resolve_model_path(const std::filesystem::path& p);

}  // namespace rvec::io
