#include "verifier/registration.h"

#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <algorithm>
#include <ctime>

#include "attest/evidence.h"
#include "tpm/attest.h"
#include "tpm/credential.h"
#include "tpm/public.h"
#include "util/text.h"

namespace ctrust::verifier {

using nlohmann::json;

namespace {

Error refused(const std::string& what) { return Error(Errc::kInvalidArgument, what); }

// The EK certificate chains to one of the EK CAs. EK certificates carry no key usage that
// OpenSSL's purposes know (TCG: keyEncipherment, tcg-kp-EKCertificate), so no purpose is
// checked, only the chain, signatures and validity.
Result<std::string> ek_chain_problem(const crypto::Certificate& cert,
                                     const std::vector<crypto::Certificate>& cas) {
  X509_STORE* store = X509_STORE_new();
  X509_STORE_CTX* ctx = X509_STORE_CTX_new();
  if (store == nullptr || ctx == nullptr) {
    X509_STORE_free(store);
    X509_STORE_CTX_free(ctx);
    return Error(Errc::kCrypto, "X509_STORE_new");
  }
  for (const auto& ca : cas) X509_STORE_add_cert(store, ca.native());
  // Intermediate CAs in the bundle may be anchors too (swtpm_localca's issuing CA).
  X509_STORE_set_flags(store, X509_V_FLAG_PARTIAL_CHAIN);
  std::string problem;
  if (X509_STORE_CTX_init(ctx, store, cert.native(), nullptr) != 1) {
    problem = "cannot set up the chain check";
  } else if (X509_verify_cert(ctx) != 1) {
    problem = X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx));
  }
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(store);
  return problem;
}

Result<Bytes> random_bytes(std::size_t n) {
  Bytes b(n);
  if (RAND_bytes(b.data(), static_cast<int>(n)) != 1) return Error(Errc::kCrypto, "RAND_bytes");
  return b;
}

std::string error_text(const net::Response& r) {
  auto doc = json::parse(r.body, nullptr, false);
  if (doc.is_object() && doc.contains("error") && doc["error"].is_object() &&
      doc["error"].contains("message") && doc["error"]["message"].is_string()) {
    return printable(doc["error"]["message"].get<std::string>(), 300);
  }
  return "HTTP " + std::to_string(r.status);
}

}  // namespace

json RegisteredAgent::to_json() const {
  return {{"id", id},
          {"url", url},
          {"ek_public", attest::base64_encode(ek_public)},
          {"ek_fingerprint", ek_fingerprint},
          {"ek_trust", ek_trust},
          {"ak_public", attest::base64_encode(ak_public)},
          {"ak_name", to_hex(ak_name)},
          {"tls_fingerprint", tls_fingerprint},
          {"vtpm_ca_certificates", vtpm_ca_certificates}};
}

Result<RegisteredAgent> RegisteredAgent::from_json(const json& v) {
  try {
    RegisteredAgent a;
    a.id = v.at("id").get<std::string>();
    a.url = v.at("url").get<std::string>();
    CTRUST_ASSIGN_OR_RETURN(a.ek_public,
                            attest::base64_decode(v.at("ek_public").get<std::string>(), 4096));
    a.ek_fingerprint = v.at("ek_fingerprint").get<std::string>();
    a.ek_trust = v.at("ek_trust").get<std::string>();
    CTRUST_ASSIGN_OR_RETURN(a.ak_public,
                            attest::base64_decode(v.at("ak_public").get<std::string>(), 4096));
    CTRUST_ASSIGN_OR_RETURN(a.ak_name, from_hex(v.at("ak_name").get<std::string>()));
    a.tls_fingerprint = v.at("tls_fingerprint").get<std::string>();
    a.vtpm_ca_certificates = v.value("vtpm_ca_certificates", std::vector<std::string>{});
    return a;
  } catch (const json::exception& e) {
    return Error(Errc::kFormat, std::string("stored agent identity: ") + e.what());
  }
}

Result<net::HttpClient> agent_client(const RegisteredAgent& agent, const net::TlsIdentity& client,
                                     int timeout_ms) {
  net::ClientOptions options;
  options.identity = client;
  options.pinned_fingerprints = {agent.tls_fingerprint};
  options.timeout_ms = timeout_ms;
  options.connect_timeout_ms = std::min(timeout_ms, 5000);
  options.max_response = attest::kMaxEvidenceBytes;
  return net::HttpClient::create(agent.url, std::move(options));
}

