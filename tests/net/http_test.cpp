// The server and client over real sockets on 127.0.0.1 (ephemeral ports).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "net/http_client.h"
#include "net/http_server.h"
#include "net/tls.h"
#include "util/unique_handle.h"

namespace ctrust::net {
namespace {

using namespace std::chrono_literals;

crypto::PrivateKey new_key() {
  auto key = crypto::PrivateKey::generate(crypto::KeyType::kEcdsaP256);
  if (!key) std::abort();
  return std::move(key).value();
}

crypto::Certificate issue(const crypto::PrivateKey& key, const std::string& cn,
                          CertRequest::Usage usage, const crypto::PrivateKey& issuer_key,
                          const crypto::Certificate* issuer_cert,
                          std::vector<std::string> dns = {"localhost"},
                          std::vector<std::string> ips = {"127.0.0.1"}, bool is_ca = false) {
  auto pub = key.public_key();
  if (!pub) std::abort();
  CertRequest req;
  req.subject_key = &*pub;
  req.common_name = cn;
  req.dns_names = std::move(dns);
  req.ip_addresses = std::move(ips);
  req.usage = usage;
  req.is_ca = is_ca;
  req.issuer_key = &issuer_key;
  req.issuer_cert = issuer_cert;
  auto cert = make_certificate(req);
  if (!cert) {
    ADD_FAILURE() << cert.error().message();
    std::abort();
  }
  return std::move(cert).value();
}

// One PKI for the whole binary: a CA with a server and a client certificate, another CA
// with a client certificate, a self-signed server identity (an agent's pinned key) and a
// server certificate for a different host name.
struct Pki {
  Pki()
      : ca_key(new_key()),
        ca(issue(ca_key, "Test CA", CertRequest::kServer, ca_key, nullptr, {}, {}, true)),
        other_ca_key(new_key()),
        other_ca(issue(other_ca_key, "Other CA", CertRequest::kServer, other_ca_key, nullptr, {},
                       {}, true)),
        server{new_key(), ca, {}},
        client{new_key(), ca, {}},
        other_client{new_key(), ca, {}},
        self_signed{new_key(), ca, {}},
        wrong_host{new_key(), ca, {}} {
    server.cert = issue(server.key, "server", CertRequest::kServer, ca_key, &ca);
    client.cert = issue(client.key, "verifier-1", CertRequest::kClient, ca_key, &ca, {}, {});
    other_client.cert =
        issue(other_client.key, "intruder", CertRequest::kClient, other_ca_key, &other_ca, {}, {});
    self_signed.cert =
        issue(self_signed.key, "agent", CertRequest::kServer, self_signed.key, nullptr);
    wrong_host.cert =
        issue(wrong_host.key, "other", CertRequest::kServer, ca_key, &ca, {"other.example"}, {});
  }
  crypto::PrivateKey ca_key;
  crypto::Certificate ca;
  crypto::PrivateKey other_ca_key;
  crypto::Certificate other_ca;
  TlsIdentity server;
  TlsIdentity client;
  TlsIdentity other_client;
  TlsIdentity self_signed;
  TlsIdentity wrong_host;
};

const Pki& pki() {
  static const Pki* const kInstance = new Pki();
  return *kInstance;
}

std::string fingerprint(const crypto::Certificate& cert) {
  auto fp = spki_fingerprint(cert);
  if (!fp) std::abort();
  return *fp;
}

ServerOptions mtls_options() {
  ServerOptions options;
  options.identity = pki().server;
  options.client_cas = {pki().ca};
  options.rate_per_second = 0;  // most tests make many requests quickly
  return options;
}

struct TestServer {
  std::unique_ptr<HttpServer> server;
  std::shared_ptr<std::atomic<int>> calls = std::make_shared<std::atomic<int>>(0);
  int port() const { return server->port(); }
  std::string url(bool tls = true) const {
    return std::string(tls ? "https" : "http") + "://127.0.0.1:" + std::to_string(port());
  }
};

TestServer start_server(ServerOptions options) {
  TestServer t;
  auto server = HttpServer::create(std::move(options));
  if (!server) {
    ADD_FAILURE() << server.error().message();
    return t;
  }
  t.server = std::move(server).value();
  auto calls = t.calls;
  t.server->route("POST", "/v1/agents/{id}/containers/{cid}", [calls](const Request& r) {
    ++*calls;
    auto body = nlohmann::json::parse(r.body, nullptr, false);
    if (body.is_discarded()) return error_response(400, "bad_json", "body is not JSON");
    nlohmann::json out = {{"id", r.path_params.at("id")},
                          {"cid", r.path_params.at("cid")},
                          {"echo", body},
                          {"content_type", r.content_type},
                          {"peer", r.peer_fingerprint},
                          {"subject", r.peer_subject},
                          {"address", r.peer_address},
                          {"query", r.query}};
    return json_response(201, out);
  });
  t.server->route("GET", "/v1/ping", [calls](const Request&) {
    ++*calls;
    return json_response(200, {{"ok", true}});
  });
  t.server->route("DELETE", "/v1/ping", [calls](const Request&) {
    ++*calls;
    return json_response(200, {{"deleted", true}});
  });
  t.server->route("GET", "/throw", [](const Request&) -> Response {
    throw std::runtime_error("secret detail /etc/shadow");
  });
  t.server->route("GET", "/files/{name}", [](const Request& r) {
    return json_response(200, {{"name", r.path_params.at("name")}});
  });
  t.server->route("GET", "/big/{n}", [](const Request& r) {
    Response res;
    res.content_type = "application/octet-stream";
    res.body.assign(std::stoul(r.path_params.at("n")), 'x');
    return res;
  });
  auto started = t.server->start();
  if (!started) ADD_FAILURE() << started.error().message();
  return t;
}

ClientOptions mtls_client() {
  ClientOptions options;
  options.identity = pki().client;
  options.ca_certs = {pki().ca};
  return options;
}

HttpClient make_client(const std::string& url, ClientOptions options) {
  auto client = HttpClient::create(url, std::move(options));
  if (!client) {
    ADD_FAILURE() << client.error().message();
    std::abort();
  }
  return std::move(client).value();
}

nlohmann::json parse(const std::string& body) { return nlohmann::json::parse(body); }

UniqueFd connect_tcp(int port) {
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return {};
  return fd;
}

// Waits up to `limit` for the peer to close `fd`; returns how long it took, or nullopt.
std::optional<std::chrono::milliseconds> wait_for_close(int fd, std::chrono::milliseconds limit) {
  auto start = std::chrono::steady_clock::now();
  for (;;) {
    auto left = limit - std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::steady_clock::now() - start);
    if (left <= 0ms) return std::nullopt;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) > 0) {
      char buf[256];
      ssize_t n = recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) {
        return std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::steady_clock::now() - start);
      }
    }
  }
}

