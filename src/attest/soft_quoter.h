// A software stand-in for a TPM attestation key: quotes (TPMS_ATTEST + TPMT_SIGNATURE, byte
// for byte what a TPM produces) over PCR values the caller keeps, signed by an ECDSA P-256
// key in memory. It is a FAKE for the verifier's unit tests and for the simulated agents of
// the fleet-scale benchmark (bench/fleet_bench.cpp); the real thing is a TPM or swtpm
// through tpm::Tpm, which the integration tests (tests/cli/attest_test.sh) use.
//
// SimLog keeps a measurement log and its PCR value the way ctrustd does, so that tests can
// build evidence and then tamper with it.
//
// Thread safety: a SoftQuoter may be used from several threads (the key is immutable; the
// clock is atomic); a SimLog is single-threaded.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "attest/evidence.h"
#include "crypto/keys.h"
#include "imalog/entry.h"

namespace ctrust::attest {

class SoftQuoter {
 public:
  static Result<SoftQuoter> create();
  SoftQuoter(SoftQuoter&& other) noexcept
      : key_(std::move(other.key_)),
        public_(std::move(other.public_)),
        name_(std::move(other.name_)),
        clock_(other.clock_.load()) {}

  const Bytes& public_tpm2b() const { return public_; }  // marshalled TPM2B_PUBLIC
  const Bytes& name() const { return name_; }
  Result<crypto::PublicKey> public_key() const { return key_.public_key(); }

  // A quote of the given sha256 PCR values with `qualifying_data`.
  Result<QuoteEvidence> quote(const std::vector<std::pair<unsigned, Bytes>>& pcrs,
                              ByteView qualifying_data, std::uint32_t reset_count = 0);

 private:
  SoftQuoter(crypto::PrivateKey key, Bytes pub, Bytes name)
      : key_(std::move(key)), public_(std::move(pub)), name_(std::move(name)) {}
  crypto::PrivateKey key_;
  Bytes public_;
  Bytes name_;
  std::atomic<std::uint64_t> clock_{1000};
};

class SimLog {
 public:
  explicit SimLog(unsigned pcr) : pcr_index_(pcr) {}
  Result<void> add(const imalog::Entry& entry);
  // A file measurement (ima-ng, sha256 file digest of `content`).
  Result<void> add_file(const std::string& path, std::string_view content);
  // An ima-buf record holding `json_text`.
  Result<void> add_buf(const std::string& name, std::string_view json_text);
  // A named digest (ima-ng), e.g. boot_aggregate, ctrust:image.
  Result<void> add_digest(const std::string& name, ByteView sha256);
  Result<void> add_violation(const std::string& name);

  std::uint64_t count() const { return entries_.size(); }
  const Bytes& pcr() const { return pcr_; }
  unsigned pcr_index() const { return pcr_index_; }
  const std::vector<imalog::Entry>& entries() const { return entries_; }
  // Entries [offset, count) in the binary form.
  Result<LogChunk> chunk(std::uint64_t offset) const;

 private:
  unsigned pcr_index_;
  std::vector<imalog::Entry> entries_;
  Bytes pcr_ = Bytes(32, 0);
};

// A simulated host running ctrustd: a host AK and host log on PCR 13, boot PCRs 0-9, and
// containers each with their own AK and log on PCR 10, bound by container-created records,
// answering challenges exactly as ctrustd does. For tests (which then tamper with the
// evidence) and the fleet benchmark.
class SimHost {
 public:
  struct Container {
    std::string id;
    SoftQuoter ak;
    SimLog log{10};
    bool stopped = false;
  };

  static Result<SimHost> create(const std::string& instance = "0123456789abcdef");

  SoftQuoter& ak() { return ak_; }
  SimLog& host_log() { return host_log_; }
  const std::vector<std::pair<unsigned, Bytes>>& boot_pcrs() const { return boot_pcrs_; }
  Bytes boot_aggregate() const;
  std::string& instance() { return instance_; }
  std::uint32_t reset_count = 0;

  // A container-created host record and the container log's first entries: boot_aggregate,
  // ctrust:image and (when `policy_digest` is not empty) ctrust:policy:NAME.
  Result<Container*> add_container(const std::string& id, ByteView image, ByteView policy_digest,
                                   const std::string& policy_name = "app");
  Container* container(const std::string& id);
  // A file the container ran.
  Result<void> exec(const std::string& id, const std::string& path, std::string_view content);
  Result<void> stop(const std::string& id);
  // The agent's side of POST /v1/challenge.
  Result<Evidence> answer(const Challenge& challenge);

 private:
  SimHost(SoftQuoter ak, std::string instance)
      : ak_(std::move(ak)), instance_(std::move(instance)) {}
  SoftQuoter ak_;
  SimLog host_log_{13};
  std::vector<std::pair<unsigned, Bytes>> boot_pcrs_;
  std::string instance_;
  std::vector<std::unique_ptr<Container>> containers_;
};

// The binary form of `entries` as a chunk starting at `offset` of a log of `count` entries.
Result<LogChunk> make_chunk(const std::vector<imalog::Entry>& entries, std::uint64_t offset,
                            std::uint64_t count);

}  // namespace ctrust::attest
