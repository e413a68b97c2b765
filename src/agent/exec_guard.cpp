#include "agent/exec_guard.h"

namespace ctrust::agent {

std::string ExecGuard::logged_key(const std::string& path, const crypto::Digest& digest) {
  std::string key = path;
  key.push_back('\0');
  key.append(reinterpret_cast<const char*>(digest.bytes.data()), digest.size());
  return key;
}

void ExecGuard::remember(const std::string& path, const crypto::Digest& digest) {
  std::string key = logged_key(path, digest);
  std::lock_guard lock(mutex_);
  logged_.insert(std::move(key));
}

std::string ExecGuard::container_path(const std::string& path) const {
  if (root_.empty() || path.compare(0, root_.size(), root_) != 0) return path;
  std::string rest = path.substr(root_.size());
  return rest.empty() || rest[0] != '/' ? "/" + rest : rest;
}

ExecCounters ExecGuard::counters() const {
  std::lock_guard lock(mutex_);
  return counters_;
}

ExecDecision ExecGuard::decide(const events::PermissionEvent& event) {
  if (mode_ == policy::Mode::kOff) return judge(event.path, Measured{});
  auto digest = crypto::digest_fd(crypto::HashAlg::kSha256, event.fd);
  if (!digest) return judge(event.path, std::move(digest).error());
  return judge(event.path, Measured{*digest, false});
}

ExecDecision ExecGuard::judge(const std::string& event_path, const Result<Measured>& measured) {
  ExecDecision d;
  d.path = container_path(event_path);
  std::lock_guard lock(mutex_);
  ++counters_.events;
  if (mode_ == policy::Mode::kOff) {
    d.verdict = events::Verdict::kAllow;
    ++counters_.allowed;
    return d;
  }
  if (!measured) {
    bool enforce = mode_ == policy::Mode::kEnforce;
    ++counters_.errors;
    d.error = "hashing " + d.path + ": " + measured.error().message();
    d.verdict = enforce ? events::Verdict::kDeny : events::Verdict::kAllow;
    ++(enforce ? counters_.denied : counters_.allowed);
    if (!enforce) {
      // It runs and we could not measure it: the log must say so.
      if (log_violation(d.path)) d.violation = true;
    }
    return d;
  }
  return judge_locked(std::move(d), *measured);
}

Result<void> ExecGuard::log_violation(const std::string& path) {
  if (log_ == nullptr) return Error(Errc::kInternal, "no log for this container");
  CTRUST_ASSIGN_OR_RETURN(
      imalog::Entry v,
      imalog::make_violation("ima-ng", 10, path, crypto::HashAlg::kSha256, crypto::HashAlg::kSha1));
  CTRUST_TRY(log_->append(v));
  ++counters_.violations;
  return ok_result();
}

ExecDecision ExecGuard::judge_locked(ExecDecision d, const Measured& m) {
  bool enforce = mode_ == policy::Mode::kEnforce;
  auto fail = [&](std::string why) {
    ++counters_.errors;
    d.error = std::move(why);
    // Fail-closed in enforce; the other modes never block, and say what they could not do.
    d.verdict = enforce ? events::Verdict::kDeny : events::Verdict::kAllow;
    ++(enforce ? counters_.denied : counters_.allowed);
    return d;
  };

  d.digest = m.digest;
  d.judged =
      policy_ != nullptr ? policy_->check(d.digest, d.path) : policy::Verdict::kUnknownDigest;
  bool allowed = d.judged == policy::Verdict::kAllowed;
  if (enforce && (!allowed || m.has_writers)) {
    if (allowed) {
      d.violation = true;
      d.error = d.path + " is open for writing: what would run may not be what was measured";
    }
    d.verdict = events::Verdict::kDeny;
    ++counters_.denied;
    return d;
  }
  // A measurement already logged (same content at the same path) is not built again.
  std::string key = logged_key(d.path, d.digest);
  if (!logged_.contains(key)) {
    // Counted once per file content and path, as it is logged: an exec is asked about
    // twice (FAN_OPEN_EXEC_PERM, then FAN_OPEN_PERM) and must not count double.
    if (!allowed && mode_ == policy::Mode::kAudit) ++counters_.would_deny;
    if (log_ == nullptr) return fail("no log for this container");
    imalog::MeasurementSpec spec;
    spec.file_digest = d.digest;
    spec.name = d.path;
    auto entry = imalog::make_entry(spec, crypto::HashAlg::kSha1);
    if (!entry) return fail("recording " + d.path + ": " + entry.error().message());
    // Durable and in the vTPM before the exec may proceed.
    if (auto appended = log_->append(*entry); !appended) {
      return fail("logging " + d.path + ": " + appended.error().message());
    }
    logged_.insert(std::move(key));
    d.logged = true;
    ++counters_.logged;
  }
  if (m.has_writers) {
    // What runs may change under it: a violation record, every time it happens.
    if (auto v = log_violation(d.path); !v)
      return fail("logging a violation: " + v.error().message());
    d.violation = true;
    d.error = d.path + " was open for writing when it ran";
  }
  d.verdict = events::Verdict::kAllow;
  ++counters_.allowed;
  return d;
}

}  // namespace ctrust::agent
