#include "cmd/ctrust/hook.h"

#include <unistd.h>
#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstdio>

#include "agent/config.h"
#include "agent/control.h"
#include "agent/oci.h"
#include "util/text.h"

namespace ctrust::cli {
namespace {

Result<std::string> read_stdin(std::size_t max) {
  std::string text;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(0, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error("reading the OCI state from standard input", errno);
    }
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
    if (text.size() > max) return Error(Errc::kLimit, "the OCI state is larger than 4 MiB");
  }
  return text;
}

// One line on stderr; the agent's messages quote untrusted input (annotations, paths), so
// control characters never reach the terminal.
void say(const char* level, const std::string& message) {
  std::string safe =
      escape_bytes_if(message, [](unsigned char c) { return c >= 0x20 && c != 0x7f; });
  std::fprintf(stderr, "ctrust: %s: %s\n", level, safe.c_str());
}

}  // namespace

void add_hook_options(CLI::App* cmd, HookArgs& args) {
  args.socket = agent::kDefaultSocket;
  cmd->add_option("stage", args.stage, "createRuntime or poststop")
      ->required()
      ->check(CLI::IsMember({"createRuntime", "poststop"}));
  cmd->add_option("--socket", args.socket, "ctrustd's control socket")->capture_default_str();
  cmd->add_flag("--fail-open", args.fail_open,
                "Let the container start unmeasured when ctrustd is not running (default: "
                "refuse the start)");
  cmd->add_option("--timeout", args.timeout_s, "Seconds to wait for ctrustd")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600));
}

int run_hook(const HookArgs& args) {
  constexpr int kGoOn = 0;
  constexpr int kRefuse = 1;
  auto text = read_stdin(agent::kMaxOciDocument);
  if (!text) {
    say("error", text.error().message());
    return kRefuse;
  }
  auto state = agent::parse_oci_state(*text);
  if (!state) {
    say("error", "the OCI state on standard input: " + state.error().message());
    return kRefuse;
  }
  nlohmann::json request;
  if (args.stage == "createRuntime") {
    request = {{"op", "create"}, {"state", *text}};
  } else {
    request = {{"op", "delete"}, {"id", state->id}};
  }
  auto answer = agent::control_call(args.socket, request, args.timeout_s * 1000);
  if (answer) return kGoOn;
  std::string id = printable(state->id);
  if (answer.error().code() == Errc::kNotFound && args.stage == "createRuntime" && args.fail_open) {
    say("warning",
        answer.error().message() + "; container " + id + " runs unmeasured (--fail-open)");
    return kGoOn;
  }
  if (args.stage == "poststop") {
    // The container is gone either way; say why the agent could not close its books.
    say("warning", "poststop " + id + ": " + answer.error().message());
    return kGoOn;
  }
  say("error", "container " + id + " refused: " + answer.error().message());
  return kRefuse;
}

}  // namespace ctrust::cli