Result<RegisteredAgent> register_agent(const std::string& url, const RegistrationOptions& options) {
  if (url.rfind("https://", 0) != 0) return refused("an agent URL must be https://HOST:PORT");
  if (!options.client) return Error(Errc::kInvalidArgument, "registration needs a client identity");
  // First learn which TLS key the agent answers with: a connection pinned to nothing
  // records the server's key and goes no further.
  std::string tls_fp;
  {
    net::ClientOptions probe;
    probe.identity = options.client;
    probe.pinned_fingerprints = {std::string(64, '0')};
    probe.timeout_ms = options.timeout_ms;
    probe.connect_timeout_ms = std::min(options.timeout_ms, 5000);
    CTRUST_ASSIGN_OR_RETURN(net::HttpClient client, net::HttpClient::create(url, probe));
    (void)client.request("GET", "/v1/health");
    tls_fp = client.server_fingerprint();
    if (tls_fp.empty()) {
      return Error(Errc::kIo, "cannot reach the agent at " + url + " (no TLS handshake)");
    }
  }
  RegisteredAgent reg;
  reg.url = url;
  reg.tls_fingerprint = tls_fp;
  CTRUST_ASSIGN_OR_RETURN(net::HttpClient client,
                          agent_client(reg, *options.client, options.timeout_ms));

  // Identity, with the AK's quote over a fresh nonce bound to the TLS key.
  CTRUST_ASSIGN_OR_RETURN(Bytes nonce, random_bytes(attest::kNonceBytes));
  CTRUST_ASSIGN_OR_RETURN(net::Response idr,
                          client.request("GET", "/v1/identity?nonce=" + to_hex(nonce)));
  if (idr.status != 200) return Error(Errc::kIo, "the agent's identity: " + error_text(idr));
  auto identity = attest::parse_identity(idr.body);
  if (!identity) return refused("the agent's identity: " + identity.error().message());
  reg.id = identity->agent_id;
  if (identity->tls_fingerprint != tls_fp) {
    return refused("the agent names TLS key " + identity->tls_fingerprint +
                   " but answered with key " + tls_fp);
  }

  // 1. The EK.
  auto ek = tpm::TpmPublic::from_tpm2b(identity->ek_public);
  if (!ek) return refused("the agent's EK: " + ek.error().message());
  if (!ek->is_restricted_decrypt())
    return refused("the agent's EK is not a restricted decrypt key");
  CTRUST_ASSIGN_OR_RETURN(crypto::PublicKey ek_key, ek->public_key());
  CTRUST_ASSIGN_OR_RETURN(crypto::Digest ek_fp, ek_key.fingerprint());
  reg.ek_fingerprint = "sha256:" + ek_fp.hex();
  reg.ek_public = identity->ek_public;
  if (identity->ek_certificate && !options.trust.cas.empty()) {
    auto cert = crypto::Certificate::from_der(*identity->ek_certificate);
    if (!cert) return refused("the agent's EK certificate: " + cert.error().message());
    CTRUST_ASSIGN_OR_RETURN(crypto::PublicKey cert_key, cert->public_key());
    CTRUST_ASSIGN_OR_RETURN(crypto::Digest cert_fp, cert_key.fingerprint());
    if (!(cert_fp == ek_fp)) return refused("the agent's EK certificate is for another key");
    CTRUST_ASSIGN_OR_RETURN(std::string problem, ek_chain_problem(*cert, options.trust.cas));
    if (!problem.empty()) {
      if (std::find(options.trust.pins.begin(), options.trust.pins.end(), reg.ek_fingerprint) ==
          options.trust.pins.end()) {
        return refused("the agent's EK certificate (" + cert->subject() +
                       ") does not chain to a configured EK CA: " + problem);
      }
    } else {
      reg.ek_trust = "certificate " + cert->subject();
    }
  }
  if (reg.ek_trust.empty()) {
    if (std::find(options.trust.pins.begin(), options.trust.pins.end(), reg.ek_fingerprint) ==
        options.trust.pins.end()) {
      return refused("the agent's EK " + reg.ek_fingerprint + " is not trusted: " +
                     (identity->ek_certificate ? "its certificate does not chain to an EK CA"
                                               : "it has no EK certificate") +
                     ", and it is not pinned (pin it with --ek-pin " + reg.ek_fingerprint +
                     " or [trust] ek_pins)");
    }
    reg.ek_trust = "pinned";
  }

  // 2. The AK: a restricted signing key, and (below) in the same TPM.
  auto ak = tpm::TpmPublic::from_tpm2b(identity->ak_public);
  if (!ak) return refused("the agent's AK: " + ak.error().message());
  if (!ak->is_restricted_signing())
    return refused("the agent's AK is not a restricted signing key");
  CTRUST_ASSIGN_OR_RETURN(reg.ak_name, ak->name());
  reg.ak_public = identity->ak_public;
  CTRUST_ASSIGN_OR_RETURN(crypto::PublicKey ak_key, ak->public_key());

  // 3. The AK vouches for the TLS key.
  if (!identity->tls_quote) return refused("the agent sent no quote for its TLS key");
  CTRUST_ASSIGN_OR_RETURN(
      tpm::AttestVerdict tv,
      tpm::verify_quote(ak_key, identity->tls_quote->message, identity->tls_quote->signature,
                        ByteView(attest::tls_binding_data(nonce, tls_fp)), nullptr));
  if (!tv.ok()) return refused("the AK's quote for the TLS key: " + tv.problems.front());

  // MakeCredential / ActivateCredential.
  CTRUST_ASSIGN_OR_RETURN(Bytes secret, random_bytes(32));
  CTRUST_ASSIGN_OR_RETURN(tpm::Credential cred, tpm::make_credential(*ek, reg.ak_name, secret));
  attest::ActivateRequest req{cred.credential_blob, cred.secret};
  CTRUST_ASSIGN_OR_RETURN(net::Response ar,
                          client.request("POST", "/v1/activate", attest::to_json(req).dump()));
  if (ar.status != 200) {
    return refused("the agent could not activate the credential: " + error_text(ar) +
                   " (its AK is not in the TPM of its EK)");
  }
  auto proof = attest::parse_activate_response(ar.body);
  if (!proof) return refused("the agent's activation answer: " + proof.error().message());
  if (proof->proof != attest::activation_proof(secret, tls_fp)) {
    return refused("the agent's activation proof is wrong: its AK is not in the TPM of its EK");
  }
  reg.vtpm_ca_certificates = identity->vtpm_ca_certificates;
  return reg;
}

}  // namespace ctrust::verifier
