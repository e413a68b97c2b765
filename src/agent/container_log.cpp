#include "agent/container_log.h"

#include <sys/stat.h>

#include <algorithm>

#include "imalog/binary.h"

namespace ctrust::agent {
namespace {

// What entry `e` extends into `bank`: its template digest there, or all 0xFF for a
// violation record.
Result<crypto::Digest> extend_digest(const imalog::Entry& e, crypto::HashAlg bank) {
  if (e.is_violation()) {
    crypto::Digest d = crypto::Digest::zero(bank);
    std::fill_n(d.bytes.begin(), d.size(), std::uint8_t{0xff});
    return d;
  }
  return imalog::template_digest(e, bank);
}

Result<crypto::Digest> extend_value(const crypto::Digest& pcr, const crypto::Digest& digest) {
  return crypto::digest_concat(pcr.alg, pcr.view(), digest.view());
}

}  // namespace

Result<ContainerLog> ContainerLog::open(const std::string& path, tpm::Tpm vtpm, unsigned pcr,
                                        const imalog::LogWriterOptions& options) {
  if (pcr >= tpm::kPcrCount) return Error(Errc::kInvalidArgument, "PCR index beyond 23");
  CTRUST_ASSIGN_OR_RETURN(std::vector<crypto::HashAlg> banks, vtpm.active_banks());
  // The writer first: its flock makes this the only writer, and its open() repairs or
  // refuses a torn tail before we replay.
  CTRUST_ASSIGN_OR_RETURN(imalog::LogWriter writer, imalog::LogWriter::open(path, options));

  tpm::PcrSelection selection;
  for (auto alg : banks) selection.push_back(tpm::PcrBank{alg, {pcr}});
  CTRUST_ASSIGN_OR_RETURN(tpm::PcrValues values, vtpm.pcr_read(selection));

  // Replay the log, noting the last prefix whose value the vTPM holds; only the entries
  // after it are kept (the log may be ahead of the PCR, by what a crash cut off).
  std::vector<crypto::Digest> current;
  current.reserve(banks.size());
  for (auto alg : banks) current.push_back(crypto::Digest::zero(alg));
  bool held = current == values.values;
  std::vector<imalog::Entry> tail;
  std::uint64_t count = 0;
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && st.st_size > 0) {
    imalog::BinaryFormat format;
    format.header_alg = options.header_alg;
    CTRUST_ASSIGN_OR_RETURN(imalog::BinaryReader reader, imalog::BinaryReader::open(path, format));
    imalog::Entry e;
    for (;;) {
      CTRUST_ASSIGN_OR_RETURN(bool more, reader.next(e));
      if (!more) break;
      ++count;
      if (e.pcr != pcr) {
        return Error(Errc::kFormat, path + ": entry " + std::to_string(count) + " is for PCR " +
                                        std::to_string(e.pcr) + ", not " + std::to_string(pcr));
      }
      for (std::size_t b = 0; b < banks.size(); ++b) {
        CTRUST_ASSIGN_OR_RETURN(crypto::Digest d, extend_digest(e, banks[b]));
        CTRUST_ASSIGN_OR_RETURN(current[b], extend_value(current[b], d));
      }
      if (current == values.values) {
        held = true;
        tail.clear();
      } else {
        tail.push_back(e);
      }
    }
  }
  if (!held) {
    return Error(Errc::kFormat,
                 path + ": the vTPM's PCR " + std::to_string(pcr) +
                     " matches no prefix of the log's " + std::to_string(count) +
                     " entries; the vTPM or the log was changed outside ctrust, so this log "
                     "can no longer be vouched for by this vTPM");
  }
  ContainerLog log(std::move(writer), std::move(vtpm), pcr, std::move(banks));
  log.reconciliation_.entries = count;
  for (const auto& e : tail) {
    CTRUST_TRY(log.extend(e));
    ++log.reconciliation_.extended_on_open;
  }
  return log;
}

Result<ContainerLog> ContainerLog::create_fresh(const std::string& path, tpm::Tpm vtpm,
                                                unsigned pcr,
                                                const imalog::LogWriterOptions& options) {
  if (pcr >= tpm::kPcrCount) return Error(Errc::kInvalidArgument, "PCR index beyond 23");
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    return Error(Errc::kInvalidArgument, path + " exists: open it, do not create it");
  }
  CTRUST_ASSIGN_OR_RETURN(std::vector<crypto::HashAlg> banks, vtpm.active_banks());
  CTRUST_ASSIGN_OR_RETURN(imalog::LogWriter writer, imalog::LogWriter::open(path, options));
  return ContainerLog(std::move(writer), std::move(vtpm), pcr, std::move(banks));
}

Result<void> ContainerLog::extend(const imalog::Entry& entry) {
  std::vector<crypto::Digest> digests;
  digests.reserve(banks_.size());
  for (auto alg : banks_) {
    CTRUST_ASSIGN_OR_RETURN(crypto::Digest d, extend_digest(entry, alg));
    digests.push_back(d);
  }
  return tpm_.pcr_extend(pcr_, digests);
}

Result<void> ContainerLog::append(std::span<const imalog::Entry> entries) {
  for (const auto& e : entries) {
    if (e.pcr != pcr_) {
      return Error(Errc::kInvalidArgument, "entry for PCR " + std::to_string(e.pcr) +
                                               " in a log bound to PCR " + std::to_string(pcr_));
    }
  }
  if (deferred_) {
    CTRUST_TRY(writer_.append(entries, false));
    pending_.insert(pending_.end(), entries.begin(), entries.end());
    return ok_result();
  }
  // The sync covers deferred entries written before these.
  CTRUST_TRY(writer_.append(entries));
  CTRUST_TRY(extend_pending());
  // A failure here leaves the log ahead of the PCR; the next open() extends the rest.
  for (const auto& e : entries) CTRUST_TRY(extend(e));
  return ok_result();
}

Result<void> ContainerLog::extend_pending() {
  std::size_t done = 0;
  Result<void> r = ok_result();
  for (; done < pending_.size(); ++done) {
    r = extend(pending_[done]);
    if (!r) break;
  }
  pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(done));
  return r;
}

Result<void> ContainerLog::settle() {
  deferred_ = false;
  if (pending_.empty()) return ok_result();
  CTRUST_TRY(writer_.sync());
  return extend_pending();
}

Result<crypto::Digest> boot_aggregate(tpm::Tpm& host, crypto::HashAlg alg) {
  unsigned last = alg == crypto::HashAlg::kSha1 ? 7 : 9;
  tpm::PcrBank bank{alg, {}};
  for (unsigned i = 0; i <= last; ++i) bank.pcrs.push_back(i);
  CTRUST_ASSIGN_OR_RETURN(tpm::PcrValues values, host.pcr_read({bank}));
  return tpm::pcr_digest(alg, values);
}

Result<imalog::Entry> boot_aggregate_entry(const crypto::Digest& aggregate,
                                           crypto::HashAlg header_alg) {
  imalog::MeasurementSpec spec;
  spec.file_digest = aggregate;
  spec.name = "boot_aggregate";
  return imalog::make_entry(spec, header_alg);
}

}  // namespace ctrust::agent
