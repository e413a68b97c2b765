#include "agent/config.h"

#include <toml++/toml.h>

#include <sys/stat.h>
#include <set>
#include <sstream>

#include "util/file.h"

namespace ctrust::agent {
namespace {

// Reads one section's keys, refusing unknown ones and wrong types.
class Section {
 public:
  Section(const toml::table* table, std::string name, std::string origin)
      : table_(table), name_(std::move(name)), origin_(std::move(origin)) {}

  Result<void> string(const char* key, std::string& out) {
    return get<std::string>(key, "a string", [&](const std::string& v) {
      out = v;
      return ok_result();
    });
  }
  Result<void> boolean(const char* key, bool& out) {
    return get<bool>(key, "true or false", [&](bool v) {
      out = v;
      return ok_result();
    });
  }
  template <typename T>
  Result<void> number(const char* key, T& out, std::int64_t min, std::int64_t max) {
    return get<std::int64_t>(key, "an integer", [&](std::int64_t v) -> Result<void> {
      if (v < min || v > max) {
        return error(key, "must be from " + std::to_string(min) + " to " + std::to_string(max));
      }
      out = static_cast<T>(v);
      return ok_result();
    });
  }
  Result<void> strings(const char* key, std::vector<std::string>& out) {
    seen_.insert(key);
    if (table_ == nullptr) return ok_result();
    const toml::node* node = table_->get(key);
    if (node == nullptr) return ok_result();
    const toml::array* array = node->as_array();
    if (array == nullptr) return error(key, "must be an array of strings");
    out.clear();
    for (const auto& item : *array) {
      auto v = item.value<std::string>();
      if (!v || !item.is_string()) return error(key, "must be an array of strings");
      out.push_back(*v);
    }
    return ok_result();
  }
  Result<void> mode(const char* key, policy::Mode& out) {
    if (table_ == nullptr || table_->get(key) == nullptr) {
      seen_.insert(key);
      return ok_result();
    }
    std::string text;
    CTRUST_TRY(string(key, text));
    auto m = policy::parse_mode(text);  // "" is not a mode either
    if (!m) return error(key, "must be off, measure, audit or enforce");
    out = *m;
    return ok_result();
  }
  // A key read elsewhere (a sub-table).
  void known(const char* key) { seen_.insert(key); }
  // Every key of the section must have been asked for.
  Result<void> no_unknown_keys() {
    if (table_ == nullptr) return ok_result();
    for (const auto& [k, v] : *table_) {
      if (!seen_.contains(std::string(k.str()))) {
        return Error(Errc::kFormat, origin_ + ": unknown key " + qualified(std::string(k.str())));
      }
    }
    return ok_result();
  }

 private:
  std::string qualified(const std::string& key) const {
    return name_.empty() ? key : name_ + "." + key;
  }
  Error error(const std::string& key, const std::string& what) const {
    return Error(Errc::kFormat, origin_ + ": " + qualified(key) + " " + what);
  }
  template <typename T, typename F>
  Result<void> get(const char* key, const char* kind, F&& apply) {
    seen_.insert(key);
    if (table_ == nullptr) return ok_result();
    const toml::node* node = table_->get(key);
    if (node == nullptr) return ok_result();
    bool right_type = false;
    if constexpr (std::is_same_v<T, std::string>) right_type = node->is_string();
    if constexpr (std::is_same_v<T, bool>) right_type = node->is_boolean();
    if constexpr (std::is_same_v<T, std::int64_t>) right_type = node->is_integer();
    if (!right_type) return error(key, std::string("must be ") + kind);
    return apply(*node->value<T>());
  }

  const toml::table* table_;
  std::string name_;
  std::string origin_;
  std::set<std::string> seen_;
};

const toml::table* subtable(const toml::table& root, const char* name) {
  const toml::node* node = root.get(name);
  return node == nullptr ? nullptr : node->as_table();
}

}  // namespace

Result<AgentConfig> parse_config(std::string_view text, const std::string& origin) {
  toml::table root;
  try {
    root = toml::parse(text, origin);
  } catch (const toml::parse_error& e) {
    std::ostringstream where;
    where << e.source().begin.line << ":" << e.source().begin.column;
    return Error(Errc::kFormat, origin + ":" + where.str() + ": " + std::string(e.description()));
  } catch (const std::exception& e) {
    // toml++ throws only parse_error for bad input; anything else (bad_alloc) must not
    // cross the module boundary either.
    return Error(Errc::kFormat, origin + ": " + e.what());
  }
  for (const char* section : {"host_tpm", "containers", "policies", "vtpm", "enforcement"}) {
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
  for (const char* section : {"host_tpm", "containers", "policies", "vtpm", "enforcement"}) {
    top.known(section);
  }
  CTRUST_TRY(top.no_unknown_keys());

  Section host(subtable(root, "host_tpm"), "host_tpm", origin);
  CTRUST_TRY(host.string("tcti", c.host_tcti));
  CTRUST_TRY(host.number("pcr", c.host_pcr, 0, 23));
  CTRUST_TRY(host.no_unknown_keys());

  Section containers(subtable(root, "containers"), "containers", origin);
  CTRUST_TRY(containers.mode("default_mode", c.default_mode));
  CTRUST_TRY(containers.string("default_policy", c.default_policy));
  CTRUST_TRY(containers.boolean("annotations_may_weaken", c.annotations_may_weaken));
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
  CTRUST_TRY(enforcement.number("cache_entries", c.cache_entries, 1, 1 << 20));
  CTRUST_TRY(enforcement.boolean("bpf", c.bpf));
  CTRUST_TRY(enforcement.boolean("kill_unvouched", c.kill_unvouched));
  CTRUST_TRY(enforcement.no_unknown_keys());

  static const std::set<std::string> kLevels = {"trace", "debug", "info", "warn", "error", "off"};
  if (!kLevels.contains(c.log_level)) {
    return Error(Errc::kFormat,
                 origin + ": log_level must be trace, debug, info, warn, error or off");
  }
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
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 && errno == ENOENT && !must_exist) return AgentConfig{};
  CTRUST_ASSIGN_OR_RETURN(Bytes bytes, read_file(path, std::size_t{1} << 20));
  return parse_config(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()),
                      path);
}

}  // namespace ctrust::agent
