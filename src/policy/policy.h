// Signed allowlists: what a container may run (docs/POLICY.md).
//
// A policy is a JSON document written by the container's owner: a format version, name,
// issuer, serial, validity window, the image digests it applies to, the enforcement mode
// it asks for, the allowed file digests (each optionally limited to path patterns), exclude
// rules, and a signature over the canonical bytes of everything else. The parser treats
// its input as untrusted: it rejects duplicate keys, unknown members (except "x-"
// extensions at the top level), non-canonical spellings (upper-case hex, non-UTC times),
// numbers out of range and nesting beyond kMaxJsonDepth, each with the JSON path of the
// offending member. What is signed is the canonical re-serialisation of what was parsed, so
// a verifier checks exactly the values it will use.
//
// Thread safety: plain values; the functions are reentrant.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/digest.h"
#include "crypto/keys.h"

namespace ctrust::policy {

inline constexpr std::uint64_t kFormatVersion = 1;
// Documented limits (docs/POLICY.md).
inline constexpr std::size_t kMaxPolicyBytes = std::size_t{1} << 30;  // 1 GiB
inline constexpr std::size_t kMaxJsonDepth = 16;
inline constexpr std::size_t kMaxPathPatternLen = 4096;
inline constexpr std::size_t kMaxTextLen = 1024;  // name, issuer, excludes

enum class Mode : std::uint8_t { kOff, kMeasure, kAudit, kEnforce };
// Inline: the start path's small static programs (ctrust-hook) read modes without linking
// the policy library.
inline std::string_view mode_name(Mode mode) {
  switch (mode) {
    case Mode::kOff:
      return "off";
    case Mode::kMeasure:
      return "measure";
    case Mode::kAudit:
      return "audit";
    case Mode::kEnforce:
      return "enforce";
  }
  return "?";
}
inline std::optional<Mode> parse_mode(std::string_view name) {
  for (Mode m : {Mode::kOff, Mode::kMeasure, Mode::kAudit, Mode::kEnforce}) {
    if (mode_name(m) == name) return m;
  }
  return std::nullopt;
}

// One allowed file content: a digest, and the paths it may have (shell glob patterns,
// matched with fnmatch(FNM_PATHNAME)); no patterns means any path.
struct Allow {
  crypto::Digest digest;
  std::vector<std::string> paths;  // sorted, unique
};

struct Signature {
  std::string alg;        // e.g. "ecdsa-p256-sha256"; fixed by the key type
  crypto::Digest key_id;  // SHA-256 of the signer's DER SubjectPublicKeyInfo
  Bytes value;
  std::vector<std::string> certificates;  // PEM, signer first, then intermediates
};

struct Policy {
  std::string name;
  std::string issuer;
  std::uint64_t serial = 1;
  std::int64_t not_before = 0;         // seconds since the epoch (UTC), inclusive
  std::int64_t not_after = 0;          // exclusive
  std::vector<crypto::Digest> images;  // sha256 image digests; empty: any image
  Mode mode = Mode::kEnforce;
  std::vector<Allow> allow;           // sorted by (algorithm, digest bytes), unique digests
  std::vector<std::string> excludes;  // POSIX extended regexes, matched at the path start
  nlohmann::json extensions = nlohmann::json::object();  // "x-..." members, signed
  std::optional<Signature> signature;
};

// Sorts and de-duplicates allow entries (merging the paths of equal digests: "any path"
// wins), images and excludes, and validates every field. Called by parse and by builders.
Result<void> normalize(Policy& policy);

Result<Policy> parse_policy(std::string_view json);
Result<Policy> load_policy(const std::string& path);
// The human-readable form (two-space indent, fields in documentation order).
std::string to_json(const Policy& policy);
// The bytes the signature covers: "ctrust-policy-v1\n" followed by the canonical JSON of
// the policy without its "signature" member (docs/POLICY.md, "Canonical bytes").
std::string signed_bytes(const Policy& policy);

// "ecdsa-p256-sha256", "ecdsa-p384-sha384", "ed25519", "rsa3072-pss-sha256", ...
std::string signature_alg_name(crypto::KeyType type);

// Replaces any existing signature. `chain` (signer certificate first) is embedded; when
// given, its first certificate must hold the public key of `key`.
Result<void> sign_policy(Policy& policy, const crypto::PrivateKey& key,
                         const std::vector<crypto::Certificate>& chain);

// What a verifier trusts: signer public keys, or CA certificates that the policy's
// embedded chain must lead to. A PEM file may hold any mix of both.
struct TrustAnchors {
  std::vector<crypto::PublicKey> keys;
  std::vector<crypto::Certificate> certificates;
};
Result<TrustAnchors> parse_trust_anchors(std::string_view pem);
Result<TrustAnchors> load_trust_anchors(const std::string& path);

struct VerifyResult {
  bool ok = false;
  std::string reason;  // why not, one line; empty when ok
  std::string signer;  // key fingerprint, or certificate subject
};

// Checks the signature against the anchors and the validity window against `now` (seconds
// since the epoch). A bad signature, an untrusted signer or an expired policy is a normal
// `ok == false` with a reason; Errors are for unusable inputs.
Result<VerifyResult> verify_policy(const Policy& policy, const TrustAnchors& anchors,
                                   std::int64_t now);
// Only the validity window; empty when valid.
std::string validity_problem(const Policy& policy, std::int64_t now);

// RFC 3339 UTC ("2026-11-24T10:00:00Z") <-> seconds since the epoch.
Result<std::int64_t> parse_time(std::string_view text);
std::string format_time(std::int64_t seconds);

// Unions the allow lists, images and excludes of `others` into `base` (base keeps its
// name, issuer, serial, window and mode) and drops the signature. If any of them applies
// to any image (no images listed), so does the result.
Result<void> merge_into(Policy& base, const std::vector<Policy>& others);

}  // namespace ctrust::policy
