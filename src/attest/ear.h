// EAT Attestation Results (EAR): the standard shape in which the verifier publishes its
// verdicts (FORMATS.md, "Attestation results"), signed as an ES256 JWT (attest/jwt.h).
//
// The claims set follows draft-fv-rats-ear (profile "tag:github.com,2023:veraison/ear",
// the JSON claim names FORMATS.md fixes):
//   eat_profile, iat, ear.verifier-id {developer, build}, optional ear.raw-evidence
//   (base64url) and eat_nonce, and submods {name: appraisal}, where an appraisal has
//   ear.status, ear.trustworthiness-vector (AR4SI claims, -128..127), optional
//   ear.appraisal-policy-id, and our private claim "ear.ctrust.reasons": an array of
//   {code, message, entry?, rule?, quote?} saying which log entry, which policy rule and
//   which quote led to the verdict (ARCHITECTURE.md, "verdicts are values, with reasons").
// Other members are kept verbatim in `extra` (EAR allows extensions at both levels).
// Note: draft-ietf-rats-ear-04 renamed the claims (ear_status, ear_verifier_id, ...) under
// a new profile; this module speaks the profile above and rejects any other.
//
// Status rule. AR4SI tiers are not ordered by the draft for "none", which means "no claim
// could be made": not attested, so it must never count as trust. We order trust as
//   contraindicated < none < warning < affirming
// and a combination (Ear::overall(), TrustVector::tier()) is the least trusted member. An
// appraisal's ear.status may not be more trusted than the tier of its trustworthiness
// vector (draft section 3.1), where a vector's tier is that of its worst claim, ignoring
// claims of 0 ("no claim", the same as absent) and "none" if nothing else is left.
//
// from_claims() and verify_ear() treat their input as untrusted: exact types, known members
// type-checked, the rules above enforced, each Error naming the offending member.
//
// Thread safety: plain values and pure functions.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/keys.h"
#include "util/hex.h"
#include "util/result.h"

namespace ctrust::attest {

inline constexpr std::string_view kEarProfile = "tag:github.com,2023:veraison/ear";
inline constexpr std::string_view kEarReasonsClaim = "ear.ctrust.reasons";
// eat_nonce in a JWT: text of 8..88 characters (RFC 9711 section 4.1).
inline constexpr std::size_t kMinEarNonceLen = 8;
inline constexpr std::size_t kMaxEarNonceLen = 88;

enum class Status : std::uint8_t { kNone, kAffirming, kWarning, kContraindicated };

// "none", "affirming", "warning", "contraindicated".
std::string_view status_name(Status status);
std::optional<Status> parse_status(std::string_view name);
// 0 contraindicated, 1 none, 2 warning, 3 affirming (see "Status rule" above).
int trust_rank(Status status);
// The less trusted of the two.
Status worse_of(Status a, Status b);

// AR4SI trustworthiness claim values (draft-ietf-rats-ar4si section 2.3). The tier of a
// value: none -1..1, affirming 2..31 and -2..-31, warning 32..95 and -32..-95,
// contraindicated 96..127 and -96..-128.
namespace ar4si {
inline constexpr int kVerifierMalfunction = -1;
inline constexpr int kNoClaim = 0;
inline constexpr int kUnexpectedEvidence = 1;
inline constexpr int kCryptoValidationFailed = 99;
// instance-identity
inline constexpr int kTrustworthyInstance = 2;
inline constexpr int kUntrustworthyInstance = 96;
inline constexpr int kUnrecognizedInstance = 97;
// configuration
inline constexpr int kApprovedConfig = 2;
inline constexpr int kNoConfigVulns = 3;
inline constexpr int kUnsafeConfig = 32;
inline constexpr int kUnsupportableConfig = 96;
// executables
inline constexpr int kApprovedRuntime = 2;
inline constexpr int kApprovedBoot = 3;
inline constexpr int kUnsafeRuntime = 32;
inline constexpr int kUnrecognizedRuntime = 33;
inline constexpr int kContraindicatedRuntime = 96;
// file-system
inline constexpr int kApprovedFiles = 2;
inline constexpr int kUnrecognizedFiles = 32;
inline constexpr int kContraindicatedFiles = 96;
// hardware
inline constexpr int kGenuineHardware = 2;
inline constexpr int kUnsafeHardware = 32;
inline constexpr int kContraindicatedHardware = 96;
inline constexpr int kUnrecognizedHardware = 97;
inline constexpr int kMin = -128;
inline constexpr int kMax = 127;
}  // namespace ar4si

// The tier of one claim value (any int; values outside -128..127 are invalid and rank as
// contraindicated so that they can never raise trust).
Status claim_tier(int value);

struct TrustVector {
  std::optional<int> instance_identity, configuration, executables, file_system, hardware,
      runtime_opaque, storage_opaque, sourced_data;

