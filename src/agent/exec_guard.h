// The exec decision for one container: what the agent answers when the kernel asks
// whether a file may be executed (a fanotify permission event).
//
// For each event: hash the file through the event's descriptor (never by path), judge the
// digest and path against the container's compiled policy, record the measurement in the
// container's log, extended into its vTPM, before answering, then answer by mode:
//   enforce  allowed files run and are logged; anything else is denied (and not logged:
//            it did not run). A failure to hash or to log denies: fail-closed.
//   audit    everything runs and is logged; what enforce would deny is counted as such.
//   measure  everything runs and is logged.
//   off      everything runs; nothing is hashed or logged.
// A measurement already in the log (same content at the same path) is not logged again, as the
// kernel's IMA does.
//
// This first version hashes on every event; the verdict cache (issue 5) comes next.
// Thread safety: one thread decides for a container at a time.
#pragma once

#include <cstdint>
#include <set>
#include <string>

#include "agent/container_log.h"
#include "events/fanotify.h"
#include "policy/compiled.h"

namespace ctrust::agent {

struct ExecDecision {
  events::Verdict verdict = events::Verdict::kDeny;
  policy::Verdict judged = policy::Verdict::kUnknownDigest;
  crypto::Digest digest;
  std::string path;  // as the container sees it
  bool logged = false;
  std::string error;  // why hashing or logging failed, if it did
};

struct ExecCounters {
  std::uint64_t events = 0;
  std::uint64_t allowed = 0;
  std::uint64_t denied = 0;
  std::uint64_t would_deny = 0;  // audit mode
  std::uint64_t logged = 0;
  std::uint64_t errors = 0;
};

class ExecGuard {
 public:
  // `root` is stripped from event paths (the container's root as the agent sees it);
  // `log` may be null only in mode off.
  ExecGuard(const policy::CompiledPolicy& policy, policy::Mode mode, ContainerLog* log,
            std::string root = "")
      : policy_(policy), mode_(mode), log_(log), root_(std::move(root)) {}

  ExecDecision decide(const events::PermissionEvent& event);
  const ExecCounters& counters() const { return counters_; }

 private:
  std::string container_path(const std::string& path) const;

  const policy::CompiledPolicy& policy_;
  policy::Mode mode_;
  ContainerLog* log_;
  std::string root_;
  std::set<std::string> logged_;  // path NUL digest already measured (IMA's de-duplication)
  ExecCounters counters_;
};

}  // namespace ctrust::agent
