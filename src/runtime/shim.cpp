#include "runtime/shim.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>

#include "util/json.h"
#include "util/toml_section.h"

namespace ctrust::runtime {
namespace {

using nlohmann::json;

// Global options of runc and crun that take a value (`--opt VALUE` or `--opt=VALUE`); any
// other option before the command is a flag.
constexpr std::array<std::string_view, 7> kValued = {
    "--root", "--log", "--log-format", "--criu", "--rootless", "--cgroup-manager", "--log-level"};

bool is_valued(std::string_view opt) {
  return std::find(kValued.begin(), kValued.end(), opt) != kValued.end();
}

// A hook entry ctrust put there: its program is ctrust-hook, or `ctrust hook STAGE`.
bool is_ctrust_hook(const json& h, const std::string& our_path) {
  if (!h.is_object()) return false;
  auto path = h.find("path");
  if (path == h.end() || !path->is_string()) return false;
  const auto& p = path->get_ref<const std::string&>();
  if (p == our_path) return true;
  auto slash = p.find_last_of('/');
  std::string base = slash == std::string::npos ? p : p.substr(slash + 1);
  if (base == "ctrust-hook") return true;
  auto args = h.find("args");
  if (base == "ctrust" && args != h.end() && args->is_array() && args->size() >= 2 &&
      (*args)[1].is_string() && (*args)[1].get_ref<const std::string&>() == "hook") {
    return true;
  }
  return false;
}

json hook_json(const std::string& path, const std::vector<std::string>& args) {
  return json{{"path", path}, {"args", args}};
}

}  // namespace

Result<ShimConfig> parse_shim_config(std::string_view text, const std::string& origin) {
  CTRUST_ASSIGN_OR_RETURN(toml::table root, parse_toml(text, origin));
  ShimConfig c;
  TomlSection top(&root, "", origin);
  CTRUST_TRY(top.string("runtime", c.runtime));
  CTRUST_TRY(top.string("hook", c.hook));
  CTRUST_TRY(top.string("socket", c.socket));
  CTRUST_TRY(top.boolean("fail_open", c.fail_open));
  CTRUST_TRY(top.number("timeout", c.timeout_s, 1, 3600));
  CTRUST_TRY(top.no_unknown_keys());
  if (c.runtime.empty()) return top.error("runtime", "must name the OCI runtime to run");
  if (c.socket.empty()) return top.error("socket", "must not be empty");
  if (!c.hook.empty() && c.hook[0] != '/') return top.error("hook", "must be an absolute path");
  return c;
}

Result<Invocation> parse_invocation(const std::vector<std::string>& args) {
  Invocation inv;
  std::size_t i = 0;
  // Global options, up to the command.
  for (; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.empty() || a[0] != '-' || a == "-") break;
    std::string name = a;
    std::string value;
    bool inline_value = false;
    if (auto eq = a.find('='); eq != std::string::npos && a.compare(0, 2, "--") == 0) {
      name = a.substr(0, eq);
      value = a.substr(eq + 1);
      inline_value = true;
    }
    if (name == "--ctrust-config") {
      if (!inline_value) {
        if (i + 1 >= args.size())
          return Error(Errc::kInvalidArgument, "--ctrust-config needs a path");
        value = args[++i];
      }
      if (value.empty()) return Error(Errc::kInvalidArgument, "--ctrust-config needs a path");
      inv.config_path = value;
      continue;  // ours: not for the real runtime
    }
    inv.runtime_args.push_back(a);
    if (is_valued(name) && !inline_value) {
      if (i + 1 >= args.size()) return Error(Errc::kInvalidArgument, name + " needs a value");
      value = args[++i];
      inv.runtime_args.push_back(value);
    }
    if (name == "--log") inv.log_path = value;
    if (name == "--log-format") inv.log_format = value;
    if (name == "--help" || name == "-h") inv.help = true;
    if (name == "--version" || name == "-v") inv.version = true;
  }
  if (i < args.size()) {
    inv.command = args[i];
    inv.command_index = inv.runtime_args.size();
    inv.help = false;
    inv.version = false;
  }
  for (; i < args.size(); ++i) inv.runtime_args.push_back(args[i]);
  if (inv.command == "create" || inv.command == "run") {
    // The bundle: --bundle/-b DIR or --bundle=DIR among the command's options.
    const auto& ra = inv.runtime_args;
    auto cmd = std::find(ra.begin(), ra.end(), inv.command);
    for (auto it = cmd + 1; it != ra.end(); ++it) {
      if (*it == "--") break;
      if (*it == "--bundle" || *it == "-b") {
        if (it + 1 == ra.end()) return Error(Errc::kInvalidArgument, *it + " needs a directory");
        inv.bundle = *(it + 1);
        ++it;
      } else if (it->rfind("--bundle=", 0) == 0) {
        inv.bundle = it->substr(9);
      } else if (it->rfind("-b=", 0) == 0) {
        inv.bundle = it->substr(3);
      }
    }
  }
  return inv;
}

