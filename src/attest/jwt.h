// Compact JWS / JWT with ES256 only (RFC 7515, RFC 7518 section 3.4, RFC 7519): how the
// verifier signs its attestation results (EAR) and how anyone holding its public key checks
// them.
//
// One algorithm on purpose: a verifier that accepts a single, fixed `alg` cannot be talked
// into "none" or into using an ECDSA public key as an HMAC secret. Tokens are untrusted
// input: verify_jwt() accepts exactly three base64url parts without padding (canonical:
// unused trailing bits must be zero), a header that is a JSON object with "alg":"ES256" and
// no "crit", a 64-byte raw r||s signature, and a claims set that is a JSON object; JSON is
// parsed strictly (no duplicate keys, bounded depth). Anything else is an Error with
// Errc::kFormat (kLimit for a token over kMaxJwtBytes), whose message says what is wrong.
// Unlike crypto::PublicKey::verify(), a signature that does not verify is an Error here too
// (Errc::kCrypto, native 0, "JWT signature does not verify"): nothing in a token whose
// signature fails may be used.
//
// Thread safety: pure functions; keys may be shared between threads.
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <string>
#include <string_view>

#include "crypto/keys.h"
#include "util/hex.h"
#include "util/result.h"

namespace ctrust::attest {

// A documented limit: EAR tokens are a few KiB; this bounds the work a hostile token costs.
inline constexpr std::size_t kMaxJwtBytes = std::size_t{1} << 20;  // 1 MiB
inline constexpr std::size_t kMaxJwtJsonDepth = 32;
// ES256: P-256 scalars are 32 bytes, the JWS signature is r || s.
inline constexpr std::size_t kEs256SignatureBytes = 64;

// Base64url (RFC 4648 section 5) without padding, as JWS uses it.
std::string base64url_encode(ByteView bytes);
// Rejects padding, characters outside [A-Za-z0-9_-], impossible lengths and non-zero unused
// trailing bits (so that each byte string has exactly one accepted spelling).
Result<Bytes> base64url_decode(std::string_view text);

// Signs `claims` (a JSON object) as a compact JWS: the protected header is
// {"alg":"ES256","typ":"JWT"} with the members of `header_extra` (an object, e.g. {"kid":..})
// merged in; "alg" cannot be overridden, and "crit" is refused. `key` must be ECDSA P-256.
Result<std::string> sign_jwt(const nlohmann::json& header_extra, const nlohmann::json& claims,
                             const crypto::PrivateKey& key);

struct VerifiedJwt {
  nlohmann::json header;  // a JSON object
  nlohmann::json claims;  // a JSON object
};

// Checks a compact JWS against `key` (ECDSA P-256) as described above; returns the decoded
// header and claims only when the signature verifies. Does not interpret any claim (exp,
// nbf, iss, ...): that is the caller's business.
Result<VerifiedJwt> verify_jwt(std::string_view token, const crypto::PublicKey& key);

// The public key as an EC P-256 JWK (RFC 7517/7518): {"kty":"EC","crv":"P-256","x":..,"y":..,
// "kid":..} with x, y base64url and kid = the first 16 hex digits of the SHA-256 of the DER
// SubjectPublicKeyInfo (jwk_kid()). An Error for any other key type.
Result<nlohmann::json> jwk_of(const crypto::PublicKey& key);
Result<std::string> jwk_kid(const crypto::PublicKey& key);

// ECDSA signature conversions between DER (what OpenSSL and crypto::PrivateKey produce) and
// the fixed-size raw r || s form JWS uses; `scalar_bytes` is 32 for P-256.
Result<Bytes> ecdsa_der_to_raw(ByteView der, std::size_t scalar_bytes);
Result<Bytes> ecdsa_raw_to_der(ByteView raw);

}  // namespace ctrust::attest
