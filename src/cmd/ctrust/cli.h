// Shared pieces of the `ctrust` command line: exit codes, error reporting, JSON output,
// progress bars. Each command group lives in its own cmd_<group>.cpp and registers its
// subcommands on the root app; main.cpp only wires them together.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <string>

#include "image/manifest.h"
#include "util/result.h"

namespace ctrust::cli {

// Exit codes are part of the interface (docs/cli/README.md).
enum ExitCode : int {
  kExitOk = 0,        // success; for checks: the input conforms
  kExitRejected = 1,  // a check ran and the input does not conform (verification failed)
  kExitUsage = 2,     // bad command line
  kExitError = 3,     // the input could not be processed (unreadable, malformed, I/O)
};

// The state a command callback reports back to main().
struct Context {
  int exit_code = kExitOk;
};

// Prints "ctrust: error: MESSAGE" on stderr, one line, and returns kExitError.
int report_error(const Error& error);
int report_error(const std::string& message);

// Prints a JSON document on stdout followed by a newline.
void print_json(const nlohmann::json& doc);

// A one-line progress bar on stderr, drawn only when stderr is a terminal and the work
// is large enough to be worth showing; cleared when finished or destroyed.
class Progress {
 public:
  Progress(std::string label, std::uint64_t total);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void advance(std::uint64_t done_units);
  void finish();

 private:
  void draw(bool force);
  std::string label_;
  std::uint64_t total_;
  std::uint64_t done_ = 0;
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point last_draw_;
  std::chrono::steady_clock::time_point start_;
};

// The manifest of an image SOURCE: a root filesystem directory, /proc/PID/root, or
// oci:DIR[:TAG]; with a progress bar on a terminal. image_source_problem() says what is
// wrong with a malformed SOURCE (a usage error), or is empty.
std::string image_source_problem(const std::string& source);
Result<image::Manifest> read_image_source(const std::string& source,
                                          image::ManifestOptions options);

void register_digest_commands(CLI::App& app, Context& ctx);
void register_log_commands(CLI::App& app, Context& ctx);
void register_key_commands(CLI::App& app, Context& ctx);
void register_image_commands(CLI::App& app, Context& ctx);
void register_policy_commands(CLI::App& app, Context& ctx);
void register_tpm_commands(CLI::App& app, Context& ctx);
void register_vtpm_commands(CLI::App& app, Context& ctx);
void register_agent_commands(CLI::App& app, Context& ctx);
void register_attest_commands(CLI::App& app, Context& ctx);
// Only `ctrust hook`: what the runtime runs at every container start and stop, built without
// the rest of the command tree (which costs milliseconds to construct).
void register_hook_command(CLI::App& app, Context& ctx);

}  // namespace ctrust::cli