Result<CreateArgs> parse_create_args(const Invocation& inv) {
  // Options of `create` that take a value (runc and crun); any other option is a flag.
  static constexpr std::array<std::string_view, 8> kCreateValued = {
      "--bundle", "-b", "--console-socket", "--pid-file", "--preserve-fds", "--pidfd-socket",
      "--config", "-f"};
  CreateArgs out;
  const auto& ra = inv.runtime_args;
  bool positional = false;
  for (std::size_t i = inv.command_index + 1; i < ra.size(); ++i) {
    const std::string& a = ra[i];
    if (!positional && a == "--") {
      positional = true;
      continue;
    }
    if (!positional && a.size() > 1 && a[0] == '-') {
      std::string name = a;
      std::string value;
      bool has_value = false;
      if (auto eq = a.find('='); eq != std::string::npos) {
        name = a.substr(0, eq);
        value = a.substr(eq + 1);
        has_value = true;
      }
      bool valued =
          std::find(kCreateValued.begin(), kCreateValued.end(), name) != kCreateValued.end();
      if (valued && !has_value) {
        if (i + 1 >= ra.size()) return Error(Errc::kInvalidArgument, name + " needs a value");
        value = ra[++i];
      }
      if (name == "--pid-file") out.pid_file = value;
      continue;
    }
    if (!out.id.empty()) {
      return Error(Errc::kInvalidArgument, "create takes one container id, not " + a + " too");
    }
    out.id = a;
  }
  if (out.id.empty()) return Error(Errc::kInvalidArgument, "create needs a container id");
  return out;
}

std::string created_state(const std::string& id, int pid, const std::string& bundle) {
  return json{{"ociVersion", "1.0.2"}, {"id", id},
              {"status", "created"},   {"pid", pid},
              {"bundle", bundle},      {"annotations", json::object()}}
      .dump(-1, ' ', false, json::error_handler_t::replace);
}

HookSpec hook_spec(const ShimConfig& config, const std::string& hook_path) {
  HookSpec s;
  s.path = hook_path;
  s.create_args = {"ctrust-hook", "createRuntime", "--socket",
                   config.socket, "--timeout",     std::to_string(config.timeout_s)};
  if (config.fail_open) s.create_args.emplace_back("--fail-open");
  return s;
}

Result<std::string> add_hooks(std::string_view config_json, const HookSpec& spec) {
  if (config_json.size() > kMaxBundleConfig) {
    return Error(Errc::kInvalidArgument, "config.json is larger than 16 MiB");
  }
  CTRUST_ASSIGN_OR_RETURN(json doc, parse_json_strict(config_json, 64));
  if (!doc.is_object()) return Error(Errc::kFormat, "config.json is not a JSON object");
  auto version = doc.find("ociVersion");
  if (version == doc.end() || !version->is_string()) {
    return Error(Errc::kFormat, "config.json has no ociVersion: not a runtime spec");
  }
  json& hooks = doc["hooks"];
  if (hooks.is_null()) hooks = json::object();
  if (!hooks.is_object()) return Error(Errc::kFormat, "config.json: hooks is not an object");
  auto stage = [&](const char* name) -> Result<json*> {
    json& list = hooks[name];
    if (list.is_null()) list = json::array();
    if (!list.is_array()) {
      return Error(Errc::kFormat, std::string("config.json: hooks.") + name + " is not an array");
    }
    json kept = json::array();
    for (auto& h : list) {
      if (!is_ctrust_hook(h, spec.path)) kept.push_back(std::move(h));
    }
    list = std::move(kept);
    return &list;
  };
  CTRUST_ASSIGN_OR_RETURN(json * create, stage("createRuntime"));
  create->insert(create->begin(), hook_json(spec.path, spec.create_args));
  // No poststop hook: the agent closes a container's books when its cgroup empties, and a
  // hook process there would hold the runtime for nothing. One left by an earlier version
  // is removed (a stage left empty is dropped, as runc writes it).
  CTRUST_ASSIGN_OR_RETURN(json * poststop, stage("poststop"));
  if (poststop->empty()) hooks.erase("poststop");
  try {
    return doc.dump(-1, ' ', false, json::error_handler_t::strict);
  } catch (const json::exception& e) {
    return Error(Errc::kFormat, std::string("config.json: ") + e.what());
  }
}

}  // namespace ctrust::runtime
