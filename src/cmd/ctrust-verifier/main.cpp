// ctrust-verifier: challenges ctrustd agents and decides, from signed evidence, whether to
// trust their hosts and containers (docs/VERIFIER.md). Runs in the foreground; needs no
// privileges beyond reading its state directory.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <csignal>
#include <cstdio>
#include <thread>

#include "verifier/config.h"
#include "verifier/service.h"

namespace {

int run(int argc, char** argv) {
  CLI::App app{
      "ctrust-verifier: registers ctrust agents, challenges them continuously and publishes "
      "signed verdicts (EAR) on every host and container"};
  app.set_version_flag("--version", std::string("ctrust-verifier ") + CTRUST_VERSION);
  std::string config_path = ctrust::verifier::kDefaultConfigPath;
  std::string level, state_dir, listen, store;
  bool check = false;
  bool paused = false;
  app.add_option("--config,-c", config_path, "Configuration file (TOML)")->capture_default_str();
  app.add_option("--log-level", level, "Overrides log_level: trace, debug, info, warn, error, off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  app.add_option("--state-dir", state_dir, "Overrides state_dir");
  app.add_option("--listen", listen, "Overrides listen (ADDRESS:PORT of the REST API)");
  app.add_option("--store", store,
                 "Overrides store: sqlite:/path/file.db or postgresql://user@host/db");
  app.add_flag("--paused", paused, "Do not attest on a schedule (only on request)");
  app.add_flag("--check-config", check, "Parse the configuration, print it as read, and exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  auto logger = spdlog::stderr_color_mt("ctrust-verifier");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("ctrust-verifier: %l: %v");

  auto config = ctrust::verifier::load_config(config_path, app.count("--config") > 0);
  if (!config) {
    std::fprintf(stderr, "ctrust-verifier: error: %s\n", config.error().message().c_str());
    return 2;
  }
  if (!level.empty()) config->log_level = level;
  if (!state_dir.empty()) config->state_dir = state_dir;
  if (!listen.empty()) config->listen = listen;
  if (!store.empty()) config->store = store;
  if (paused) config->start_paused = true;
  spdlog::set_level(spdlog::level::from_str(config->log_level));
  if (check) {
    std::printf("state_dir = %s\nlisten = %s\ninterval = %u\nconcurrency = %u\n",
                config->state_dir.c_str(), config->listen.c_str(), config->interval,
                config->concurrency);
    return 0;
  }
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  auto verifier = ctrust::verifier::Verifier::start(*config);
  if (!verifier) {
    spdlog::error("{}", verifier.error().message());
    return 3;
  }
  std::thread signals([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    spdlog::info("signal {}: stopping", sig);
    (*verifier)->stop();
  });
  signals.detach();
  (*verifier)->wait();
  verifier->reset();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ctrust-verifier: error: internal error: %s\n", e.what());
  }
  return 3;
}
