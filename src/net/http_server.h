// HTTPS server for the agent's API to verifiers and the verifier's REST API.
//
// TLS 1.3 only, with mutual TLS: when client CAs are configured and a client certificate
// is required, a peer without a certificate chaining to one of them fails the handshake
// and never reaches HTTP. Plain HTTP only when asked for (tls = false, for a localhost
// metrics port). Every request goes through, in order: a per-peer token bucket (429 with
// Retry-After), the body-size limit (413), path checks (400, see net/router.h), routing
// (404, or 405 with Allow), then the handler. Handler exceptions become a 500 with a
// generic message; every error is JSON: {"error": {"code": "...", "message": "..."}}.
// TLS handshakes are rate limited per peer as well (a separate bucket, same parameters),
// so a peer cannot make the server do unbounded handshake work either.
//
// Ownership: HttpServer owns its listening socket, worker threads and TLS context;
// destroying it stops it. Handlers must stay valid while it runs.
// Thread safety: call route() only before start(); handlers run concurrently on up to
// `threads` worker threads (one per open connection) and must be thread safe. start()
// and stop() are for the owning thread.
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "crypto/keys.h"
#include "net/tls.h"
#include "util/result.h"

namespace ctrust::net {

struct Request {
  std::string method;  // as sent, upper case ("HEAD" requests are routed to GET routes)
  std::string path;    // as sent, without the query (still percent-encoded)
  std::map<std::string, std::string> query;        // decoded; the first of repeated keys
  std::map<std::string, std::string> path_params;  // decoded, checked as in net/router.h
  std::string body;
  std::string content_type;
  std::string peer_address;      // numeric IP address of the peer
  std::string peer_fingerprint;  // SPKI SHA-256 hex of the client certificate; "" if none
  std::string peer_subject;      // its subject, RFC 2253; "" if none
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

// `body` serialized compactly; invalid UTF-8 in strings is replaced, never thrown about.
Response json_response(int status, const nlohmann::json& body);
// {"error": {"code": code, "message": message}}.
Response error_response(int status, std::string_view code, std::string_view message);
// The response for a request that failed with `e`: the caller's fault (kFormat,
// kInvalidArgument, kTruncated, kUnsupported: 400; kLimit: 413; kNotFound: 404) with its
// message, else nullopt: a failure of the server's own, which the caller logs and answers
// without details.
std::optional<Response> client_error_response(const Error& e);

// "ADDRESS:PORT" ("[V6]:PORT" too) -> address, port; `what` names the setting in errors.
Result<std::pair<std::string, int>> parse_listen(const std::string& listen,
                                                 const std::string& what);

using Handler = std::function<Response(const Request&)>;

struct ServerOptions {
  std::string address = "127.0.0.1";
  int port = 0;  // 0: an ephemeral port (see HttpServer::port())
  bool tls = true;
  std::optional<TlsIdentity> identity;  // required with tls
  // Trust anchors for client certificates. With require_client_cert, they must be given,
  // and a client certificate chaining to one of them (with clientAuth usage, if it has an
  // extended key usage) is required at the handshake. Without require_client_cert, a
  // client may present none; one that presents a certificate must still chain.
  std::vector<crypto::Certificate> client_cas;
  bool require_client_cert = true;
  std::size_t max_body = std::size_t{1} << 20;
  int read_timeout_ms = 5000;   // per read, and for the whole TLS handshake step
  int write_timeout_ms = 5000;  // per write
  int idle_timeout_ms = 5000;   // keep-alive; rounded up to whole seconds
  double rate_per_second = 50;  // per peer address token bucket; 0 disables
  double burst = 100;           // 0 disables
  int threads = 8;              // worker threads = concurrent connections served
};

class HttpServer {
 public:
  // Checks the options and builds the TLS context; does not bind yet.
  static Result<std::unique_ptr<HttpServer>> create(ServerOptions options);

  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;
  ~HttpServer();

  // `pattern` as in net/router.h, e.g. "/v1/agents/{id}/containers/{cid}". A malformed or
  // clashing pattern is reported by start(); calls after start() are ignored.
  void route(std::string method, std::string pattern, Handler handler);

  // Binds (an Error if the address is in use) and serves on a background thread.
  Result<void> start();
  // The bound port (after start()).
  int port() const;
  // Stops accepting, lets open connections finish their current request and joins the
  // threads (waits at most about idle_timeout for idle keep-alive connections).
  void stop();

 private:
  struct Impl;
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ctrust::net
