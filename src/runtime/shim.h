// ctrust-runtime: an OCI runtime in its own right, for engines that call a runtime binary
// rather than run hooks of their own choosing (Docker, containerd, CRI-O; docs/RUNTIMES.md).
// It takes the real runtime's command line unchanged, and for `create` and `run` first adds
// ctrust's hooks to the bundle's config.json (idempotently), then execs the real runtime
// (runc by default, crun or any other by configuration) with the same arguments. Every
// other command goes to the real runtime untouched.
//
// This file holds what can be decided without a process: the configuration, the command
// line, and the config.json rewrite (config.json is untrusted: fuzz/fuzz_runtime_bundle.cpp).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.h"

namespace ctrust::runtime {

inline constexpr const char* kDefaultConfigPath = "/etc/ctrust/runtime.toml";
inline constexpr const char* kConfigEnv = "CTRUST_RUNTIME_CONFIG";
inline constexpr std::size_t kMaxBundleConfig = std::size_t{16} << 20;

// runtime.toml (docs/cli/runtime.md); every key optional.
struct ShimConfig {
  std::string runtime = "runc";  // the real OCI runtime: a path, or a name found in PATH
  std::string hook;              // ctrust-hook; "": the one beside ctrust-runtime
  std::string socket = "/run/ctrust/ctrustd.sock";
  // The agent unreachable: admit the container (the hook reports it) instead of refusing.
  bool fail_open = false;
  int timeout_s = 120;  // how long the hook waits for ctrustd
};
Result<ShimConfig> parse_shim_config(std::string_view text, const std::string& origin);

// The command line as the engine gave it, understood as far as ctrust needs.
struct Invocation {
  std::vector<std::string> runtime_args;  // for the real runtime (ctrust's own options removed)
  std::string config_path;                // --ctrust-config, or ""
  std::string command;                    // create, run, start, ... ("" when none)
  std::size_t command_index = 0;          // where it is in runtime_args
  std::string bundle;                     // create/run: --bundle/-b, or "" (the working dir)
  std::string log_path;                   // the runtime's --log, if any
  std::string log_format;                 // its --log-format ("text" or "json")
  bool help = false;                      // ctrust-runtime --help (no command)
  bool version = false;                   // ctrust-runtime --version / -v (no command)
};
Result<Invocation> parse_invocation(const std::vector<std::string>& args);

// What `create` names, among its options (runc's and crun's): the container id (its one
// argument) and the --pid-file, if given ("" otherwise). An error when there is no id.
struct CreateArgs {
  std::string id;
  std::string pid_file;
};
Result<CreateArgs> parse_create_args(const Invocation& inv);

// The OCI state (runtime-spec "State") of a container that `create` has just made: what
// ctrust-runtime hands to ctrustd in place of a createRuntime hook.
std::string created_state(const std::string& id, int pid, const std::string& bundle);

// What ctrust adds to a bundle.
struct HookSpec {
  std::string path;                      // ctrust-hook
  std::vector<std::string> create_args;  // argv of the createRuntime hook
};
HookSpec hook_spec(const ShimConfig& config, const std::string& hook_path);

// config.json with ctrust's createRuntime hook first; hooks of ctrust's already there (an
// earlier pass, or another path to ctrust-hook or `ctrust hook`, at any stage: a poststop
// hook of an earlier version too) are replaced or removed, everything else is kept. An error for a
// document that is not a runtime spec object (the start is refused then: no container runs without
// its hooks).
Result<std::string> add_hooks(std::string_view config_json, const HookSpec& spec);

}  // namespace ctrust::runtime