  bool empty() const;
  // The worst tier of the claims present, ignoring 0; kNone if nothing is left.
  Status tier() const;
  // Only the claims present, under their AR4SI names ("instance-identity", ...).
  nlohmann::json to_json() const;
  // Strict: a non-empty object of known names with integer values in -128..127.
  static Result<TrustVector> from_json(const nlohmann::json& value);
  bool operator==(const TrustVector&) const = default;
};

struct Reason {
  std::string code;     // stable, machine-readable, e.g. "digest-not-allowed"; non-empty
  std::string message;  // one human-readable line
  std::optional<std::uint64_t> entry;  // index of the log entry concerned
  std::string rule;                    // policy rule concerned; empty: none
  std::string quote;                   // quote concerned ("host", a container id); empty: none
  nlohmann::json to_json() const;
  static Result<Reason> from_json(const nlohmann::json& value);
  bool operator==(const Reason&) const = default;
};

// One appraised attester (a host, a container).
struct Submod {
  std::string name;  // the submods key; unique and non-empty
  Status status = Status::kNone;
  TrustVector vector;     // empty: ear.trustworthiness-vector omitted
  std::string policy_id;  // ear.appraisal-policy-id; empty: omitted
  std::vector<Reason> reasons;
  // Other appraisal members, e.g. {"ear.ctrust.image": "sha256:..."}; an object whose names
  // must not collide with the members above.
  nlohmann::json extra = nlohmann::json::object();
  bool operator==(const Submod&) const = default;
};

struct VerifierId {
  std::string developer;  // e.g. "https://github.com/ctrust"
  std::string build;      // e.g. "ctrust-verifier 0.1.0"
  bool operator==(const VerifierId&) const = default;
};

struct Ear {
  std::string profile = std::string(kEarProfile);
  std::int64_t iat = 0;  // seconds since the epoch
  VerifierId verifier_id;
  std::optional<std::string> nonce;  // eat_nonce, echoed from the challenge
  Bytes raw_evidence;                // ear.raw-evidence; empty: omitted
  std::vector<Submod> submods;       // at least one; from_claims() returns them by name
  nlohmann::json extra = nlohmann::json::object();  // other top-level claims

  // The JSON claims set. Does not validate (sign_ear() does).
  nlohmann::json to_claims() const;
  // Strict parse of an untrusted claims set, then validate().
  static Result<Ear> from_claims(const nlohmann::json& claims);
  // The least trusted submod status; kNone without submods.
  Status overall() const;
  const Submod* find_submod(std::string_view name) const;
  bool operator==(const Ear&) const = default;
};

// Checks what the format requires (profile, iat >= 0, verifier-id, nonce length, at least
// one submod, unique names, claim ranges, the status rule, reason codes, no collisions of
// `extra` with known claims); Errc::kInvalidArgument naming the first problem.
Result<void> validate(const Ear& ear);

// validate(), then an ES256 JWT with header {"alg":"ES256","typ":"JWT","kid":kid} (no kid
// member if `kid` is empty; jwk_kid() gives the usual one).
Result<std::string> sign_ear(const Ear& ear, const crypto::PrivateKey& key, std::string_view kid);
// verify_jwt(), then Ear::from_claims().
Result<Ear> verify_ear(std::string_view jwt, const crypto::PublicKey& key);

}  // namespace ctrust::attest
