// The container state challenge protocol's messages (docs/PROTOCOL.md): what a verifier
// asks an agent (Challenge), what the agent answers (Evidence), the registration messages,
// and the bindings that tie quotes to one challenge and one container.
//
// Every parser here reads untrusted bytes from the network: strict JSON (no unknown
// members, no duplicate keys, exact types), documented size limits, base64 and hex that
// must be canonical. A malformed message is an Error (Errc::kFormat or kLimit) whose
// message names the offending member.
//
// Bindings (docs/PROTOCOL.md, "Bindings"):
//   container quote qualifying data = SHA-256("ctrust-container-quote-v1" 0x00 || nonce ||
//       u32be(len id) || id || u64be(entries in the container log))
//   host quote qualifying data = SHA-256("ctrust-host-quote-v1" 0x00 || nonce ||
//       u64be(entries in the host log) || u32be(n) || n x (u32be(len id) || id ||
//       SHA-256(container quote message)))
// so a container quote answers one challenge about one container and its log's length,
// and the host quote vouches for exactly the container quotes sent with it.
//
// Thread safety: plain values and pure functions.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util/hex.h"
#include "util/result.h"

namespace ctrust::attest {

inline constexpr std::uint32_t kProtocolVersion = 1;
inline constexpr std::size_t kNonceBytes = 32;
// Documented limits (docs/PROTOCOL.md, "Limits").
inline constexpr std::size_t kMaxChallengeBytes = std::size_t{256} * 1024;
inline constexpr std::size_t kMaxEvidenceBytes = 64u << 20;
inline constexpr std::size_t kMaxContainers = 1024;
inline constexpr std::size_t kMaxLogChunkBytes = 16u << 20;
inline constexpr std::size_t kMaxQuoteBytes = 4096;
inline constexpr std::size_t kMaxIdLen = 128;

struct ContainerCursor {
  std::string id;
  std::uint64_t log_offset = 0;  // entries of that log the verifier already holds
};

struct Challenge {
  Bytes nonce;  // kNonceBytes, fresh per challenge
  std::uint64_t host_log_offset = 0;
  std::vector<ContainerCursor> containers;
  // Also report every other container the agent tracks (from the start of its log).
  bool all = false;
};

struct QuoteEvidence {
  Bytes message;    // marshalled TPMS_ATTEST
  Bytes signature;  // marshalled TPMT_SIGNATURE
  // The quoted PCR values of the sha256 bank, by index, as the agent read them with the
  // quote (the verifier checks their digest against the quote's).
  std::vector<std::pair<unsigned, Bytes>> pcrs;
};

struct LogChunk {
  std::uint64_t offset = 0;  // index of the first entry in `entries`
  std::uint64_t count = 0;   // entries in the whole log (offset + entries in `entries`)
  Bytes entries;             // binary IMA form (SHA-1 header digests, little-endian)
};

struct ContainerEvidence {
  std::string id;
  std::string state;                   // "running" or "stopped"
  Bytes ak_public;                     // the vTPM AK, marshalled TPM2B_PUBLIC (running containers)
  std::optional<QuoteEvidence> quote;  // absent for a stopped container (vTPM gone)
  LogChunk log;
};

struct Evidence {
  std::uint32_t version = kProtocolVersion;
  std::string agent_instance;  // random per ctrustd start (hex)
  std::int64_t agent_started = 0;
  QuoteEvidence host_quote;
  LogChunk host_log;
  std::vector<ContainerEvidence> containers;
  std::vector<std::string> unknown;  // asked about, but the agent has no such container
};

// Registration: what the agent says about itself (GET /v1/identity).
struct Identity {
  std::string agent_id;                 // the name the agent gives itself (host name by default)
  Bytes ek_public;                      // marshalled TPM2B_PUBLIC of the host EK
  std::optional<Bytes> ek_certificate;  // DER, from the TPM's NV index, when there is one
  Bytes ak_public;                      // marshalled TPM2B_PUBLIC of the host AK
  std::string tls_fingerprint;          // SHA-256 of the agent's TLS SubjectPublicKeyInfo (hex)
  // A quote by the AK whose qualifying data is tls_binding_data(nonce, tls key): the AK
  // vouches for the TLS key (GET /v1/identity?nonce=HEX).
  std::optional<QuoteEvidence> tls_quote;
  std::vector<std::string> vtpm_ca_certificates;  // PEM: the local vTPM CA the host runs
};

// The activation request and its answer (POST /v1/activate).
struct ActivateRequest {
  Bytes credential_blob;  // TPM2B_ID_OBJECT
  Bytes secret;           // TPM2B_ENCRYPTED_SECRET
};
struct ActivateResponse {
  // HMAC-SHA256(key = the recovered secret, "ctrust-activate-v1" 0x00 || tls fingerprint
  // hex): proves the TPM that holds the EK and the AK answers on this TLS connection.
  Bytes proof;
};

nlohmann::json to_json(const Challenge& challenge);
Result<Challenge> parse_challenge(std::string_view text);
nlohmann::json to_json(const Evidence& evidence);
Result<Evidence> parse_evidence(std::string_view text);
nlohmann::json to_json(const Identity& identity);
Result<Identity> parse_identity(std::string_view text);
nlohmann::json to_json(const ActivateRequest& request);
Result<ActivateRequest> parse_activate_request(std::string_view text);
nlohmann::json to_json(const ActivateResponse& response);
Result<ActivateResponse> parse_activate_response(std::string_view text);

// The bindings above.
Bytes container_qualifying_data(ByteView nonce, std::string_view container_id,
                                std::uint64_t log_entries);
Bytes host_qualifying_data(ByteView nonce, std::uint64_t host_log_entries,
                           const std::vector<ContainerEvidence>& containers);
Bytes tls_binding_data(ByteView nonce, std::string_view tls_fingerprint);
Bytes activation_proof(ByteView secret, std::string_view tls_fingerprint);

// Standard base64 (RFC 4648, with padding); decoding rejects anything non-canonical.
std::string base64_encode(ByteView bytes);
Result<Bytes> base64_decode(std::string_view text, std::size_t max_bytes);

}  // namespace ctrust::attest
