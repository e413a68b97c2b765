// The exec decision for one container: what the agent answers when the kernel asks
// whether a file may be executed or loaded (a fanotify permission event).
//
// For each event: the file is hashed through the event's descriptor (never by path), or
// its digest comes from the agent's DigestCache; the digest and path are judged against
// the container's compiled policy; the measurement is recorded in the container's log,
// extended into its vTPM, before the answer; then the answer is by mode:
//   enforce  allowed files run and are logged; anything else is denied (and not logged:
//            it did not run). A failure to hash or to log denies: fail-closed. A file
//            that someone has open for writing is denied too: what would run could
//            differ from what was hashed.
//   audit    everything runs and is logged; what enforce would deny is counted as such.
//   measure  everything runs and is logged.
//   off      everything runs; nothing is hashed or logged.
// In audit and measure, a file that had a writer when it ran is logged and followed by a
// violation record with the same name: the agent cannot vouch for what ran.
// A measurement already in the log (same content at the same path) is not logged again, as
// the kernel's IMA does.
//
// Thread safety: decide() and judge() may be called from several threads; judging and
// logging for one container are serialized inside, hashing is not.
#pragma once

#include <cstdint>
#include <mutex>
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
  bool violation = false;  // a violation record was logged (or, in enforce, the reason)
  std::string error;       // why hashing or logging failed, or why it could not be vouched for
};

struct ExecCounters {
  std::uint64_t events = 0;
  std::uint64_t allowed = 0;
  std::uint64_t denied = 0;
  std::uint64_t would_deny = 0;  // audit mode: distinct (path, content) enforce would deny
  std::uint64_t logged = 0;
  std::uint64_t violations = 0;
  std::uint64_t errors = 0;
};

// What the agent knows about the file of one event before judging it.
struct Measured {
  crypto::Digest digest;
  bool has_writers = false;  // open for writing (or mapped writable) when measured
};

class ExecGuard {
 public:
  // `root` is stripped from event paths (the container's root as the agent sees it);
  // `log` may be null only in mode off.
  ExecGuard(const policy::CompiledPolicy* policy, policy::Mode mode, ContainerLog* log,
            std::string root = "")
      : policy_(policy), mode_(mode), log_(log), root_(std::move(root)) {}
  ExecGuard(const policy::CompiledPolicy& policy, policy::Mode mode, ContainerLog* log,
            std::string root = "")
      : ExecGuard(&policy, mode, log, std::move(root)) {}

  // Hashes the event's file, then judges it.
  ExecDecision decide(const events::PermissionEvent& event);
  // Judges a file already measured (`measured`), or one that could not be (`hash_error`).
  ExecDecision judge(const std::string& event_path, const Result<Measured>& measured);

  policy::Mode mode() const { return mode_; }
  // A measurement already in the log (a restarted agent reading it back).
  void remember(const std::string& path, const crypto::Digest& digest);
  // A violation record for `name` in the log (what the BPF observers saw run unjudged),
  // serialized with the decisions' own appends.
  Result<void> record_violation(const std::string& name) {
    std::lock_guard lock(mutex_);
    return log_violation(name);
  }
  // Runs `f(log)` with the decisions' appends held off, e.g. to quote the vTPM consistently
  // with the log's length. `log` is null in mode off.
  template <typename F>
  auto with_log(F&& f) {
    std::lock_guard lock(mutex_);
    return f(log_);
  }
  // The path as the container sees it.
  std::string container_path(const std::string& path) const;
  ExecCounters counters() const;

 private:
  ExecDecision judge_locked(ExecDecision d, const Measured& m);
  // What logged_ holds for a measurement: path, NUL, digest bytes.
  static std::string logged_key(const std::string& path, const crypto::Digest& digest);
  Result<void> log_violation(const std::string& path);

  const policy::CompiledPolicy* policy_;  // null: nothing is listed
  policy::Mode mode_;
  ContainerLog* log_;
  std::string root_;
  mutable std::mutex mutex_;
  std::set<std::string> logged_;  // path NUL digest already measured (IMA's de-duplication)
  ExecCounters counters_;
};

}  // namespace ctrust::agent
