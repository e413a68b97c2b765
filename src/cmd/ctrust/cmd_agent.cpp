// The commands that talk to the local agent, ctrustd (docs/cli/agent.md): the OCI hook,
// `ctrust ps`, `ctrust events --follow` and `ctrust policy load`.
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include "agent/config.h"
#include "agent/control.h"
#include "agent/oci.h"
#include "cmd/ctrust/cli.h"
#include "cmd/ctrust/hook.h"
#include "util/text.h"

namespace ctrust::cli {
namespace {

using nlohmann::json;

struct PsArgs {
  std::string socket = agent::kDefaultSocket;
  bool json = false;
};

std::string short_digest(const std::string& d) {
  // "sha256:" + 12 hex digits is enough to tell images apart on a screen.
  return d.size() > 19 ? d.substr(0, 19) : d;
}

int run_ps(const PsArgs& args) {
  auto answer = agent::control_call(args.socket, {{"op", "ps"}}, 10000);
  if (!answer) return report_error(answer.error());
  if (args.json) {
    answer->erase("ok");
    print_json(*answer);
    return kExitOk;
  }
  // Who refuses what a policy does not allow (docs/EXEC_PATH.md, "Backends").
  std::printf("enforcement backend: %s\n", printable(answer->value("backend", "?")).c_str());
  std::printf("%-24s %-8s %-19s %-16s %-8s %6s %6s %6s\n", "CONTAINER", "MODE", "IMAGE", "POLICY",
              "VTPM", "MEAS", "DENIED", "VIOL");
  for (const auto& c : (*answer)["containers"]) {
    const auto& k = c["counts"];
    std::printf(
        "%-24s %-8s %-19s %-16s %-8s %6llu %6llu %6llu\n", printable(c.value("id", ""), 24).c_str(),
        c.value("mode", "").c_str(), short_digest(c.value("image", "")).c_str(),
        printable(c.value("policy", "-").empty() ? "-" : c.value("policy", "-"), 16).c_str(),
        c["vtpm"].value("uuid", "").substr(0, 8).c_str(),
        static_cast<unsigned long long>(k.value("measurements", 0ULL)),
        static_cast<unsigned long long>(k.value("denials", 0ULL)),
        static_cast<unsigned long long>(k.value("violations", 0ULL)));
  }
  for (const auto& u : (*answer)["unmanaged"]) {
    std::printf("%-24s %-8s (unmanaged: started without the hook)\n",
                printable(u.value("id", ""), 24).c_str(), "-");
  }
  return kExitOk;
}

struct EventsArgs {
  std::string socket = agent::kDefaultSocket;
  bool follow = false;
  bool json = false;
  std::size_t count = 0;  // 0: until interrupted
};

int run_events(const EventsArgs& args) {
  if (!args.follow) {
    return report_error(Error(Errc::kInvalidArgument,
                              "ctrustd streams events live only: use --follow (what ran is in "
                              "each container's log: ctrust log show --container ID)")),
           kExitUsage;
  }
  auto fd = agent::control_open(args.socket, {{"op", "events"}});
  if (!fd) return report_error(fd.error());
  auto first = agent::read_line(fd->get(), agent::kMaxRequest, 10000);
  if (!first)
    return report_error(std::move(first).error().with_context("subscribing to ctrustd's events"));
  std::fflush(stdout);
  std::size_t seen = 0;
  while (args.count == 0 || seen < args.count) {
    auto line = agent::read_line(fd->get(), agent::kMaxRequest, -1);
    if (!line) {
      return report_error(Error(Errc::kIo, "ctrustd closed the event stream"));
    }
    ++seen;
    if (args.json) {
      std::printf("%s\n", line->c_str());
    } else {
      auto ev = json::parse(*line, nullptr, false);
      if (ev.is_discarded() || !ev.is_object()) continue;
      // The reason when there is one, else the policy's verdict (unknown-digest, ...).
      std::string why = ev.value("reason", "");
      if (why.empty()) why = ev.value("judged", "");
      std::printf("%s %-9s %s %s%s%s\n", ev.value("container", "").c_str(),
                  ev.value("kind", "").c_str(), ev.value("exec", false) ? "exec" : "open",
                  printable(ev.value("path", ""), 512).c_str(), why.empty() ? "" : ": ",
                  why.c_str());
    }
    std::fflush(stdout);
  }
  return kExitOk;
}

struct LoadArgs {
  std::string socket = agent::kDefaultSocket;
  std::string file;
  bool json = false;
};

int run_load(const LoadArgs& args) {
  char resolved[PATH_MAX];
  if (::realpath(args.file.c_str(), resolved) == nullptr) {
    return report_error(errno_error("policy file " + args.file, errno));
  }
  auto answer =
      agent::control_call(args.socket, {{"op", "policy_load"}, {"path", resolved}}, 60000);
  if (!answer) return report_error(answer.error());
  const auto& p = (*answer)["policy"];
  if (args.json) {
    print_json(p);
  } else {
    std::printf("loaded policy %s (serial %llu, %llu entries, mode %s) %s\n",
                p.value("name", "").c_str(),
                static_cast<unsigned long long>(p.value("serial", 0ULL)),
                static_cast<unsigned long long>(p.value("entries", 0ULL)),
                p.value("mode", "").c_str(), p.value("digest", "").c_str());
  }
  return kExitOk;
}

void add_socket(CLI::App* c, std::string& socket) {
  c->add_option("--socket", socket, "ctrustd's control socket")->capture_default_str();
}

}  // namespace

void register_hook_command(CLI::App& app, Context& ctx) {
  auto hook = std::make_shared<HookArgs>();
  CLI::App* h = app.add_subcommand(
      "hook", "OCI runtime hook: hand a container to ctrustd (reads the OCI state on stdin)");
  add_hook_options(h, *hook);
  h->callback([hook, &ctx] { ctx.exit_code = run_hook(*hook); });
}

void register_agent_commands(CLI::App& app, Context& ctx) {
  register_hook_command(app, ctx);

  auto ps = std::make_shared<PsArgs>();
  CLI::App* p = app.add_subcommand("ps", "Containers that ctrustd measures, with their counts");
  add_socket(p, ps->socket);
  p->add_flag("--json", ps->json, "Print JSON");
  p->callback([ps, &ctx] { ctx.exit_code = run_ps(*ps); });

  auto events = std::make_shared<EventsArgs>();
  CLI::App* e = app.add_subcommand("events", "Denials and violations, live, from ctrustd");
  add_socket(e, events->socket);
  e->add_flag("--follow,-f", events->follow, "Stream events as they happen");
  e->add_flag("--json", events->json, "One JSON object per line");
  e->add_option("--count", events->count, "Stop after this many events");
  e->callback([events, &ctx] { ctx.exit_code = run_events(*events); });

  auto load = std::make_shared<LoadArgs>();
  CLI::App* pol = app.get_subcommand("policy");
  CLI::App* l = pol->add_subcommand(
      "load", "Give a signed policy to ctrustd (verified there, kept across restarts)");
  l->add_option("policy", load->file, "Policy file")->required()->check(CLI::ExistingFile);
  add_socket(l, load->socket);
  l->add_flag("--json", load->json, "Print JSON");
  l->callback([load, &ctx] { ctx.exit_code = run_load(*load); });
}

}  // namespace ctrust::cli
