// Judging a measurement list against a policy (`ctrust log check`, and the verifier).
//
// Every file measurement is looked up in the compiled policy; the boot aggregate (the
// first entry, if so named) and
// buffer measurements (ima-buf) are not files and are counted as skipped. A violation
// record (the kernel could not vouch for a file), an entry whose template digest does not
// match its data, and a digest of fs-verity type are violations too: a log conforms only
// if every file it names is allowed.
//
// Thread safety: reentrant.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "imalog/source.h"
#include "policy/compiled.h"

namespace ctrust::policy {

struct Violation {
  std::uint64_t index = 0;  // 0-based entry number in the log
  std::string path;         // raw bytes as logged
  std::string digest;       // "alg:hex", or empty
  std::string rule;         // "unknown-digest", "wrong-path", "violation-record", ...
  std::string reason;       // one line for people
};

struct LogJudgement {
  std::uint64_t entries = 0;
  std::uint64_t allowed = 0;
  std::uint64_t excluded = 0;
  std::uint64_t skipped = 0;  // not file measurements
  std::vector<Violation> violations;
  bool conforms() const { return violations.empty(); }
};

Result<LogJudgement> judge_log(imalog::EntrySource& source, const CompiledPolicy& policy);

}  // namespace ctrust::policy
