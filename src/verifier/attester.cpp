#include "verifier/attester.h"

#include <algorithm>
#include <chrono>

#include "tpm/public.h"
#include "util/text.h"

namespace ctrust::verifier {

using attest::Status;
namespace ar4si = attest::ar4si;

std::string container_submod(const std::string& id) { return "container:" + id; }

namespace {

bool has_code(const std::vector<attest::Reason>& reasons,
              std::initializer_list<const char*> codes) {
  for (const auto& r : reasons) {
    for (const char* c : codes) {
      if (r.code == c) return true;
    }
  }
  return false;
}

std::vector<attest::Reason> merged(const std::vector<attest::Reason>& sticky,
                                   const std::vector<attest::Reason>& warnings,
                                   const std::vector<attest::Reason>* round) {
  std::vector<attest::Reason> out = sticky;
  for (const auto& r : warnings) {
    if (std::find(out.begin(), out.end(), r) == out.end()) out.push_back(r);
  }
  if (round != nullptr) {
    for (const auto& r : *round) {
      if (std::find(out.begin(), out.end(), r) == out.end()) out.push_back(r);
    }
  }
  return out;
}

}  // namespace

attest::TrustVector trust_vector(Status status, const std::vector<attest::Reason>& reasons,
                                 bool host) {
  attest::TrustVector v;
  bool crypto_failed = has_code(
      reasons, {"quote", "quote-signature", "quote-binding", "log-replay", "forged-binding",
                "replayed-quote", "evidence-malformed", "log-malformed", "log-offset"});
  switch (status) {
    case Status::kAffirming:
      v.instance_identity = ar4si::kTrustworthyInstance;
      if (host) {
        v.configuration = ar4si::kApprovedConfig;
      } else {
        v.executables = ar4si::kApprovedRuntime;
      }
      break;
    case Status::kWarning:
      v.instance_identity = ar4si::kTrustworthyInstance;
      if (host) {
        v.configuration = ar4si::kUnsafeConfig;
      } else {
        v.executables = ar4si::kUnrecognizedRuntime;
      }
      break;
    case Status::kContraindicated:
      if (crypto_failed) {
        v.instance_identity = ar4si::kCryptoValidationFailed;
      } else if (host) {
        v.instance_identity = ar4si::kTrustworthyInstance;
        v.configuration = ar4si::kUnsupportableConfig;
      } else {
        v.instance_identity = ar4si::kTrustworthyInstance;
        v.executables = ar4si::kContraindicatedRuntime;
      }
      break;
    case Status::kNone:
      break;
  }
  return v;
}

Result<attest::AttestationOutcome> attest_agent(
    net::HttpClient& client, const RegisteredAgent& agent, attest::HostState& host,
    std::map<std::string, attest::ContainerState>& containers, const attest::ReferenceValues& refs,
    const attest::PolicyLookup& policies, std::int64_t now, RoundStats* stats) {
  CTRUST_ASSIGN_OR_RETURN(attest::Challenge challenge, attest::make_challenge(host, containers));
  auto started = std::chrono::steady_clock::now();
  auto response = client.request("POST", "/v1/challenge", attest::to_json(challenge).dump());
  if (!response) {
    return Error(Errc::kIo,
                 "agent " + agent.id + " (" + agent.url + "): " + response.error().message());
  }
  if (stats != nullptr) {
    stats->evidence_bytes = response->body.size();
    stats->seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  }
  if (response->status != 200) {
    return Error(Errc::kIo, "agent " + agent.id + " answered the challenge with HTTP " +
                                std::to_string(response->status) + ": " +
                                printable(response->body, 200));
  }
  auto evidence = attest::parse_evidence(response->body);
  if (!evidence) {
    // Over a pinned, attested TLS connection: the agent itself sent this.
    attest::AttestationOutcome out;
    attest::Reason r;
    r.code = "evidence-malformed";
    r.message = "the agent's evidence is malformed: " + evidence.error().message();
    host.reasons.push_back(r);
    Status before = host.status;
    host.status = Status::kContraindicated;
    out.host_status = host.status;
    out.host_reasons = {r};
    out.host_changed = before != host.status;
    for (auto& [id, st] : containers) {
      attest::ContainerOutcome o;
      o.id = id;
      o.changed = st.status != Status::kContraindicated;
      st.status = Status::kContraindicated;
      o.status = st.status;
      attest::Reason hr;
      hr.code = "host-evidence";
      hr.message = "the host's evidence does not verify";
      o.reasons = {hr};
      out.containers.push_back(std::move(o));
    }
    return out;
  }
  auto ak_key = attest::ak_public_key(agent.ak_public);
  if (!ak_key) return std::move(ak_key).error().with_context("stored AK of " + agent.id);
  attest::HostKeys keys{*ak_key, attest::kDefaultHostPcr};
  attest::AttestationInput in;
  in.challenge = &challenge;
  in.evidence = &*evidence;
  in.host = &keys;
  in.refs = &refs;
  in.policies = policies;
  in.now = now;
  return attest::verify_attestation(host, containers, in);
}

attest::Ear make_ear(const RegisteredAgent& agent, const attest::HostState& host,
                     const std::map<std::string, attest::ContainerState>& containers,
                     const attest::AttestationOutcome* round, std::int64_t now) {
  attest::Ear ear;
  ear.iat = now;
  ear.verifier_id.developer = "https://github.com/ctrust";
  ear.verifier_id.build = "ctrust-verifier 0.1.0";
  attest::Submod h;
  h.name = std::string(kHostSubmod);
  h.status = host.status;
  h.reasons = merged(host.reasons, host.warnings, round ? &round->host_reasons : nullptr);
  h.vector = trust_vector(h.status, h.reasons, true);
  if (h.status != Status::kNone && !h.vector.empty()) {
    h.vector.hardware = agent.ek_trust.rfind("certificate", 0) == 0
                            ? std::optional<int>(ar4si::kGenuineHardware)
                            : std::nullopt;
  }
  h.extra = {{"ear.ctrust.agent", agent.id},
             {"ear.ctrust.ek", agent.ek_fingerprint},
             {"ear.ctrust.ek-trust", agent.ek_trust},
             {"ear.ctrust.host-log-entries", host.log.offset}};
  ear.submods.push_back(std::move(h));
  for (const auto& [id, st] : containers) {
    attest::Submod s;
    s.name = container_submod(id);
    s.status = st.status;
    const std::vector<attest::Reason>* r = nullptr;
    if (round != nullptr) {
      for (const auto& c : round->containers) {
        if (c.id == id) r = &c.reasons;
      }
    }
    s.reasons = merged(st.reasons, st.warnings, r);
    s.vector = trust_vector(s.status, s.reasons, false);
    s.policy_id = st.policy;
    s.extra = {{"ear.ctrust.image", st.image},
               {"ear.ctrust.mode", st.mode},
               {"ear.ctrust.log-entries", st.log.offset},
               {"ear.ctrust.stopped", st.stopped}};
    ear.submods.push_back(std::move(s));
  }
  return ear;
}

}  // namespace ctrust::verifier
