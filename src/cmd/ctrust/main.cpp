// ctrust: the command-line tool. Each command group registers itself; see docs/cli/.
#include <spdlog/cfg/env.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string_view>

#include "cmd/ctrust/cli.h"

namespace {

int run(int argc, char** argv) {
  auto logger = spdlog::stderr_color_mt("ctrust");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("ctrust: %l: %v");
  spdlog::set_level(spdlog::level::warn);
  spdlog::cfg::load_env_levels();  // SPDLOG_LEVEL; overridden by --log-level

  CLI::App app{"ctrust: measure, verify and attest what containers run"};
  app.set_version_flag("--version", std::string("ctrust ") + CTRUST_VERSION);
  app.require_subcommand(1);
  std::string level;
  app.add_option("--log-level", level,
                 "Log level: trace, debug, info, warn, error, off (default warn; also "
                 "SPDLOG_LEVEL)")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}))
      ->each([](const std::string& l) { spdlog::set_level(spdlog::level::from_str(l)); });

  ctrust::cli::Context ctx;
  if (argc > 1 && std::string_view(argv[1]) == "hook") {
    // The hook is on every container's start path: only its own command is built.
    ctrust::cli::register_hook_command(app, ctx);
  } else {
    ctrust::cli::register_digest_commands(app, ctx);
    ctrust::cli::register_log_commands(app, ctx);
    ctrust::cli::register_key_commands(app, ctx);
    ctrust::cli::register_image_commands(app, ctx);
    ctrust::cli::register_policy_commands(app, ctx);
    ctrust::cli::register_tpm_commands(app, ctx);
    ctrust::cli::register_vtpm_commands(app, ctx);
    ctrust::cli::register_agent_commands(app, ctx);
    ctrust::cli::register_attest_commands(app, ctx);
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    // Help and version are successes; every other parse error is a usage error.
    return rc == 0 ? 0 : ctrust::cli::kExitUsage;
  }
  return ctx.exit_code;
}

}  // namespace

int main(int argc, char** argv) {
  // Errors are values inside ctrust; an exception here is a bug in a library we call (for
  // example std::bad_alloc). Say so on one line instead of aborting.
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ctrust: error: internal error: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "ctrust: error: internal error\n");
  }
  return ctrust::cli::kExitError;
}
