// One attestation of one agent, as the verifier's loop and `ctrust attest` run it: a
// challenge from the held state, the agent's evidence over its pinned mTLS connection,
// verify_attestation(), and the result as an EAR (attest/ear.h) with one submod for the
// host and one per container ("container:ID").
//
// Thread safety: reentrant; the states and the client belong to the caller.
#pragma once

#include <map>
#include <string>

#include "attest/ear.h"
#include "attest/verify.h"
#include "net/http_client.h"
#include "verifier/registration.h"

namespace ctrust::verifier {

inline constexpr std::string_view kHostSubmod = "host";
std::string container_submod(const std::string& id);

struct RoundStats {
  std::size_t evidence_bytes = 0;
  double seconds = 0;  // the agent's answer, from request to response
};

// Transport failures (unreachable, HTTP errors, timeouts) are Errors with Errc::kIo;
// malformed evidence is a contraindicated host with reason "evidence-malformed".
Result<attest::AttestationOutcome> attest_agent(
    net::HttpClient& client, const RegisteredAgent& agent, attest::HostState& host,
    std::map<std::string, attest::ContainerState>& containers, const attest::ReferenceValues& refs,
    const attest::PolicyLookup& policies, std::int64_t now, RoundStats* stats = nullptr);

// The EAR of an agent's current states; `round` adds this attestation's findings to the
// sticky reasons. `ek_trusted_by_certificate` sets the hardware claim.
attest::Ear make_ear(const RegisteredAgent& agent, const attest::HostState& host,
                     const std::map<std::string, attest::ContainerState>& containers,
                     const attest::AttestationOutcome* round, std::int64_t now);

// The trustworthiness vector that goes with a status and its reasons.
attest::TrustVector trust_vector(attest::Status status, const std::vector<attest::Reason>& reasons,
                                 bool host);

}  // namespace ctrust::verifier
