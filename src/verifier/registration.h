// Registering an agent (docs/PROTOCOL.md, "Registration"): before the verifier trusts any
// quote from a host it checks that
//   1. the host's EK is trusted: its certificate chains to a configured EK CA (and certifies
//      that very key), or its public key is pinned;
//   2. the AK is a restricted signing key, and it lives in the same TPM as that EK: the
//      verifier makes a credential for (EK, AK name) in software (TPM2_MakeCredential) and
//      only that TPM can recover its secret (TPM2_ActivateCredential); the agent proves it
//      did with an HMAC under the secret over its TLS key;
//   3. the TLS key the agent answered on is the one the AK vouches for: a quote whose
//      qualifying data binds a fresh nonce to that key's fingerprint.
// Afterwards the verifier talks to the agent only with that TLS key pinned.
//
// Thread safety: reentrant.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

#include "crypto/keys.h"
#include "net/http_client.h"
#include "net/tls.h"

namespace ctrust::verifier {

struct EkTrust {
  std::vector<crypto::Certificate> cas;  // EK certificates must chain to one of these
  std::vector<std::string> pins;         // "sha256:HEX" of trusted EK public keys (SPKI)
};

struct RegisteredAgent {
  std::string id;
  std::string url;
  Bytes ek_public;             // TPM2B_PUBLIC
  std::string ek_fingerprint;  // "sha256:HEX" of the EK's SPKI
  std::string ek_trust;        // how it was trusted: "certificate <subject>" or "pinned"
  Bytes ak_public;             // TPM2B_PUBLIC
  Bytes ak_name;
  std::string tls_fingerprint;  // hex
  std::vector<std::string> vtpm_ca_certificates;

  nlohmann::json to_json() const;
  static Result<RegisteredAgent> from_json(const nlohmann::json& value);
};

struct RegistrationOptions {
  std::optional<net::TlsIdentity> client;  // the verifier's client certificate (required)
  EkTrust trust;
  int timeout_ms = 10000;
};

// Runs the registration against the agent at `url`. A check that fails is an Error with
// Errc::kInvalidArgument naming it (and, for an untrusted EK, its fingerprint to pin);
// an unreachable agent is Errc::kIo.
Result<RegisteredAgent> register_agent(const std::string& url, const RegistrationOptions& options);

// A client for a registered agent: mutual TLS, the agent's key pinned.
Result<net::HttpClient> agent_client(const RegisteredAgent& agent, const net::TlsIdentity& client,
                                     int timeout_ms);

}  // namespace ctrust::verifier
