// Verifying one attestation (docs/PROTOCOL.md, "What the verifier checks"), incrementally.
//
// The verifier holds, per agent, a HostState (the host log replayed so far, the TPM's
// reset and restart counters, the agent instance) and, per container, a ContainerState (its
// vTPM binding taken from the host log, its log replayed so far, its verdict so far). Each
// attestation brings only the entries after those offsets; verify_attestation() checks
//   1. the host quote: signature by the registered AK, qualifying data = the challenge's
//      nonce bound to the host log length and to every container quote sent with it, the
//      quoted PCR values' digest, TPM counters never going back;
//   2. the host log: the new entries replayed from the held PCR value equal the quoted host
//      PCR; the agent's own records against reference values; the container-created
//      records give each container's vTPM AK name, image digest, policy and mode;
//   3. per container: the AK whose public area was sent has the Name the host log bound;
//      its quote is signed by it and bound to the nonce, the container id and the log
//      length; the new log entries replayed from the held PCR 10 equal the quoted one; the
//      boot aggregate equals the host's quoted PCRs 0-9; the image record equals the host
//      log's; every file entry is allowed by the container's signed policy.
// Only when every check of a log passes does its state advance; a failed check leaves the
// state where it was and makes the verdict contraindicated, with a reason. Verdicts are
// sticky: once an entry of a log was judged contraindicated, the log keeps that entry, so
// the container stays contraindicated.
//
// Thread safety: verify_attestation() is reentrant; states belong to their caller.
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "attest/ear.h"
#include "attest/evidence.h"
#include "crypto/keys.h"
#include "policy/compiled.h"

namespace ctrust::attest {

inline constexpr unsigned kDefaultHostPcr = 13;
inline constexpr unsigned kContainerPcr = 10;
inline constexpr std::size_t kMaxReasons = 16;  // kept per container (the first ones)

// What the host's own records must match. An empty list accepts any value, with a warning
// saying that no reference value is configured.
struct ReferenceValues {
  std::vector<std::string> agent_binaries;  // "sha256:HEX" of ctrustd
  std::vector<std::string> agent_configs;   // "sha256:HEX" of its configuration file
  std::vector<std::string> bpf_objects;     // "sha256:HEX" of its BPF objects
  std::map<unsigned, Bytes> boot_pcrs;      // expected sha256 PCR values (0-9)
};

struct LogState {
  std::uint64_t offset = 0;  // entries replayed
  Bytes pcr = Bytes(32, 0);  // the sha256 PCR after them
};

struct ContainerState {
  std::string id;
  // From the host log's container-created record.
  Bytes ak_name;
  std::string image;          // "sha256:HEX"
  std::string logged_policy;  // "sha256:HEX" of the policy file the agent enforced, or ""
  std::string mode;
  std::uint64_t host_entry = 0;  // index of that record in the host log
  bool stopped = false;
  LogState log;
  std::int64_t last_quote_time = 0;
  Status status = Status::kNone;
  std::vector<Reason> reasons;   // contraindicated findings that stay (the first ones)
  std::vector<Reason> warnings;  // warnings about log entries, which stay too
  std::string policy;            // name and serial of the verifier's policy the log was judged by
  std::uint64_t allowed = 0, excluded = 0, skipped = 0;

  nlohmann::json to_json() const;
  static Result<ContainerState> from_json(const nlohmann::json& value);
};

struct HostState {
  LogState log;
  std::string agent_instance;
  std::uint32_t reset_count = 0, restart_count = 0;
  std::uint64_t clock = 0;
  bool quoted = false;  // at least one quote was verified
  std::uint64_t agent_starts = 0;
  Status status = Status::kNone;
  std::vector<Reason> reasons;   // contraindicated findings that stay (the first ones)
  std::vector<Reason> warnings;  // warnings about host log entries, which stay too

  nlohmann::json to_json() const;
  static Result<HostState> from_json(const nlohmann::json& value);
};

// The registered host: its AK (proven to be in the TPM of a trusted EK at registration).
struct HostKeys {
  crypto::PublicKey ak;
  unsigned host_pcr = kDefaultHostPcr;
};

// The policy the verifier judges a container by.
struct PolicyChoice {
  std::string name;    // "name@serial"
  std::string digest;  // "sha256:HEX" of the document
  std::shared_ptr<const policy::CompiledPolicy> compiled;
  std::vector<std::string> images;  // "sha256:HEX"; empty: any image
};
// (container id, image digest, digest of the policy the agent logged) -> the policy, or
// nullopt when the verifier has none for that container.
using PolicyLookup = std::function<std::optional<PolicyChoice>(
    const std::string& container, const std::string& image, const std::string& logged_policy)>;

struct ContainerOutcome {
  std::string id;
  Status status = Status::kNone;
  std::vector<Reason> reasons;  // this round's findings
  bool changed = false;         // status differs from before this attestation
  bool removed = false;         // stopped and fully reported: the caller may drop it
  std::uint64_t new_entries = 0;
};

struct AttestationOutcome {
  Status host_status = Status::kNone;
  std::vector<Reason> host_reasons;
  bool host_changed = false;
  std::vector<ContainerOutcome> containers;
  std::vector<std::string> dropped;  // containers of a previous boot: the caller forgets them
  std::uint64_t entries_verified = 0;
};

struct AttestationInput {
  const Challenge* challenge = nullptr;
  const Evidence* evidence = nullptr;
  const HostKeys* host = nullptr;
  const ReferenceValues* refs = nullptr;
  PolicyLookup policies;
  std::int64_t now = 0;
};

// Checks `input.evidence` against the challenge it answers and advances the states.
// Errors are for unusable inputs from the caller; everything wrong with the evidence is a
// verdict with reasons.
Result<AttestationOutcome> verify_attestation(HostState& host,
                                              std::map<std::string, ContainerState>& containers,
                                              const AttestationInput& input);

// Builds the challenge for the current states: a fresh nonce, the offsets held.
Result<Challenge> make_challenge(const HostState& host,
                                 const std::map<std::string, ContainerState>& containers);

// The public key of a marshalled TPM2B_PUBLIC, and whether it is a restricted signing key,
// cached process-wide (bounded): OpenSSL 3 builds a key from its parts in about 200 us,
// more than the rest of an attestation, and a verifier sees the same AKs every round.
Result<crypto::PublicKey> ak_public_key(ByteView tpm2b_public);

}  // namespace ctrust::attest
