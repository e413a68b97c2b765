// A container's measurement log bound to its vTPM: the agent's record of what a container
// ran, in the kernel's binary IMA format, whose every entry is also extended into PCR 10
// of the container's own vTPM, so that a quote of that PCR vouches for the whole log.
//
// Order: each append() first makes the entries durable in the log file (LogWriter:
// written and fdatasync'ed), then extends each entry's template digest into the PCR in
// every bank the vTPM has active (a violation record extends all 0xFF, as the kernel
// does). A crash can therefore leave the log ahead of the PCR, never behind. open()
// reconciles: it replays the log and, when the PCR equals the replay of a prefix of the
// log, extends the missing tail; when it equals no prefix (the vTPM was changed behind
// the agent's back, or the log was), open() fails and says so: such a log can no longer
// be vouched for by that vTPM.
//
// Ownership: a ContainerLog owns its LogWriter (an exclusive flock on the file) and its
// Tpm connection. Thread safety: single-threaded; the agent serializes appends per
// container.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "imalog/entry.h"
#include "imalog/log_writer.h"
#include "tpm/tpm.h"

namespace ctrust::agent {

struct Reconciliation {
  std::uint64_t entries = 0;           // entries in the log when opened
  std::uint64_t extended_on_open = 0;  // trailing entries the PCR lacked, now extended
};

class ContainerLog {
 public:
  // Opens (or creates) the log at `path` and binds it to `vtpm`'s PCR `pcr`.
  static Result<ContainerLog> open(const std::string& path, tpm::Tpm vtpm, unsigned pcr = 10,
                                   const imalog::LogWriterOptions& options = {});
  // A new log (`path` must not exist) on a vTPM nothing has extended yet (one the agent
  // has just made): its PCR is zero by construction, so it is not read, which keeps a
  // round trip to the vTPM off the container's start. Were the PCR not zero after all
  // (someone else used the vTPM), the log would not replay to the quotes, and a verifier
  // says so; nothing is vouched for on the strength of this.
  static Result<ContainerLog> create_fresh(const std::string& path, tpm::Tpm vtpm,
                                           unsigned pcr = 10,
                                           const imalog::LogWriterOptions& options = {});

  // Durable in the log, then extended into the vTPM; all entries must be for this PCR.
  // Entries deferred before are made durable and extended first, in log order.
  Result<void> append(std::span<const imalog::Entry> entries);
  Result<void> append(const imalog::Entry& entry) {
    return append(std::span<const imalog::Entry>(&entry, 1));
  }

  // A container's start (discovery, docs/AGENT.md): from defer() until settle(), append()
  // only writes the entries to the log file: they are in the log, readable, and kept if the
  // agent crashes (the next open() extends them, as after any crash between the two steps),
  // but not yet synced nor extended, so that recording what a container runs first costs
  // no disk flush and no TPM command before its first instruction. settle() syncs once and
  // extends them in order; the agent calls it as soon as the held task goes on, and before
  // any quote. A failed settle() leaves them pending: the next append() or settle() tries
  // again, and until then the PCR vouches for the entries before them only.
  void defer() { deferred_ = true; }
  Result<void> settle();
  std::uint64_t unsettled() const { return pending_.size(); }

  const Reconciliation& reconciliation() const { return reconciliation_; }
  // The entries the PCR vouches for: all the log's but the unsettled ones, which follow them.
  std::uint64_t entries() const { return writer_.entries() - pending_.size(); }
  // Every entry in the file, unsettled ones included.
  std::uint64_t written() const { return writer_.entries(); }
  const std::vector<crypto::HashAlg>& banks() const { return banks_; }
  tpm::Tpm& vtpm() { return tpm_; }

 private:
  ContainerLog(imalog::LogWriter writer, tpm::Tpm tpm, unsigned pcr,
               std::vector<crypto::HashAlg> banks)
      : writer_(std::move(writer)), tpm_(std::move(tpm)), pcr_(pcr), banks_(std::move(banks)) {}
  Result<void> extend(const imalog::Entry& entry);
  Result<void> extend_pending();

  imalog::LogWriter writer_;
  tpm::Tpm tpm_;
  unsigned pcr_;
  std::vector<crypto::HashAlg> banks_;
  Reconciliation reconciliation_;
  bool deferred_ = false;
  std::vector<imalog::Entry> pending_;  // written, not yet extended (oldest first)
};

// The boot_aggregate of a host TPM (FORMATS.md): for sha256, SHA-256 over PCR 0-9 of its
// sha256 bank; for sha1, SHA-1 over PCR 0-7 of its sha1 bank.
Result<crypto::Digest> boot_aggregate(tpm::Tpm& host, crypto::HashAlg alg);
// The log's first record: ima-ng, name "boot_aggregate", file digest `aggregate`.
Result<imalog::Entry> boot_aggregate_entry(const crypto::Digest& aggregate,
                                           crypto::HashAlg header_alg);

}  // namespace ctrust::agent
