// A container as the agent holds it while it runs (docs/AGENT.md), and the small facts
// about files and processes that the agent's components share.
//
// Internal to ctrustd (src/agent); not an interface of the library.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/cgroup.h"
#include "agent/container_log.h"
#include "agent/exec_guard.h"
#include "crypto/digest.h"
#include "policy/compiled.h"
#include "policy/policy.h"
#include "tpm/vtpm.h"
#include "util/result.h"
#include "util/unique_handle.h"

namespace ctrust::agent {

std::int64_t now_seconds();

// statx of an open descriptor: type, device, inode, mount id, mount-root flag.
struct FileId {
  std::uint32_t mode = 0;
  dev_t dev = 0;
  ino_t ino = 0;
  std::uint64_t mnt_id = 0;
  bool mount_root = false;
  struct timespec ctime {};  // what the exec gate checks the inode against
  std::uint64_t size = 0;
};
Result<FileId> file_id(int fd);

// The inode number of a process's mount namespace (0 when it is gone).
ino_t mount_ns(pid_t pid);

struct LoadedPolicy {
  std::string name;
  std::string path;
  crypto::Digest digest;  // SHA-256 of the file
  policy::Policy policy;
  std::optional<policy::CompiledPolicy> compiled;
  std::string signer;
};

// One fanotify mark the agent put on a mount (or a filesystem) a container can run from.
struct Mark {
  UniqueFd fd;  // O_PATH on the marked object
  bool filesystem = false;
  std::string what;
  std::string dest;  // where the container sees it ("/" for its root)
  std::uint64_t mnt_id = 0;
  dev_t dev = 0;
  // An overlayfs mount: its upper directory (O_PATH). A writable mapping of an overlay
  // file holds the real upper file, not the overlay inode, so the digest cache leases both.
  UniqueFd upper;
  bool no_cache = false;   // overlay whose upper directory the agent cannot reach
  bool exec_only = false;  // opens are not asked about (a tmpfs: see mark_container)
  // Verdicts may be cached in the kernel (ignore marks) only for files no other container
  // can reach: an overlay or tmpfs of this container's own, whose device no other mark has.
  std::shared_ptr<std::atomic<bool>> kernel_cache = std::make_shared<std::atomic<bool>>(false);
};

struct Container {
  std::uint64_t number = 0;  // the agent's own, unique while it runs (the gate's key)
  std::string id;
  std::string bundle;
  pid_t pid = 0;
  ino_t mnt_ns = 0;
  std::string rootfs;  // host path
  std::string cgroup;
  std::vector<std::string> namespaces;
  crypto::Digest image = crypto::Digest::zero(crypto::HashAlg::kSha256);
  std::shared_ptr<LoadedPolicy> policy;
  policy::Mode mode = policy::Mode::kMeasure;
  tpm::VtpmInfo vtpm;
  std::string log_path;
  std::unique_ptr<ContainerLog> log;
  std::unique_ptr<ExecGuard> guard;
  std::vector<Mark> marks;
  std::int64_t created = 0;
  // The exec gate (docs/EXEC_PATH.md): the container's cgroup v2, and whether the kernel
  // checks its execs and executable mappings against what the agent vouched for.
  ContainerCgroup cgroup_v2;
  bool gated = false;
  // A deferred start (AgentImpl::create): the host record of its creation, not yet written.
  std::mutex settle_mutex;
  std::optional<nlohmann::json> unrecorded;
};

}  // namespace ctrust::agent