TEST(Http, MutualTlsRoundTripWithPathParamsAndJson) {
  auto server = start_server(mtls_options());
  auto client = make_client(server.url(), mtls_client());
  auto res = client.request("POST", "/v1/agents/node%201/containers/c-42?verbose=1&x=a%20b",
                            R"({"nonce":"abc","n":[1,2]})");
  ASSERT_TRUE(res.ok()) << res.error().message();
  EXPECT_EQ(res->status, 201);
  EXPECT_EQ(res->content_type, "application/json");
  auto body = parse(res->body);
  EXPECT_EQ(body["id"], "node 1");
  EXPECT_EQ(body["cid"], "c-42");
  EXPECT_EQ(body["echo"]["nonce"], "abc");
  EXPECT_EQ(body["echo"]["n"][1], 2);
  EXPECT_EQ(body["content_type"], "application/json");
  EXPECT_EQ(body["peer"], fingerprint(pki().client.cert));
  EXPECT_EQ(body["subject"], "CN=verifier-1");
  EXPECT_EQ(body["address"], "127.0.0.1");
  EXPECT_EQ(body["query"]["verbose"], "1");
  EXPECT_EQ(body["query"]["x"], "a b");
  EXPECT_EQ(client.server_fingerprint(), fingerprint(pki().server.cert));

  // Keep-alive: more requests on the same client, including a bodyless DELETE.
  for (int i = 0; i < 5; ++i) {
    auto ping = client.request("GET", "/v1/ping");
    ASSERT_TRUE(ping.ok()) << ping.error().message();
    EXPECT_EQ(ping->status, 200);
    EXPECT_EQ(parse(ping->body)["ok"], true);
  }
  auto start = std::chrono::steady_clock::now();
  auto del = client.request("DELETE", "/v1/ping");
  ASSERT_TRUE(del.ok()) << del.error().message();
  EXPECT_EQ(del->status, 200);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s) << "an empty DELETE must not wait";
  auto bad_json = client.request("POST", "/v1/agents/a/containers/b", "not json");
  ASSERT_TRUE(bad_json.ok());
  EXPECT_EQ(bad_json->status, 400);
  EXPECT_EQ(*server.calls, 8);
}

