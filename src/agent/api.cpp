#include "agent/api.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include "util/file.h"
#include "util/text.h"

namespace ctrust::agent {

namespace {

using nlohmann::json;

// A failure of the request (the client's fault) or of the agent (ours, logged, no details).
net::Response failure(const Error& e, const char* what) {
  if (auto r = net::client_error_response(e)) return *r;
  spdlog::error("api: {}: {}", what, e.message());
  return net::error_response(500, "internal", std::string(what) + " failed on the agent");
}

}  // namespace

Result<net::TlsIdentity> load_or_make_tls_identity(const std::string& dir,
                                                   const std::string& agent_id) {
  std::string key_path = dir + "/key.pem";
  std::string cert_path = dir + "/cert.pem";
  struct stat st {};
  if (::stat(key_path.c_str(), &st) == 0 && ::stat(cert_path.c_str(), &st) == 0) {
    return net::load_identity(key_path, cert_path);
  }
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return errno_error("creating " + dir, errno);
  }
  CTRUST_ASSIGN_OR_RETURN(crypto::PrivateKey key,
                          crypto::PrivateKey::generate(crypto::KeyType::kEcdsaP256));
  CTRUST_ASSIGN_OR_RETURN(crypto::PublicKey pub, key.public_key());
  net::CertRequest req;
  req.subject_key = &pub;
  req.common_name = agent_id;
  req.dns_names = {agent_id, "localhost"};
  req.ip_addresses = {"127.0.0.1"};
  req.days = 3650;
  req.usage = net::CertRequest::kServer;
  req.issuer_key = &key;
  CTRUST_ASSIGN_OR_RETURN(crypto::Certificate cert, net::make_certificate(req));
  CTRUST_TRY(key.save_pem_file(key_path));
  CTRUST_ASSIGN_OR_RETURN(std::string pem, cert.to_pem());
  CTRUST_TRY(write_file_atomic(cert_path, as_bytes(pem), 0644));
  spdlog::info("api: made a TLS key for {} under {}", agent_id, dir);
  return net::TlsIdentity{std::move(key), std::move(cert), {}};
}

Result<std::unique_ptr<net::HttpServer>> start_api(const AgentConfig& config,
                                                   net::TlsIdentity identity,
                                                   AttestationSource source) {
  CTRUST_ASSIGN_OR_RETURN(auto where, net::parse_listen(config.api_listen, "api.listen"));
  net::ServerOptions options;
  options.address = where.first;
  options.port = where.second;
  options.tls = true;
  options.identity = std::move(identity);
  CTRUST_ASSIGN_OR_RETURN(options.client_cas, net::load_certificates(config.api_client_ca));
  options.require_client_cert = true;
  options.max_body = config.api_max_body;
  options.rate_per_second = config.api_rate;
  options.burst = config.api_rate * 2;
  options.threads = 8;
  CTRUST_ASSIGN_OR_RETURN(std::unique_ptr<net::HttpServer> server,
                          net::HttpServer::create(std::move(options)));
  auto shared = std::make_shared<AttestationSource>(std::move(source));

  server->route("GET", "/v1/health", [](const net::Request&) {
    return net::json_response(200, json{{"ok", true}});
  });
  server->route("GET", "/v1/identity", [shared](const net::Request& req) {
    std::optional<Bytes> nonce;
    if (auto it = req.query.find("nonce"); it != req.query.end()) {
      auto n = from_hex(it->second);
      if (!n || n->size() != attest::kNonceBytes || it->second != to_hex(*n)) {
        return net::error_response(400, "bad-request",
                                   "nonce must be 64 lowercase hex digits (32 bytes)");
      }
      nonce = std::move(*n);
    }
    auto id = shared->identity(nonce);
    if (!id) return failure(id.error(), "identity");
    return net::json_response(200, attest::to_json(*id));
  });
  server->route("POST", "/v1/activate", [shared](const net::Request& req) {
    auto parsed = attest::parse_activate_request(req.body);
    if (!parsed) return failure(parsed.error(), "activate");
    auto answer = shared->activate(*parsed);
    if (!answer) {
      // A credential not made for this TPM's EK and AK fails in the TPM: the client's fault.
      if (answer.error().code() == Errc::kTpm) {
        return net::error_response(400, "activation-failed",
                                   "the TPM refused the credential: it was not made for this "
                                   "host's EK and AK");
      }
      return failure(answer.error(), "activate");
    }
    return net::json_response(200, attest::to_json(*answer));
  });
  server->route("POST", "/v1/challenge", [shared](const net::Request& req) {
    auto parsed = attest::parse_challenge(req.body);
    if (!parsed) return failure(parsed.error(), "challenge");
    auto evidence = shared->answer(*parsed);
    if (!evidence) {
      // The agent's own answer over a limit is not the request's fault (no 413).
      if (evidence.error().code() == Errc::kLimit) {
        return net::error_response(500, "evidence-too-large", evidence.error().message());
      }
      return failure(evidence.error(), "challenge");
    }
    return net::json_response(200, attest::to_json(*evidence));
  });
  CTRUST_TRY(server->start());
  spdlog::info("api: listening on {} (TLS 1.3, client certificates from {} CA(s))",
               config.api_listen, config.api_client_ca.size());
  return server;
}

}  // namespace ctrust::agent
