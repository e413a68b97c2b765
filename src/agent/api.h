// ctrustd's attestation API (docs/PROTOCOL.md): HTTPS, TLS 1.3 only, client certificates
// chaining to the configured verifier CAs required at the handshake, a body-size limit, a
// per-client rate limit, read and write timeouts. Routes:
//   GET  /v1/health                    liveness
//   GET  /v1/identity?nonce=HEX        host EK (and certificate), AK, TLS key fingerprint, and
//                                      with a nonce a quote by the AK vouching for the TLS key
//   POST /v1/activate                  TPM2_ActivateCredential of a verifier's credential
//   POST /v1/challenge                 the container state challenge: evidence
// Every request body is parsed strictly (attest/evidence.h); a malformed one gets a 400
// with a JSON error saying what is wrong; internal failures a 500 without details (they go
// to the agent's log).
//
// The agent's TLS key and self-signed certificate live under STATE/api (made on first
// start, 0600): a verifier pins that key because the host AK vouches for it.
//
// Thread safety: the source's methods are called from the server's worker threads.
#pragma once

#include <functional>
#include <memory>
#include <optional>

#include "agent/config.h"
#include "attest/evidence.h"
#include "net/http_server.h"
#include "net/tls.h"

namespace ctrust::agent {

struct AttestationSource {
  std::function<Result<attest::Identity>(std::optional<Bytes> nonce)> identity;
  std::function<Result<attest::ActivateResponse>(const attest::ActivateRequest&)> activate;
  std::function<Result<attest::Evidence>(const attest::Challenge&)> answer;
};

// STATE/api/key.pem and cert.pem: loaded, or made (ECDSA P-256, self-signed, CN = agent id).
Result<net::TlsIdentity> load_or_make_tls_identity(const std::string& dir,
                                                   const std::string& agent_id);

// Binds config.api_listen and serves until the server is destroyed.
Result<std::unique_ptr<net::HttpServer>> start_api(const AgentConfig& config,
                                                   net::TlsIdentity identity,
                                                   AttestationSource source);

}  // namespace ctrust::agent