TEST(Http, NoClientCertificateNoAccess) {
  auto server = start_server(mtls_options());
  ClientOptions options;
  options.ca_certs = {pki().ca};
  auto client = make_client(server.url(), options);
  auto res = client.request("GET", "/v1/ping");
  ASSERT_FALSE(res.ok());
  EXPECT_EQ(*server.calls, 0);
  std::printf("no client certificate: %s\n", res.error().message().c_str());
}

TEST(Http, ClientCertificateFromAnotherCaIsRefused) {
  auto server = start_server(mtls_options());
  ClientOptions options;
  options.identity = pki().other_client;
  options.ca_certs = {pki().ca};
  auto client = make_client(server.url(), options);
  auto res = client.request("GET", "/v1/ping");
  ASSERT_FALSE(res.ok());
  EXPECT_EQ(*server.calls, 0);
  std::printf("foreign client certificate: %s\n", res.error().message().c_str());
  // A server certificate is not a client certificate either (no clientAuth).
  options.identity = pki().server;
  auto as_server = make_client(server.url(), options);
  EXPECT_FALSE(as_server.request("GET", "/v1/ping").ok());
}

TEST(Http, PinnedServerKey) {
  ServerOptions options = mtls_options();
  options.identity = pki().self_signed;
  auto server = start_server(options);
  const std::string agent_fp = fingerprint(pki().self_signed.cert);

  ClientOptions pinned;
  pinned.identity = pki().client;
  pinned.pinned_fingerprints = {fingerprint(pki().server.cert), agent_fp};
  auto good = make_client(server.url(), pinned);
  auto res = good.request("GET", "/v1/ping");
  ASSERT_TRUE(res.ok()) << res.error().message();
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(good.server_fingerprint(), agent_fp);

  pinned.pinned_fingerprints = {fingerprint(pki().server.cert)};
  auto bad = make_client(server.url(), pinned);
  res = bad.request("GET", "/v1/ping");
  ASSERT_FALSE(res.ok());
  EXPECT_NE(res.error().message().find("server key " + agent_fp + " is not the pinned key"),
            std::string::npos)
      << res.error().message();
  EXPECT_EQ(bad.server_fingerprint(), agent_fp);
  EXPECT_EQ(*server.calls, 1);

  // Without a pin, the self-signed certificate is not trusted by the CA.
  auto unpinned = make_client(server.url(), mtls_client());
  res = unpinned.request("GET", "/v1/ping");
  ASSERT_FALSE(res.ok());
  EXPECT_NE(res.error().message().find("not trusted"), std::string::npos) << res.error().message();

  pinned.pinned_fingerprints = {"abc"};
  EXPECT_FALSE(HttpClient::create(server.url(), pinned).ok());
}

TEST(Http, CaModeChecksTheHostName) {
  ServerOptions options = mtls_options();
  options.identity = pki().wrong_host;  // a valid certificate, for other.example only
  auto server = start_server(options);
  auto client = make_client(server.url(), mtls_client());
  auto res = client.request("GET", "/v1/ping");
  ASSERT_FALSE(res.ok());
  std::printf("wrong host: %s\n", res.error().message().c_str());
  EXPECT_EQ(*server.calls, 0);
  // The localhost name in the right certificate works too.
  auto right = start_server(mtls_options());
  auto by_name =
      make_client("https://localhost:" + std::to_string(right.port()) + "/", mtls_client());
  auto ok = by_name.request("GET", "/v1/ping");
  EXPECT_TRUE(ok.ok()) << ok.error().message();
}

