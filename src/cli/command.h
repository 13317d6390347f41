// Subcommand registry: each src/cli/<name>.cpp registers one subcommand with a
// static `rvec::cli::Command` object. setup() declares the options on the CLI11
// subcommand and returns the function that runs it (exit code).
#pragma once
#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

namespace rvec::cli {

using Runner = std::function<int()>;
using Setup = std::function<Runner(CLI::App&)>;

struct Command {
  Command(std::string name, std::string description, Setup setup);
};

struct CommandSpec {
  std::string name, description;
  Setup setup;
};
std::vector<CommandSpec>& registry();

}  // namespace rvec::cli
