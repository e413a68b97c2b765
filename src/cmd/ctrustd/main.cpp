// ctrustd: the node agent (docs/AGENT.md). Runs as root, in the foreground (systemd's
// Type=notify is not needed: the control socket exists once the agent is ready).
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <csignal>
#include <cstdio>
#include <thread>

#include "agent/agent.h"
#include "agent/cgroup.h"
#include "agent/config.h"
#include "agent/digest_cache.h"
#include "util/file.h"

namespace {

int run(int argc, char** argv) {
  CLI::App app{"ctrustd: the ctrust node agent: measures and enforces what every container runs"};
  app.set_version_flag("--version", std::string("ctrustd ") + CTRUST_VERSION);
  std::string config_path = ctrust::agent::kDefaultConfigPath;
  std::string level;
  std::string state_dir;
  std::string socket;
  bool check = false;
  app.add_option("--config,-c", config_path, "Configuration file (TOML)")->capture_default_str();
  app.add_option("--log-level", level, "Overrides log_level: trace, debug, info, warn, error, off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  app.add_option("--state-dir", state_dir, "Overrides state_dir");
  app.add_option("--socket", socket, "Overrides socket");
  app.add_flag("--check-config", check, "Parse the configuration, print it as read, and exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }

  auto logger = spdlog::stderr_color_mt("ctrustd");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("ctrustd: %l: %v");

  bool explicit_config = app.count("--config") > 0;
  auto config = ctrust::agent::load_config(config_path, explicit_config);
  if (!config) {
    std::fprintf(stderr, "ctrustd: error: %s\n", config.error().message().c_str());
    return 2;
  }
  std::string config_bytes;
  if (auto bytes = ctrust::read_file(config_path, std::size_t{1} << 20); bytes) {
    config_bytes.assign(bytes->begin(), bytes->end());
  }
  if (!level.empty()) config->log_level = level;
  if (!state_dir.empty()) config->state_dir = state_dir;
  if (!socket.empty()) config->socket = socket;
  spdlog::set_level(spdlog::level::from_str(config->log_level));
  if (check) {
    std::printf("state_dir = %s\nsocket = %s\nhost_tpm.tcti = %s\nhost_tpm.pcr = %u\n",
                config->state_dir.c_str(), config->socket.c_str(), config->host_tcti.c_str(),
                config->host_pcr);
    return 0;
  }
  if (::geteuid() != 0) {
    std::fprintf(stderr, "ctrustd: error: must run as root (fanotify permission events)\n");
    return 3;
  }

  // Before any thread exists: the lease signal only reaches the digest cache's signalfd,
  // and SIGINT/SIGTERM only the thread below.
  if (auto r = ctrust::agent::block_lease_signal(); !r) {
    std::fprintf(stderr, "ctrustd: error: %s\n", r.error().message().c_str());
    return 3;
  }
  // Also before any thread: setns moves only the calling thread.
  if (auto joined = ctrust::agent::join_host_cgroup_namespace(); !joined) {
    std::fprintf(stderr, "ctrustd: error: %s\n", joined.error().message().c_str());
    return 3;
  } else if (*joined) {
    spdlog::info("joined the host's cgroup namespace (the agent's own was another)");
  }
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  // One descriptor per cached file: room for the cache and the containers.
  rlimit nofile{};
  if (::getrlimit(RLIMIT_NOFILE, &nofile) == 0) {
    nofile.rlim_cur = nofile.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &nofile);
  }

  auto agent = ctrust::agent::Agent::start(*config, config_bytes);
  if (!agent) {
    spdlog::error("{}", agent.error().message());
    return 3;
  }
  std::thread signals([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    spdlog::info("signal {}: stopping", sig);
    (*agent)->stop();
  });
  signals.detach();
  auto served = (*agent)->serve();
  agent->reset();
  if (!served) {
    spdlog::error("{}", served.error().message());
    return 3;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ctrustd: error: internal error: %s\n", e.what());
  }
  return 3;
}