// A raw OpenSSL client, to try protocol versions the ctrust client never offers.
bool raw_tls_connect(int port, int max_version) {
  UniquePtr<SSL_CTX, SSL_CTX_free> ctx(SSL_CTX_new(TLS_client_method()));
  SSL_CTX_set_max_proto_version(ctx.get(), max_version);
  SSL_CTX_use_certificate(ctx.get(), pki().client.cert.native());
  SSL_CTX_use_PrivateKey(ctx.get(), pki().client.key.native());
  UniquePtr<SSL, SSL_free> ssl(SSL_new(ctx.get()));
  UniqueFd fd = connect_tcp(port);
  SSL_set_fd(ssl.get(), fd.get());
  bool connected = SSL_connect(ssl.get()) == 1;
  if (connected) {
    // TLS 1.3 finishes the client side before the server has checked the client: a
    // request and its answer prove the server accepted.
    const std::string req = "GET /v1/ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    SSL_write(ssl.get(), req.data(), static_cast<int>(req.size()));
    char buf[512];
    connected = SSL_read(ssl.get(), buf, sizeof(buf)) > 0;
  }
  ERR_clear_error();
  return connected;
}

TEST(Http, Tls12ClientCannotConnect) {
  auto server = start_server(mtls_options());
  EXPECT_FALSE(raw_tls_connect(server.port(), TLS1_2_VERSION));
  EXPECT_TRUE(raw_tls_connect(server.port(), TLS1_3_VERSION)) << "control";
  EXPECT_EQ(*server.calls, 1);
}

TEST(Http, BodyOverTheLimitIs413) {
  auto server = start_server(mtls_options());
  auto client = make_client(server.url(), mtls_client());
  std::string big(2 << 20, 'a');
  auto res = client.request("POST", "/v1/agents/a/containers/b", big);
  ASSERT_TRUE(res.ok()) << res.error().message();
  EXPECT_EQ(res->status, 413);
  EXPECT_EQ(parse(res->body)["error"]["code"], "payload_too_large");
  EXPECT_EQ(*server.calls, 0);
  // The connection (or a new one) still serves.
  auto ok = client.request("GET", "/v1/ping");
  ASSERT_TRUE(ok.ok()) << ok.error().message();
  EXPECT_EQ(ok->status, 200);
}

std::string raw_exchange(int port, const std::string& request) {
  UniqueFd fd = connect_tcp(port);
  std::size_t off = 0;
  while (off < request.size()) {
    ssize_t n = send(fd.get(), request.data() + off, request.size() - off, MSG_NOSIGNAL);
    if (n <= 0) break;
    off += static_cast<std::size_t>(n);
  }
  std::string response;
  char buf[4096];
  for (;;) {
    pollfd p{fd.get(), POLLIN, 0};
    if (poll(&p, 1, 5000) <= 0) break;
    ssize_t n = recv(fd.get(), buf, sizeof(buf), 0);
    if (n <= 0) break;
    response.append(buf, static_cast<std::size_t>(n));
    if (response.find("\r\n\r\n") != std::string::npos && response.find('}') != std::string::npos) {
      break;
    }
  }
  return response;
}

