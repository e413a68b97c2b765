#include "policy/check.h"

#include "util/hex.h"
#include "util/text.h"

namespace ctrust::policy {

Result<LogJudgement> judge_log(imalog::EntrySource& source, const CompiledPolicy& policy) {
  LogJudgement j;
  imalog::Entry e;
  for (;;) {
    CTRUST_ASSIGN_OR_RETURN(bool more, source.next(e));
    if (!more) break;
    std::uint64_t index = j.entries++;
    auto fields = imalog::parse_fields(e);
    if (!fields) return std::move(fields).error().with_context("entry " + std::to_string(index));
    Violation v;
    v.index = index;
    v.path = std::string(fields->name);
    if (!fields->file_digest.empty()) {
      v.digest = std::string(fields->digest_alg) + ":" + to_hex(fields->file_digest);
    }
    if (e.is_violation()) {
      v.rule = "violation-record";
      v.reason =
          "the kernel logged a violation: it could not vouch for what was read "
          "(a file open for writing while executed, or measured and then changed)";
      j.violations.push_back(std::move(v));
      continue;
    }
    CTRUST_ASSIGN_OR_RETURN(crypto::Digest td, imalog::template_digest(e, e.template_digest.alg));
    if (!(td == e.template_digest)) {
      v.rule = "template-digest";
      v.reason = "the entry's template digest does not match its data: the entry was altered";
      j.violations.push_back(std::move(v));
      continue;
    }
    // The kernel logs the boot aggregate as the first entry only; later, a file whose path
    // cannot be built is logged by its bare name, so a later "boot_aggregate" is a file.
    if ((index == 0 && fields->name == "boot_aggregate") || e.template_name == "ima-buf") {
      ++j.skipped;
      continue;
    }
    if (fields->digest_type == "verity") {
      v.rule = "unsupported-digest";
      v.reason = "an fs-verity digest; policies list plain file digests";
      j.violations.push_back(std::move(v));
      continue;
    }
    auto digest = fields->file_digest_value();
    if (!digest) {
      v.rule = "unsupported-digest";
      v.reason = "unknown digest algorithm \"" + printable(fields->digest_alg, 32) + "\"";
      j.violations.push_back(std::move(v));
      continue;
    }
    switch (policy.check(*digest, fields->name)) {
      case Verdict::kAllowed:
        ++j.allowed;
        break;
      case Verdict::kExcluded:
        ++j.excluded;
        break;
      case Verdict::kUnknownDigest:
        v.rule = "unknown-digest";
        v.reason = "the digest is not in the policy";
        j.violations.push_back(std::move(v));
        break;
      case Verdict::kWrongPath: {
        v.rule = "wrong-path";
        v.reason = "the digest is allowed only at";
        for (const std::string& p : policy.paths_for(*digest)) v.reason += " " + printable(p, 200);
        j.violations.push_back(std::move(v));
        break;
      }
    }
  }
  return j;
}

}  // namespace ctrust::policy
