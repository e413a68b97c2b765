// `ctrust vtpm`: operators' view of the per-container vTPMs (docs/cli/vtpm.md). The agent
// uses the same manager; these commands work on its state directory directly.
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>

#include "cmd/ctrust/cli.h"
#include "tpm/vtpm.h"

namespace ctrust::cli {
namespace {

constexpr const char* kDefaultRoot = "/var/lib/ctrust/vtpm";

struct Common {
  std::string root;
  bool json = false;
};

std::string resolve_root(const std::string& option) {
  if (!option.empty()) return option;
  const char* env = std::getenv("CTRUST_VTPM_ROOT");
  return env != nullptr && *env != '\0' ? env : kDefaultRoot;
}

void add_common(CLI::App* cmd, Common& common) {
  cmd->add_option("--root", common.root,
                  "vTPM state directory (default: $CTRUST_VTPM_ROOT, else /var/lib/ctrust/vtpm)");
  cmd->add_flag("--json", common.json, "Print JSON");
}

Result<std::unique_ptr<tpm::VtpmManager>> open_manager(const Common& common, std::size_t max,
                                                       bool archive) {
  ::setenv("TSS2_LOG", "all+none", 0);
  tpm::VtpmConfig config;
  config.root = resolve_root(common.root);
  config.pool_size = 0;        // a one-shot command keeps no pool
  config.manage_pool = false;  // and leaves the agent's alone
  config.max = max;
  config.archive_on_destroy = archive;
  config.resume_suspended = false;  // only `resume` (or the agent) restarts them
  return tpm::VtpmManager::open(config);
}

nlohmann::json info_json(const tpm::VtpmInfo& info) {
  return {{"container", info.container}, {"status", tpm::vtpm_status_name(info.status)},
          {"detail", info.detail},       {"pid", info.pid},
          {"tcti", info.tcti},           {"state_dir", info.state_dir},
          {"ek_name", info.ek_name},     {"ak_name", info.ak_name},
          {"created", info.created}};
}

void print_info(const tpm::VtpmInfo& info) {
  std::cout << "container: " << info.container << '\n'
            << "status:    " << tpm::vtpm_status_name(info.status) << '\n';
  if (!info.detail.empty()) std::cout << "detail:    " << info.detail << '\n';
  std::cout << "pid:       " << info.pid << '\n'
            << "tcti:      " << info.tcti << '\n'
            << "ek name:   " << info.ek_name << '\n'
            << "ak name:   " << info.ak_name << '\n';
}

void print_result(const Common& common, const tpm::VtpmInfo& info) {
  if (common.json) {
    print_json(info_json(info));
  } else {
    print_info(info);
  }
}

int run_list(const Common& common) {
  auto manager = open_manager(common, 1 << 20, false);
  if (!manager) return report_error(manager.error());
  auto vtpms = (*manager)->list();
  bool any_dead = false;
  nlohmann::json doc = nlohmann::json::array();
  for (const auto& info : vtpms) {
    any_dead = any_dead || info.status == tpm::VtpmStatus::kDead;
    doc.push_back(info_json(info));
  }
  if (common.json) {
    print_json(doc);
  } else if (vtpms.empty()) {
    std::cout << "no vTPMs\n";
  } else {
    std::printf("%-32s %-10s %8s  %s\n", "CONTAINER", "STATUS", "PID", "TCTI");
    for (const auto& info : vtpms) {
      std::printf("%-32s %-10s %8d  %s\n", info.container.c_str(),
                  std::string(tpm::vtpm_status_name(info.status)).c_str(), info.pid,
                  info.tcti.c_str());
      if (!info.detail.empty()) std::printf("  %s\n", info.detail.c_str());
    }
  }
  // A dead vTPM is a condition operators must notice (and scripts can test for).
  return any_dead ? kExitRejected : kExitOk;
}

int run_create(const Common& common, const std::string& container, std::size_t max) {
  if (!tpm::valid_container_id(container)) {
    report_error("bad container id '" + container + "' (1-128 of A-Z a-z 0-9 _ . -)");
    return kExitUsage;
  }
  auto manager = open_manager(common, max, false);
  if (!manager) return report_error(manager.error());
  auto info = (*manager)->create(container);
  if (!info) return report_error(info.error());
  print_result(common, *info);
  return kExitOk;
}

int run_destroy(const Common& common, const std::string& container, bool archive) {
  auto manager = open_manager(common, 1 << 20, archive);
  if (!manager) return report_error(manager.error());
  if (auto done = (*manager)->destroy(container); !done) return report_error(done.error());
  if (common.json) {
    print_json({{"container", container}, {"destroyed", true}, {"archived", archive}});
  } else {
    std::cout << "destroyed the vTPM of " << container << (archive ? " (state archived)" : "")
              << '\n';
  }
  return kExitOk;
}

int run_suspend(const Common& common, const std::string& container) {
  auto manager = open_manager(common, 1 << 20, false);
  if (!manager) return report_error(manager.error());
  if (auto done = (*manager)->suspend(container); !done) return report_error(done.error());
  if (common.json) {
    print_json({{"container", container}, {"status", "suspended"}});
  } else {
    std::cout << "suspended the vTPM of " << container
              << "; `ctrust vtpm resume` or the agent's next start brings it back\n";
  }
  return kExitOk;
}

int run_resume(const Common& common, const std::string& container) {
  auto manager = open_manager(common, 1 << 20, false);
  if (!manager) return report_error(manager.error());
  auto info = (*manager)->resume(container);
  if (!info) return report_error(info.error());
  print_result(common, *info);
  return kExitOk;
}

}  // namespace

void register_vtpm_commands(CLI::App& app, Context& ctx) {
  auto* group = app.add_subcommand(
      "vtpm", "Per-container virtual TPMs: list, create, destroy, suspend, resume");
  group->require_subcommand(1);
  {
    auto common = std::make_shared<Common>();
    auto* cmd =
        group->add_subcommand("list", "List vTPMs with their status (exit 1 when one is dead)");
    add_common(cmd, *common);
    cmd->callback([common, &ctx] { ctx.exit_code = run_list(*common); });
  }
  {
    auto common = std::make_shared<Common>();
    auto container = std::make_shared<std::string>();
    auto max = std::make_shared<std::size_t>(256);
    auto* cmd = group->add_subcommand(
        "create", "Give a container a vTPM (EK certificate from the local vTPM CA, persistent AK)");
    add_common(cmd, *common);
    cmd->add_option("CONTAINER", *container, "Container id")->required();
    cmd->add_option("--max", *max, "Refuse when this many vTPMs exist (default 256)");
    cmd->callback(
        [common, container, max, &ctx] { ctx.exit_code = run_create(*common, *container, *max); });
  }
  {
    auto common = std::make_shared<Common>();
    auto container = std::make_shared<std::string>();
    auto archive = std::make_shared<bool>(false);
    auto* cmd = group->add_subcommand("destroy", "Stop a container's vTPM and delete its state");
    add_common(cmd, *common);
    cmd->add_option("CONTAINER", *container, "Container id")->required();
    cmd->add_flag("--archive", *archive, "Keep the state under ROOT/archive/ instead of deleting");
    cmd->callback([common, container, archive, &ctx] {
      ctx.exit_code = run_destroy(*common, *container, *archive);
    });
  }
  {
    auto common = std::make_shared<Common>();
    auto container = std::make_shared<std::string>();
    auto* cmd =
        group->add_subcommand("suspend", "Save a vTPM's PCRs and stop it (before a host shutdown)");
    add_common(cmd, *common);
    cmd->add_option("CONTAINER", *container, "Container id")->required();
    cmd->callback([common, container, &ctx] { ctx.exit_code = run_suspend(*common, *container); });
  }
  {
    auto common = std::make_shared<Common>();
    auto container = std::make_shared<std::string>();
    auto* cmd = group->add_subcommand("resume", "Restart a suspended vTPM with its saved PCRs");
    add_common(cmd, *common);
    cmd->add_option("CONTAINER", *container, "Container id")->required();
    cmd->callback([common, container, &ctx] { ctx.exit_code = run_resume(*common, *container); });
  }
}

}  // namespace ctrust::cli
