// ctrust-hook: the OCI runtime hook alone (the same as `ctrust hook`), for the start path of
// every container: it links only what the hook needs, so it starts in about a millisecond
// where the whole ctrust command line takes several.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>

#include "cmd/ctrust/hook.h"

int main(int argc, char** argv) {
  try {
    CLI::App app{
        "ctrust-hook: OCI runtime hook that hands a container to ctrustd "
        "(reads the OCI state on stdin)"};
    app.set_version_flag("--version", std::string("ctrust-hook ") + CTRUST_VERSION);
    ctrust::cli::HookArgs args;
    ctrust::cli::add_hook_options(&app, args);
    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      int rc = app.exit(e);
      return rc == 0 ? 0 : 2;
    }
    return ctrust::cli::run_hook(args);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ctrust: error: internal error: %s\n", e.what());
  }
  return 1;  // a hook that cannot work refuses the start
}
