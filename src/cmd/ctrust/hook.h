// The OCI runtime hook (`ctrust hook STAGE`, and the same as the small `ctrust-hook`
// program): reads the runtime's state on standard input and hands the container to ctrustd
// at createRuntime, or closes its books at poststop (docs/cli/agent.md). Shared by both
// programs so that the hot path of every container start has one implementation.
#pragma once

#include <CLI/CLI.hpp>

#include <string>

namespace ctrust::cli {

struct HookArgs {
  std::string stage;
  std::string socket;
  bool fail_open = false;
  int timeout_s = 120;
};

// The stage positional and the options, on `cmd`.
void add_hook_options(CLI::App* cmd, HookArgs& args);
// Exit 0: the runtime goes on; 1: the start is refused (the runtime stops the container).
int run_hook(const HookArgs& args);

}  // namespace ctrust::cli