TEST(Http, PlainHttpOnlyWhenAskedAndChunkedBodiesAreLimited) {
  ServerOptions options;
  options.tls = false;
  options.max_body = 1000;
  options.rate_per_second = 0;
  auto server = start_server(options);
  auto client = make_client(server.url(false), {});
  auto res = client.request("GET", "/v1/ping");
  ASSERT_TRUE(res.ok()) << res.error().message();
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(client.server_fingerprint(), "");

  // A chunked body has no length up front; it is cut off at max_body.
  std::string chunked =
      "POST /v1/agents/a/containers/b HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
      "Transfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 10; ++i) chunked += "200\r\n" + std::string(0x200, ' ') + "\r\n";
  chunked += "0\r\n\r\n";
  std::string answer = raw_exchange(server.port(), chunked);
  EXPECT_EQ(answer.rfind("HTTP/1.1 413", 0), 0U) << answer;
  EXPECT_NE(answer.find("payload_too_large"), std::string::npos) << answer;
  // A small chunked body goes through.
  std::string small =
      "POST /v1/agents/a/containers/b HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
      "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
  answer = raw_exchange(server.port(), small);
  EXPECT_EQ(answer.rfind("HTTP/1.1 201", 0), 0U) << answer;

  // A TLS server without an identity, or mTLS without CAs, is refused up front.
  ServerOptions tls_without_identity;
  EXPECT_FALSE(HttpServer::create(tls_without_identity).ok());
  ServerOptions without_cas;
  without_cas.identity = pki().server;
  EXPECT_FALSE(HttpServer::create(without_cas).ok());
  without_cas.require_client_cert = false;
  EXPECT_TRUE(HttpServer::create(without_cas).ok());
  // TLS options for an http:// URL are a mistake.
  EXPECT_FALSE(HttpClient::create(server.url(false), mtls_client()).ok());
}

TEST(Http, RateLimitAnswers429AfterTheBurst) {
  ServerOptions options = mtls_options();
  options.rate_per_second = 0.5;
  options.burst = 5;
  auto server = start_server(options);
  auto client = make_client(server.url(), mtls_client());
  for (int i = 0; i < 5; ++i) {
    auto res = client.request("GET", "/v1/ping");
    ASSERT_TRUE(res.ok()) << res.error().message();
    EXPECT_EQ(res->status, 200) << i;
  }
  auto res = client.request("GET", "/v1/ping");
  ASSERT_TRUE(res.ok()) << res.error().message();
  EXPECT_EQ(res->status, 429);
  EXPECT_EQ(parse(res->body)["error"]["code"], "rate_limited");
  std::string retry_after;
  for (const auto& [name, value] : res->headers) {
    if (name == "Retry-After") retry_after = value;
  }
  EXPECT_EQ(retry_after, "2");
  EXPECT_EQ(*server.calls, 5);
}

TEST(Http, HandshakesAreRateLimitedToo) {
  ServerOptions options = mtls_options();
  options.rate_per_second = 0.01;
  options.burst = 3;
  auto server = start_server(options);
  int ok = 0;
  for (int i = 0; i < 5; ++i) {
    auto client = make_client(server.url(), mtls_client());  // a new connection each
    auto res = client.request("GET", "/v1/ping");
    ok += res.ok() ? 1 : 0;
  }
  EXPECT_EQ(ok, 3);
}

TEST(Http, NotFoundAndMethodNotAllowedAreJson) {
  auto server = start_server(mtls_options());
  auto client = make_client(server.url(), mtls_client());
  auto res = client.request("GET", "/v1/nothing");
  ASSERT_TRUE(res.ok());
  EXPECT_EQ(res->status, 404);
  EXPECT_EQ(parse(res->body)["error"]["code"], "not_found");
  res = client.request("PUT", "/v1/ping", "{}");
  ASSERT_TRUE(res.ok());
  EXPECT_EQ(res->status, 405);
  EXPECT_EQ(parse(res->body)["error"]["code"], "method_not_allowed");
  bool allow = false;
  for (const auto& [name, value] : res->headers) allow |= name == "Allow" && value == "GET, DELETE";
  EXPECT_TRUE(allow);
  res = client.request("PATCH", "/v1/nothing", "{}");
  ASSERT_TRUE(res.ok());
  EXPECT_EQ(res->status, 404);
  res = client.request("HEAD", "/v1/ping");
  ASSERT_TRUE(res.ok()) << res.error().message();
  EXPECT_EQ(res->status, 200);
  EXPECT_TRUE(res->body.empty());
}

TEST(Http, HandlerExceptionIsAGeneric500) {
  auto server = start_server(mtls_options());
  auto client = make_client(server.url(), mtls_client());
  auto res = client.request("GET", "/throw");
  ASSERT_TRUE(res.ok());
  EXPECT_EQ(res->status, 500);
  EXPECT_EQ(parse(res->body)["error"]["code"], "internal");
  EXPECT_EQ(res->body.find("secret"), std::string::npos);
  for (const auto& [name, value] : res->headers) {
    EXPECT_EQ(value.find("secret"), std::string::npos) << name;
  }
  EXPECT_EQ(client.request("GET", "/v1/ping")->status, 200);
}

