// HTTP(S) client for the verifier (calling agents and webhooks) and the CLI.
//
// https only speaks TLS 1.3. The server is authenticated one of three ways:
//   - pinned_fingerprints: the server's leaf key (SPKI SHA-256) must be one of them; no
//     CA or hostname check (an agent's self-signed key, pinned through attestation);
//   - ca_certs: the chain must lead to one of them and name the host (DNS or IP SAN);
//   - neither: the system's default CAs, and the host name.
// A client certificate (identity) is presented when the server asks (mTLS). The
// connection is kept alive between requests; responses larger than max_response are an
// Error. HTTP error statuses are responses, not Errors; Errors are for transport, TLS and
// limit failures, with one line that names the URL and says what went wrong.
//
// Ownership: an HttpClient owns its TLS context and at most one connection. It is cheap
// (one SSL_CTX and no thread), so a verifier can keep one per agent.
// Thread safety: a client is used by one thread at a time; distinct clients are
// independent. The system CA store is loaded once per process and shared.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/keys.h"
#include "net/http_server.h"
#include "net/tls.h"
#include "util/result.h"

namespace ctrust::net {

struct ClientOptions {
  std::optional<TlsIdentity> identity;  // client certificate for mTLS
  // If non-empty: the server's leaf SPKI SHA-256 (lowercase hex, as spki_fingerprint())
  // must be one of these, and nothing else is checked.
  std::vector<std::string> pinned_fingerprints;
  // Else: verify the chain and the host name against these; if both are empty (https):
  // against the system's default CAs.
  std::vector<crypto::Certificate> ca_certs;
  int connect_timeout_ms = 3000;  // TCP connect, and the TLS handshake
  int timeout_ms = 10000;         // per read and write, and for the whole response body
  std::size_t max_response = std::size_t{64} << 20;
};

class HttpClient {
 public:
  // `base_url`: "http://host:port" or "https://host:port" (port optional; IPv6 hosts in
  // brackets; nothing after the port but an optional "/").
  static Result<HttpClient> create(const std::string& base_url, ClientOptions options);

  HttpClient(HttpClient&& other) noexcept;
  HttpClient& operator=(HttpClient&& other) noexcept;
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;
  ~HttpClient();

  // `path` starts with '/' and is sent as given (percent-encode it yourself; a query may
  // follow '?'). A Content-Type header is sent when there is a body, or for POST, PUT
  // and PATCH. The response's content_type is its Content-Type header ("" if none).
  Result<Response> request(std::string_view method, std::string_view path,
                           std::string_view body = {},
                           std::string_view content_type = "application/json");

  // The SPKI SHA-256 of the server's leaf certificate on the last TLS connection made
  // (also when that connection was refused); "" before any, and for http.
  const std::string& server_fingerprint() const;

  const std::string& base_url() const;

 private:
  struct Impl;
  explicit HttpClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ctrust::net
