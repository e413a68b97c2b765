#include "verifier/config.h"

#include <sys/stat.h>

#include <algorithm>

#include "util/file.h"
#include "util/toml_section.h"

namespace ctrust::verifier {

Result<VerifierConfig> parse_config(std::string_view text, const std::string& origin) {
  CTRUST_ASSIGN_OR_RETURN(toml::table root, parse_toml(text, origin));
  static const char* const kSections[] = {"attestation", "trust", "reference", "webhooks", "api"};
  for (const char* section : kSections) {
    const toml::node* node = root.get(section);
    if (node != nullptr && !node->is_table()) {
      return Error(Errc::kFormat, origin + ": " + section + " must be a table ([" + section + "])");
    }
  }
  VerifierConfig c;
  TomlSection top(&root, "", origin);
  CTRUST_TRY(top.string("state_dir", c.state_dir));
  CTRUST_TRY(top.string("listen", c.listen));
  CTRUST_TRY(top.string("store", c.store));
  CTRUST_TRY(top.string("id", c.id));
  CTRUST_TRY(top.string("log_level", c.log_level));
  CTRUST_TRY(top.string("ear_key", c.ear_key));
  for (const char* section : kSections) top.known(section);
  CTRUST_TRY(top.no_unknown_keys());

  TomlSection att(subtable(root, "attestation"), "attestation", origin);
  CTRUST_TRY(att.number("interval", c.interval, 1, 86400));
  CTRUST_TRY(att.number("concurrency", c.concurrency, 1, 4096));
  CTRUST_TRY(att.number("timeout_ms", c.timeout_ms, 100, 600000));
  CTRUST_TRY(att.number("lease", c.lease, 5, 86400));
  CTRUST_TRY(att.boolean("start_paused", c.start_paused));
  CTRUST_TRY(att.no_unknown_keys());

  TomlSection trust(subtable(root, "trust"), "trust", origin);
  CTRUST_TRY(trust.strings("ek_ca", c.ek_ca));
  CTRUST_TRY(trust.strings("ek_pins", c.ek_pins));
  CTRUST_TRY(trust.strings("policy_trust", c.policy_trust));
  CTRUST_TRY(trust.boolean("allow_unsigned_policies", c.allow_unsigned_policies));
  CTRUST_TRY(trust.no_unknown_keys());

  TomlSection ref(subtable(root, "reference"), "reference", origin);
  CTRUST_TRY(ref.strings("agent_binaries", c.agent_binaries));
  CTRUST_TRY(ref.strings("agent_configs", c.agent_configs));
  CTRUST_TRY(ref.strings("bpf_objects", c.bpf_objects));
  CTRUST_TRY(ref.no_unknown_keys());

  TomlSection hooks(subtable(root, "webhooks"), "webhooks", origin);
  CTRUST_TRY(hooks.strings("urls", c.webhooks));
  CTRUST_TRY(hooks.number("timeout_ms", c.webhook_timeout_ms, 100, 600000));
  CTRUST_TRY(hooks.no_unknown_keys());

  TomlSection api(subtable(root, "api"), "api", origin);
  auto rate = static_cast<std::size_t>(c.api_rate);
  CTRUST_TRY(api.number("rate", rate, 1, 1000000));
  c.api_rate = static_cast<double>(rate);
  CTRUST_TRY(api.number("max_body", c.api_max_body, 1024, std::int64_t{1} << 30));
  CTRUST_TRY(api.no_unknown_keys());

  if (c.state_dir.empty() || c.state_dir[0] != '/') {
    return Error(Errc::kFormat, origin + ": state_dir must be an absolute path");
  }
  if (!c.ear_key.empty() && c.ear_key[0] != '/') {
    return Error(Errc::kFormat, origin + ": ear_key must be an absolute path");
  }
  const std::pair<const char*, const std::vector<std::string>*> digests[] = {
      {"trust.ek_pins", &c.ek_pins},
      {"reference.agent_binaries", &c.agent_binaries},
      {"reference.agent_configs", &c.agent_configs},
      {"reference.bpf_objects", &c.bpf_objects}};
  for (const auto& [key, list] : digests) {
    for (const auto& v : *list) {
      bool ok = v.size() == 71 && v.rfind("sha256:", 0) == 0 &&
                v.find_first_not_of("0123456789abcdef", 7) == std::string::npos;
      if (!ok) {
        return Error(Errc::kFormat, origin + ": " + key + ": " + std::string(v) +
                                        " is not sha256: followed by 64 lowercase hex digits");
      }
    }
  }
  for (const auto& url : c.webhooks) {
    if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0) {
      return Error(Errc::kFormat,
                   origin + ": webhooks.urls: " + std::string(url) + " is not an http(s) URL");
    }
  }
  CTRUST_TRY(check_log_level(c.log_level, origin));
  return c;
}

Result<VerifierConfig> load_config(const std::string& path, bool must_exist) {
  CTRUST_ASSIGN_OR_RETURN(std::optional<std::string> text, read_config_text(path, must_exist));
  if (!text) return VerifierConfig{};
  return parse_config(*text, path);
}

}  // namespace ctrust::verifier
