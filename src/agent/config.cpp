#include "agent/config.h"

#include <sys/stat.h>
#include <set>
#include <sstream>

#include "util/file.h"
#include "util/toml_section.h"

namespace ctrust::agent {
namespace {

using Section = TomlSection;

// A mode key of a section: off, measure, audit or enforce.
Result<void> read_mode(TomlSection& section, const char* key, policy::Mode& out) {
  if (!section.has(key)) {
    section.known(key);
    return ok_result();
  }
  std::string text;
  CTRUST_TRY(section.string(key, text));
  auto m = policy::parse_mode(text);  // "" is not a mode either
  if (!m) return section.error(key, "must be off, measure, audit or enforce");
  out = *m;
  return ok_result();
}

}  // namespace

Result<AgentConfig> parse_config(std::string_view text, const std::string& origin) {
  CTRUST_ASSIGN_OR_RETURN(toml::table root, parse_toml(text, origin));
  for (const char* section : {"host_tpm", "containers", "policies", "vtpm", "enforcement", "api"}) {
    const toml::node* node = root.get(section);
    if (node != nullptr && !node->is_table()) {
      return Error(Errc::kFormat, origin + ": " + section + " must be a table ([" + section + "])");
    }
  }
  AgentConfig c;
  Section top(&root, "", origin);
  CTRUST_TRY(top.string("state_dir", c.state_dir));
  CTRUST_TRY(top.string("socket", c.socket));
  CTRUST_TRY(top.string("log_level", c.log_level));
  for (const char* section : {"host_tpm", "containers", "policies", "vtpm", "enforcement", "api"}) {
    top.known(section);
  }
  CTRUST_TRY(top.no_unknown_keys());

  Section host(subtable(root, "host_tpm"), "host_tpm", origin);
  CTRUST_TRY(host.string("tcti", c.host_tcti));
  CTRUST_TRY(host.number("pcr", c.host_pcr, 0, 23));
  CTRUST_TRY(host.no_unknown_keys());

  Section containers(subtable(root, "containers"), "containers", origin);
  CTRUST_TRY(read_mode(containers, "default_mode", c.default_mode));
  CTRUST_TRY(containers.string("default_policy", c.default_policy));
  CTRUST_TRY(containers.boolean("annotations_may_weaken", c.annotations_may_weaken));
  CTRUST_TRY(containers.strings("discover", c.discover));
  CTRUST_TRY(containers.strings("runtime_roots", c.runtime_roots));
  CTRUST_TRY(containers.string("discover_unknown", c.discover_unknown));
  if (c.discover_unknown != "refuse" && c.discover_unknown != "admit") {
    return containers.error("discover_unknown", "must be refuse or admit");
  }
  for (const auto& d : c.discover) {
    if (d.empty() || d[0] != '/' || d.find("/..") != std::string::npos) {
      return containers.error("discover",
                              "each entry is a cgroup v2 path from the hierarchy's root, such as "
                              "\"/kubepods.slice\"");
    }
  }
  for (const auto& r : c.runtime_roots) {
    if (r.empty() || r[0] != '/') {
      return containers.error("runtime_roots", "each entry must be an absolute path");
    }
  }
  CTRUST_TRY(containers.no_unknown_keys());

  Section policies(subtable(root, "policies"), "policies", origin);
  CTRUST_TRY(policies.string("dir", c.policy_dir));
  CTRUST_TRY(policies.strings("trust", c.policy_trust));
  CTRUST_TRY(policies.boolean("allow_unsigned", c.allow_unsigned_policies));
  CTRUST_TRY(policies.no_unknown_keys());

  Section vtpm(subtable(root, "vtpm"), "vtpm", origin);
  CTRUST_TRY(vtpm.number("pool", c.vtpm_pool, 0, 64));
  CTRUST_TRY(vtpm.number("max", c.vtpm_max, 1, 4096));
  CTRUST_TRY(vtpm.boolean("archive_on_destroy", c.vtpm_archive));
  CTRUST_TRY(vtpm.no_unknown_keys());

  Section enforcement(subtable(root, "enforcement"), "enforcement", origin);
  CTRUST_TRY(enforcement.number("hash_threads", c.hash_threads, 1, 256));
  CTRUST_TRY(
      enforcement.number("hash_threads_per_container", c.hash_threads_per_container, 0, 256));
  CTRUST_TRY(enforcement.number("cache_entries", c.cache_entries, 1, 1 << 20));
  CTRUST_TRY(enforcement.number("image_cache_entries", c.image_cache_entries, 0, 1 << 20));
  CTRUST_TRY(enforcement.number("max_file_bytes", c.max_file_bytes, std::int64_t{1} << 20,
                                std::int64_t{1} << 40));
  CTRUST_TRY(enforcement.boolean("bpf", c.bpf));
  CTRUST_TRY(enforcement.boolean("kill_unvouched", c.kill_unvouched));
  CTRUST_TRY(enforcement.string("backend", c.backend));
  if (c.backend != "auto" && c.backend != "bpf-lsm" && c.backend != "fanotify") {
    return enforcement.error("backend", "must be auto, bpf-lsm or fanotify");
  }
  if (!c.discover.empty() && !c.bpf) {
    return Error(Errc::kFormat, origin +
                                    ": containers.discover needs the BPF programs (enforcement.bpf "
                                    "= true): the exec gate holds what it finds");
  }
  if (c.backend == "bpf-lsm" && !c.bpf) {
    return enforcement.error("backend", "bpf-lsm needs the BPF programs (bpf = true)");
  }
  CTRUST_TRY(enforcement.no_unknown_keys());

  Section api(subtable(root, "api"), "api", origin);
  CTRUST_TRY(api.string("listen", c.api_listen));
  CTRUST_TRY(api.strings("client_ca", c.api_client_ca));
  CTRUST_TRY(api.string("agent_id", c.agent_id));
  auto rate = static_cast<std::size_t>(c.api_rate);
  CTRUST_TRY(api.number("rate", rate, 1, 100000));
  c.api_rate = static_cast<double>(rate);
  CTRUST_TRY(api.number("max_body", c.api_max_body, 1024, 16u << 20));
  CTRUST_TRY(api.no_unknown_keys());
  if (!c.api_listen.empty() && c.api_client_ca.empty()) {
    return Error(Errc::kFormat, origin +
                                    ": api.listen needs api.client_ca (the CAs of the verifiers "
                                    "allowed to connect): the API never runs without client "
                                    "certificates");
  }

  CTRUST_TRY(check_log_level(c.log_level, origin));
  for (const auto& [key, p] :
       {std::pair{"state_dir", &c.state_dir}, std::pair{"socket", &c.socket}}) {
    if (p->empty() || (*p)[0] != '/') {
      return Error(Errc::kFormat, origin + ": " + key + " must be an absolute path");
    }
  }
  if (!c.policy_dir.empty() && c.policy_dir[0] != '/') {
    return Error(Errc::kFormat, origin + ": policies.dir must be an absolute path");
  }
  if (c.host_pcr == 10) {
    return Error(Errc::kFormat, origin +
                                    ": host_tpm.pcr 10 is the kernel IMA's; pick another "
                                    "(default 13, docs/AGENT.md says why)");
  }
  return c;
}

Result<AgentConfig> load_config(const std::string& path, bool must_exist) {
  CTRUST_ASSIGN_OR_RETURN(std::optional<std::string> text, read_config_text(path, must_exist));
  if (!text) return AgentConfig{};
  return parse_config(*text, path);
}

}  // namespace ctrust::agent