TEST(Http, DotDotAndEncodedSlashesAreRejected) {
  auto server = start_server(mtls_options());
  auto client = make_client(server.url(), mtls_client());
  for (const char* path : {"/files/..", "/files/%2e%2e", "/files/a%2Fb", "/files/a%00b",
                           "/files/../v1/ping", "/v1/../v1/ping"}) {
    auto res = client.request("GET", path);
    ASSERT_TRUE(res.ok()) << path << ": " << res.error().message();
    EXPECT_EQ(res->status, 400) << path;
    EXPECT_EQ(parse(res->body)["error"]["code"], "bad_path") << path;
  }
  auto ok = client.request("GET", "/files/a.b");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(parse(ok->body)["name"], "a.b");
  EXPECT_FALSE(client.request("GET", "/files/a b").ok()) << "unencoded space";
  EXPECT_FALSE(client.request("GET", "no-slash").ok());
  EXPECT_FALSE(client.request("GET", "/x\r\nInjected: 1").ok());
}

TEST(Http, LongTargets) {
  auto server = start_server(mtls_options());
  auto client = make_client(server.url(), mtls_client());
  // Near httplib's 8 KiB request-line limit the routing still works (and its catch-all
  // regex does not exhaust the worker's stack)...
  std::string name(8000, 'a');
  auto res = client.request("GET", "/files/" + name);
  ASSERT_TRUE(res.ok()) << res.error().message();
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(parse(res->body)["name"], name);
  // ... and beyond it the answer is a JSON 414.
  res = client.request("GET", "/files/" + std::string(9000, 'a'));
  ASSERT_TRUE(res.ok()) << res.error().message();
  EXPECT_EQ(res->status, 414);
  EXPECT_EQ(parse(res->body)["error"]["code"], "uri_too_long");
}

TEST(Http, SlowClientDoesNotBlockOthersAndIsCutOff) {
  ServerOptions options = mtls_options();
  options.read_timeout_ms = 300;
  options.threads = 2;
  auto server = start_server(options);
  UniqueFd slow = connect_tcp(server.port());  // connects, sends nothing
  ASSERT_TRUE(slow.valid());
  auto client = make_client(server.url(), mtls_client());
  auto start = std::chrono::steady_clock::now();
  auto res = client.request("GET", "/v1/ping");
  ASSERT_TRUE(res.ok()) << res.error().message();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 250ms);
  auto closed_after = wait_for_close(slow.get(), 3000ms);
  ASSERT_TRUE(closed_after.has_value()) << "the server kept a silent connection";
  EXPECT_LT(*closed_after, 1500ms);
  std::printf("silent connection closed after %lld ms\n",
              static_cast<long long>(closed_after->count()));
}

TEST(Http, MaxResponseIsEnforced) {
  auto server = start_server(mtls_options());
  ClientOptions options = mtls_client();
  options.max_response = 10000;
  auto client = make_client(server.url(), options);
  auto ok = client.request("GET", "/big/10000");
  ASSERT_TRUE(ok.ok()) << ok.error().message();
  EXPECT_EQ(ok->body.size(), 10000U);
  auto res = client.request("GET", "/big/10001");
  ASSERT_FALSE(res.ok());
  EXPECT_EQ(res.error().code(), Errc::kLimit);
  EXPECT_NE(res.error().message().find("larger than 10000 bytes"), std::string::npos);
  auto again = client.request("GET", "/v1/ping");
  ASSERT_TRUE(again.ok()) << again.error().message();
}

TEST(Http, PortInUseIsAnError) {
  auto first = start_server(mtls_options());
  ServerOptions options = mtls_options();
  options.port = first.port();
  auto second = HttpServer::create(options);
  ASSERT_TRUE(second.ok());
  auto started = (*second)->start();
  ASSERT_FALSE(started.ok());
  EXPECT_NE(started.error().message().find(std::to_string(first.port())), std::string::npos);
  std::printf("port in use: %s\n", started.error().message().c_str());
}

