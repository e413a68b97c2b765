#include "agent/exec_guard.h"

namespace ctrust::agent {

std::string ExecGuard::container_path(const std::string& path) const {
  if (root_.empty() || path.compare(0, root_.size(), root_) != 0) return path;
  std::string rest = path.substr(root_.size());
  return rest.empty() || rest[0] != '/' ? "/" + rest : rest;
}

ExecDecision ExecGuard::decide(const events::PermissionEvent& event) {
  ++counters_.events;
  ExecDecision d;
  d.path = container_path(event.path);
  if (mode_ == policy::Mode::kOff) {
    d.verdict = events::Verdict::kAllow;
    ++counters_.allowed;
    return d;
  }
  bool enforce = mode_ == policy::Mode::kEnforce;
  auto fail = [&](std::string why) {
    ++counters_.errors;
    d.error = std::move(why);
    // Fail-closed in enforce; the other modes never block, and say what they could not do.
    d.verdict = enforce ? events::Verdict::kDeny : events::Verdict::kAllow;
    ++(enforce ? counters_.denied : counters_.allowed);
    return d;
  };

  auto digest = crypto::digest_fd(crypto::HashAlg::kSha256, event.fd);
  if (!digest) return fail("hashing " + d.path + ": " + digest.error().message());
  d.digest = *digest;
  d.judged = policy_.check(d.digest, d.path);
  bool allowed = d.judged == policy::Verdict::kAllowed;
  if (enforce && !allowed) {
    d.verdict = events::Verdict::kDeny;
    ++counters_.denied;
    return d;
  }
  if (!allowed && mode_ == policy::Mode::kAudit) ++counters_.would_deny;

  // A measurement already logged (same content at the same path) is not built again.
  std::string key = d.path;
  key.push_back('\0');
  key.append(reinterpret_cast<const char*>(d.digest.bytes.data()), d.digest.size());
  if (!logged_.contains(key)) {
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
  d.verdict = events::Verdict::kAllow;
  ++counters_.allowed;
  return d;
}

}  // namespace ctrust::agent
