// What the OCI runtime tells the agent about a container: the runtime state a hook reads
// on standard input (runtime-spec "State") and the bundle's config.json, reduced to what
// ctrust needs, plus ctrust's own per-container settings from annotations.
//
// Both documents are untrusted input (a container's author controls config.json's
// annotations and mounts). Parsing is strict about everything it reads: duplicate keys,
// wrong types, absurd sizes and non-absolute paths are errors with the member named.
// Unknown members are ignored, as the runtime spec's extensibility requires. An invalid
// ctrust annotation is an error, never a silent fallback to a weaker mode.
//
// Thread safety: pure functions over values.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "policy/policy.h"
#include "util/result.h"

namespace ctrust::agent {

inline constexpr std::size_t kMaxOciDocument = std::size_t{4} << 20;

struct OciState {
  std::string oci_version;
  std::string id;
  std::string status;  // creating, created, running, stopped
  std::optional<int> pid;
  std::string bundle;  // absolute path
  std::map<std::string, std::string> annotations;
};
Result<OciState> parse_oci_state(std::string_view json);

struct OciMount {
  std::string destination;
  std::string type;
  std::string source;
  std::vector<std::string> options;
};
struct OciNamespace {
  std::string type;  // pid, network, mount, ipc, uts, user, cgroup, time
  std::string path;  // empty: a new namespace
};
struct OciConfig {
  std::string root_path;  // as written: absolute, or relative to the bundle
  bool root_readonly = false;
  std::vector<OciMount> mounts;
  std::vector<OciNamespace> namespaces;
  std::string cgroups_path;
  std::map<std::string, std::string> annotations;
};
Result<OciConfig> parse_oci_config(std::string_view json);

inline constexpr const char* kPolicyAnnotation = "io.ctrust.policy";
inline constexpr const char* kModeAnnotation = "io.ctrust.mode";

// ctrust's settings for one container from its annotations (io.ctrust.policy: a policy
// name or sha256:HEX digest; io.ctrust.mode: off|measure|audit|enforce).
struct ContainerSettings {
  std::optional<std::string> policy;
  std::optional<policy::Mode> mode;
};
Result<ContainerSettings> settings_from_annotations(
    const std::map<std::string, std::string>& annotations);

}  // namespace ctrust::agent