TEST(Http, IdleKeepAliveClosedByTheServerIsReplaced) {
  ServerOptions options = mtls_options();
  options.idle_timeout_ms = 1000;
  auto server = start_server(options);
  auto client = make_client(server.url(), mtls_client());
  ASSERT_TRUE(client.request("GET", "/v1/ping").ok());
  std::this_thread::sleep_for(2500ms);
  auto res = client.request("POST", "/v1/agents/a/containers/b", "{}");
  ASSERT_TRUE(res.ok()) << res.error().message();
  EXPECT_EQ(res->status, 201);
}

TEST(Http, PeersThatVanishMidResponseDoNotKillTheProcess) {
  auto server = start_server(mtls_options());
  for (int i = 0; i < 5; ++i) {
    UniquePtr<SSL_CTX, SSL_CTX_free> ctx(SSL_CTX_new(TLS_client_method()));
    SSL_CTX_use_certificate(ctx.get(), pki().client.cert.native());
    SSL_CTX_use_PrivateKey(ctx.get(), pki().client.key.native());
    UniquePtr<SSL, SSL_free> ssl(SSL_new(ctx.get()));
    UniqueFd fd = connect_tcp(server.port());
    SSL_set_fd(ssl.get(), fd.get());
    ASSERT_EQ(SSL_connect(ssl.get()), 1);
    const std::string req = "GET /big/8000000 HTTP/1.1\r\nHost: x\r\n\r\n";
    SSL_write(ssl.get(), req.data(), static_cast<int>(req.size()));
    char buf[100];
    SSL_read(ssl.get(), buf, sizeof(buf));
    linger hard{1, 0};  // RST on close
    setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &hard, sizeof(hard));
  }
  ERR_clear_error();
  std::this_thread::sleep_for(200ms);
  auto client = make_client(server.url(), mtls_client());
  EXPECT_EQ(client.request("GET", "/v1/ping")->status, 200);
}

TEST(Http, BadUrls) {
  for (const char* url :
       {"ftp://h:1", "https://", "https://h:0", "https://h:99999", "https://h:1/path",
        "https://user@h:1", "https://::1:443", "https://[::1", "https://h:"}) {
    EXPECT_FALSE(HttpClient::create(url, {}).ok()) << url;
  }
  EXPECT_TRUE(HttpClient::create("https://[::1]:8443", {}).ok());
  EXPECT_TRUE(HttpClient::create("http://example.com", {}).ok());
  auto refused = HttpClient::create("http://127.0.0.1:1", {});
  ASSERT_TRUE(refused.ok());
  auto res = refused->request("GET", "/");
  ASSERT_FALSE(res.ok());
  std::printf("refused: %s\n", res.error().message().c_str());
}

// Not a check: the numbers for docs/PERFORMANCE.md.
TEST(HttpPerf, KeepAliveRequestsAndHandshakesPerSecond) {
  auto server = start_server(mtls_options());
  auto client = make_client(server.url(), mtls_client());
  const std::string body = R"({"nonce":"0123456789abcdef","pcrs":[0,1,2,3,4,5,6,7]})";
  ASSERT_TRUE(client.request("POST", "/v1/agents/a/containers/b", body).ok());
  int n = 0;
  auto start = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - start < 1s) {
    auto res = client.request("POST", "/v1/agents/a/containers/b", body);
    ASSERT_TRUE(res.ok() && res->status == 201);
    ++n;
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("keep-alive mTLS JSON POST: %.0f requests/s (%d in %.2f s)\n", n / secs, n, secs);

  n = 0;
  start = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - start < 1s) {
    auto fresh = make_client(server.url(), mtls_client());
    auto res = fresh.request("POST", "/v1/agents/a/containers/b", body);
    ASSERT_TRUE(res.ok() && res->status == 201);
    ++n;
  }
  secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("new connection per request (full mTLS handshake, P-256): %.0f /s (%d in %.2f s)\n",
              n / secs, n, secs);
}

}  // namespace
}  // namespace ctrust::net
