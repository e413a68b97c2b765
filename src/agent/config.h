// ctrustd's configuration: a TOML file (default /etc/ctrust/ctrustd.toml), every key
// optional with the documented default (docs/AGENT.md, deploy/ctrustd.toml). Unknown keys
// and wrong types are errors naming the key, so a typo never silently weakens the agent.
//
// Thread safety: plain values.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "policy/policy.h"
#include "util/result.h"

namespace ctrust::agent {

inline constexpr const char* kDefaultConfigPath = "/etc/ctrust/ctrustd.toml";
inline constexpr const char* kDefaultSocket = "/run/ctrust/ctrustd.sock";

struct AgentConfig {
  std::string state_dir = "/var/lib/ctrust";
  std::string socket = kDefaultSocket;
  std::string log_level = "info";

  // The host TPM: a TCTI ("device:/dev/tpmrm0"), or "embedded": a swtpm that the agent
  // keeps under STATE/host-tpm (tests, demos, hosts without a TPM: no hardware root).
  std::string host_tcti = "embedded";
  unsigned host_pcr = 13;

  // Containers whose policy does not say (and whose annotations may not say otherwise).
  policy::Mode default_mode = policy::Mode::kMeasure;
  // A policy name applied to containers that name none and whose image no policy lists.
  std::string default_policy;
  // io.ctrust.mode may only make a container's mode stricter unless this is true.
  bool annotations_may_weaken = false;
  // Discovery (docs/AGENT.md, "Containers found without a hook"): cgroup v2 paths
  // ("/kubepods.slice", as in /proc/PID/cgroup) below which every new cgroup is a container. Its
  // first exec is held before its first instruction until the agent has registered it, so no hook
  // is needed. Empty: off (needs enforcement.bpf).
  std::vector<std::string> discover;
  // Where the runtimes keep their containers' state (runc's ROOT/ID/state.json, crun's
  // ROOT/ID/status): how discovery learns a held task's container id and bundle.
  std::vector<std::string> runtime_roots = {"/run/runc", "/run/crun", "/run/containerd/runc/k8s.io",
                                            "/run/containerd/runc/default",
                                            "/run/docker/runtime-runc/moby"};
  // A held task no runtime state accounts for: "refuse" (killed before its first
  // instruction) or "admit" (goes on unmeasured, reported, and its cgroup is not held again).
  std::string discover_unknown = "refuse";

  std::string policy_dir;                 // default STATE/policies
  std::vector<std::string> policy_trust;  // PEM files of trusted signer keys or CAs
  bool allow_unsigned_policies = false;   // for experiments only

  std::size_t vtpm_pool = 2;
  std::size_t vtpm_max = 256;
  bool vtpm_archive = true;

  unsigned hash_threads = 2;
  // Workers one container may hold at once; 0: hash_threads - 1 (at least 1), so that
  // another container's exec always finds a worker.
  unsigned hash_threads_per_container = 0;
  std::size_t cache_entries = 16384;  // files whose digests are cached (one descriptor each)
  // Image files whose fs-verity digests are kept across container starts (one descriptor
  // each; image_files.h); 0: none, every start hashes its whole image.
  std::size_t image_cache_entries = 16384;
  // The largest file hashed for a decision: one container cannot hold the workers with a
  // huge (or sparse) file that starts like an ELF object. Larger: denied in enforce, a
  // violation record elsewhere.
  std::uint64_t max_file_bytes = std::uint64_t{1} << 30;
  // The BPF programs: the exec gate (docs/EXEC_PATH.md), containers started without the
  // hook. When they cannot be loaded the agent does not start, unless this is false (then
  // there is no gate: execs and mappings that bypass fanotify are only noticed late).
  bool bpf = true;
  // What an exec the enforcement path never saw (a memfd, an unmarked mount) costs an
  // enforce container's process: it is killed (true), or only recorded as a violation.
  bool kill_unvouched = true;
  // Who refuses what the policy does not allow (docs/EXEC_PATH.md, "Backends"):
  //   "fanotify"  permission events judge first sightings; the tracepoint gate kills
  //               (SIGKILL) whatever bypassed them;
  //   "bpf-lsm"   the same events judge, and BPF LSM programs refuse with EPERM, before
  //               it runs, every exec and executable mapping the agent did not vouch for
  //               (kernels with CONFIG_BPF_LSM and "bpf" among the active LSMs); the agent
  //               does not start where they cannot load;
  //   "auto"      bpf-lsm where the kernel runs it, else fanotify (the log and `ctrust ps`
  //               say which).
  std::string backend = "auto";

  // The attestation API (docs/PROTOCOL.md): HTTPS with TLS 1.3 and client certificates.
  // Off while `api_listen` is empty. The TLS key and its self-signed certificate are made
  // under STATE/api on first start; verifiers pin the key, which the host AK vouches for.
  std::string api_listen;                  // "ADDRESS:PORT", e.g. "0.0.0.0:9443"
  std::vector<std::string> api_client_ca;  // PEM files: CAs of the verifiers' client certificates
  std::string agent_id;                    // the name the agent gives itself; default: host name
  double api_rate = 20;                    // requests per second per client address
  std::size_t api_max_body = std::size_t{256} * 1024;  // bytes of a request body

  // Derived paths.
  std::string vtpm_root() const { return state_dir + "/vtpm"; }
  std::string containers_dir() const { return state_dir + "/containers"; }
  std::string host_dir() const { return state_dir + "/host"; }
  std::string api_dir() const { return state_dir + "/api"; }
  std::string policies() const { return policy_dir.empty() ? state_dir + "/policies" : policy_dir; }
};

// Parses TOML text; `origin` names the file in errors.
Result<AgentConfig> parse_config(std::string_view text, const std::string& origin);
// Reads and parses a file; a missing file at the default path gives the defaults.
Result<AgentConfig> load_config(const std::string& path, bool must_exist);

}  // namespace ctrust::agent
