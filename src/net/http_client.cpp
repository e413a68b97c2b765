#include "net/http_client.h"

#include <fcntl.h>
#include <httplib.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <csignal>
#include <ctime>
#include <utility>

#include "net/openssl_util.h"
#include "util/text.h"

namespace ctrust::net {
namespace {

constexpr int kMaxVerifyDepth = 8;
constexpr std::size_t kFingerprintHexLength = 64;
constexpr int kHttpPort = 80;
constexpr int kHttpsPort = 443;

struct ParsedUrl {
  bool tls = false;
  std::string host;  // without brackets
  int port = 0;
};

bool is_host_char(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_';
}

Result<ParsedUrl> parse_url(std::string_view url) {
  auto bad = [&](const std::string& why) {
    return Error(Errc::kInvalidArgument, "URL \"" + printable(url, 200) + "\" is unusable: " + why +
                                             " (expected http://HOST:PORT or https://HOST:PORT)");
  };
  ParsedUrl parsed;
  std::string_view rest;
  if (url.starts_with("https://")) {
    parsed.tls = true;
    rest = url.substr(8);
  } else if (url.starts_with("http://")) {
    rest = url.substr(7);
  } else {
    return bad("the scheme must be http or https");
  }
  if (rest.ends_with('/')) rest.remove_suffix(1);
  if (rest.find_first_of("/?#@") != std::string_view::npos) {
    return bad("only a scheme, host and port may be given");
  }
  std::string_view port_text;
  if (rest.starts_with('[')) {
    std::size_t close = rest.find(']');
    if (close == std::string_view::npos) return bad("unclosed '[' around an IPv6 address");
    parsed.host = std::string(rest.substr(1, close - 1));
    std::string_view after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return bad("unexpected text after ']'");
      port_text = after.substr(1);
      if (port_text.empty()) return bad("empty port");
    }
    for (unsigned char c : parsed.host) {
      if (!std::isxdigit(c) && c != ':' && c != '.') return bad("malformed IPv6 address");
    }
  } else {
    std::size_t colon = rest.find(':');
    parsed.host = std::string(rest.substr(0, colon));
    if (colon != std::string_view::npos) {
      port_text = rest.substr(colon + 1);
      if (port_text.empty()) return bad("empty port");
      if (port_text.find(':') != std::string_view::npos) {
        return bad("an IPv6 address must be written in brackets");
      }
    }
    for (unsigned char c : parsed.host) {
      if (!is_host_char(c)) return bad("the host name has a character that cannot be in one");
    }
  }
  if (parsed.host.empty()) return bad("no host");
  if (port_text.empty()) {
    parsed.port = parsed.tls ? kHttpsPort : kHttpPort;
  } else {
    int port = 0;
    for (char c : port_text) {
      if (c < '0' || c > '9' || port > 65535) return bad("the port is not a number");
      port = port * 10 + (c - '0');
    }
    if (port < 1 || port > 65535) return bad("the port is out of range");
    parsed.port = port;
  }
  return parsed;
}

bool is_ip_address(const std::string& host) {
  ASN1_OCTET_STRING* ip = a2i_IPADDRESS(host.c_str());
  if (ip == nullptr) {
    ERR_clear_error();
    return false;
  }
  ASN1_OCTET_STRING_free(ip);
  return true;
}

Result<std::string> normalize_fingerprint(std::string_view fp) {
  std::string out;
  for (unsigned char c : fp) {
    if (!std::isxdigit(c)) break;
    out += static_cast<char>(std::tolower(c));
  }
  if (out.size() != kFingerprintHexLength || fp.size() != kFingerprintHexLength) {
    return Error(Errc::kInvalidArgument,
                 "pinned fingerprint \"" + printable(fp, 80) +
                     "\" is not a SHA-256 in hex (64 hex digits, as spki_fingerprint() gives)");
  }
  return out;
}

bool is_token_char(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}

// A write to a connection the peer has closed raises SIGPIPE (OpenSSL writes with
// write(2)); a library must not kill its process for that. Blocks the signal on the
// calling thread for the duration of a request and discards one raised meanwhile.
class SigpipeBlock {
 public:
  SigpipeBlock() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    sigset_t pending;
    sigemptyset(&pending);
    was_pending_ = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1;
    blocked_ = pthread_sigmask(SIG_BLOCK, &pipe_, &old_) == 0;
  }
  ~SigpipeBlock() {
    if (!blocked_) return;
    sigset_t pending;
    sigemptyset(&pending);
    if (!was_pending_ && sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1) {
      timespec zero{0, 0};
      sigtimedwait(&pipe_, nullptr, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeBlock(const SigpipeBlock&) = delete;
  SigpipeBlock& operator=(const SigpipeBlock&) = delete;

 private:
  sigset_t pipe_{};
  sigset_t old_{};
  bool was_pending_ = false;
  bool blocked_ = false;
};

int client_ex_index() {
  static const int kIndex = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return kIndex;
}

// The system's CA certificates, loaded once and shared by every client that needs them.
X509_STORE* system_store() {
  static X509_STORE* const kStore = [] {
    X509_STORE* s = X509_STORE_new();
    if (s != nullptr && X509_STORE_set_default_paths(s) != 1) ERR_clear_error();
    return s;
  }();
  return kStore;
}

void set_cloexec(int fd) {
  int flags = fcntl(fd, F_GETFD);
  if (flags >= 0) fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}

}  // namespace

struct HttpClient::Impl {
  static int verify(int preverify_ok, X509_STORE_CTX* store_ctx);
  Result<void> configure_tls(SSL_CTX* ctx);
  Error transport_error(httplib::Error error, const std::string& what) const;

  std::string base_url;
  ParsedUrl url;
  ClientOptions options;
  std::unique_ptr<httplib::ClientImpl> cli;
  std::string server_fingerprint;
  std::string verify_failure;  // why the last handshake's verification refused the server
};

int HttpClient::Impl::verify(int preverify_ok, X509_STORE_CTX* store_ctx) {
  auto* ssl = static_cast<SSL*>(
      X509_STORE_CTX_get_ex_data(store_ctx, SSL_get_ex_data_X509_STORE_CTX_idx()));
  Impl* impl =
      ssl == nullptr
          ? nullptr
          : static_cast<Impl*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), client_ex_index()));
  if (impl == nullptr) return 0;
  // Called once per certificate and per problem found; the leaf is what is pinned and
  // reported, whichever certificate the call is about.
  auto fingerprint = detail::spki_fingerprint_of(X509_STORE_CTX_get0_cert(store_ctx));
  if (!fingerprint) {
    impl->verify_failure = "cannot read the server's key: " + fingerprint.error().message();
    return 0;
  }
  impl->server_fingerprint = *fingerprint;
  const auto& pins = impl->options.pinned_fingerprints;
  if (!pins.empty()) {
    if (std::find(pins.begin(), pins.end(), *fingerprint) != pins.end()) return 1;
    impl->verify_failure = "server key " + *fingerprint + " is not the pinned key";
    return 0;
  }
  if (preverify_ok == 1) return 1;
  int err = X509_STORE_CTX_get_error(store_ctx);
  int depth = X509_STORE_CTX_get_error_depth(store_ctx);
  X509* culprit = X509_STORE_CTX_get_current_cert(store_ctx);
  impl->verify_failure =
      "server certificate " +
      (culprit != nullptr ? detail::subject_of(culprit) : "at depth " + std::to_string(depth)) +
      " is not trusted: " + X509_verify_cert_error_string(err);
  return 0;
}

Result<void> HttpClient::Impl::configure_tls(SSL_CTX* ctx) {
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
      SSL_CTX_set_max_proto_version(ctx, 0) != 1) {
    return openssl_error("restricting the client to TLS 1.3");
  }
  // Every connection verifies the server afresh (a resumed session would skip the pin).
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  if (options.identity) {
    for (const crypto::Certificate& c : options.identity->chain) {
      if (SSL_CTX_add1_chain_cert(ctx, c.native()) != 1) {
        return openssl_error("adding client chain certificate " + c.subject());
      }
    }
  }
  if (SSL_CTX_set_ex_data(ctx, client_ex_index(), this) != 1) {
    return openssl_error("attaching the verifier to the TLS context");
  }
  if (options.pinned_fingerprints.empty()) {
    if (!options.ca_certs.empty()) {
      CTRUST_ASSIGN_OR_RETURN(detail::UniqueX509Store store, detail::store_of(options.ca_certs));
      SSL_CTX_set_cert_store(ctx, store.release());  // the context owns it now
    } else {
      X509_STORE* store = system_store();
      if (store == nullptr) return openssl_error("loading the system CA certificates");
      SSL_CTX_set1_cert_store(ctx, store);
    }
    X509_VERIFY_PARAM* param = SSL_CTX_get0_param(ctx);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    int set = is_ip_address(url.host)
                  ? X509_VERIFY_PARAM_set1_ip_asc(param, url.host.c_str())
                  : X509_VERIFY_PARAM_set1_host(param, url.host.c_str(), url.host.size());
    if (set != 1) return openssl_error("setting the expected server name " + url.host);
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, &Impl::verify);
  SSL_CTX_set_verify_depth(ctx, kMaxVerifyDepth);
  return ok_result();
}

Error HttpClient::Impl::transport_error(httplib::Error error, const std::string& what) const {
  std::string detail = detail::drain_openssl_errors();
  std::string suffix = detail.empty() ? std::string() : " (" + detail + ")";
  switch (error) {
    case httplib::Error::Connection:
      return Error(Errc::kIo, "cannot connect to " + base_url + suffix);
    case httplib::Error::ConnectionTimeout:
      return Error(Errc::kIo, "connecting to " + base_url + " timed out after " +
                                  std::to_string(options.connect_timeout_ms) + " ms");
    case httplib::Error::BindIPAddress:
      return Error(Errc::kIo, "cannot bind the local address for " + base_url);
    case httplib::Error::SSLConnection:
    case httplib::Error::SSLServerVerification:
      return Error(Errc::kCrypto,
                   "TLS handshake with " + base_url + " failed" +
                       (suffix.empty() ? " (does the server speak TLS 1.3?)" : suffix));
    case httplib::Error::SSLLoadingCerts:
      return Error(Errc::kCrypto, "loading CA certificates for " + base_url + " failed" + suffix);
    case httplib::Error::Write:
      return Error(Errc::kIo, what + " to " + base_url + ": sending the request failed" + suffix);
    case httplib::Error::Read:
      return Error(Errc::kIo, what + " to " + base_url +
                                  ": no complete response (the server closed the connection, "
                                  "refused the client certificate or timed out)" +
                                  suffix);
    default:
      return Error(Errc::kIo,
                   what + " to " + base_url + " failed: " + httplib::to_string(error) + suffix);
  }
}

HttpClient::HttpClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpClient::HttpClient(HttpClient&& other) noexcept = default;
HttpClient& HttpClient::operator=(HttpClient&& other) noexcept = default;
HttpClient::~HttpClient() = default;

Result<HttpClient> HttpClient::create(const std::string& base_url, ClientOptions options) {
  CTRUST_ASSIGN_OR_RETURN(ParsedUrl url, parse_url(base_url));
  if (options.connect_timeout_ms <= 0 || options.timeout_ms <= 0) {
    return Error(Errc::kInvalidArgument, "client timeouts must be positive");
  }
  if (options.max_response == 0) {
    return Error(Errc::kInvalidArgument, "max_response must be positive");
  }
  if (!url.tls &&
      (options.identity || !options.pinned_fingerprints.empty() || !options.ca_certs.empty())) {
    return Error(Errc::kInvalidArgument,
                 "TLS options (identity, pins or CAs) were given for the plain http:// URL " +
                     base_url + "; use https://");
  }
  for (std::string& fp : options.pinned_fingerprints) {
    CTRUST_ASSIGN_OR_RETURN(fp, normalize_fingerprint(fp));
  }
  auto impl = std::make_unique<Impl>();
  impl->base_url = base_url;
  if (impl->base_url.ends_with('/')) impl->base_url.pop_back();
  impl->url = url;
  impl->options = std::move(options);
  const ClientOptions& opts = impl->options;

  try {
    if (url.tls) {
      ERR_clear_error();
      std::unique_ptr<httplib::SSLClient> ssl;
      if (opts.identity) {
        if (X509_check_private_key(opts.identity->cert.native(), opts.identity->key.native()) !=
            1) {
          ERR_clear_error();
          return Error(Errc::kInvalidArgument,
                       "the client key does not belong to the client certificate " +
                           opts.identity->cert.subject());
        }
        ssl = std::make_unique<httplib::SSLClient>(url.host, url.port, opts.identity->cert.native(),
                                                   opts.identity->key.native());
      } else {
        ssl = std::make_unique<httplib::SSLClient>(url.host, url.port);
      }
      if (!ssl->is_valid()) return openssl_error("creating the TLS client context");
      CTRUST_TRY(impl->configure_tls(ssl->ssl_context()));
      // Verification is ours (Impl::verify, installed on the context): httplib's own would
      // override the verify mode per connection.
      ssl->enable_server_certificate_verification(false);
      impl->cli = std::move(ssl);
    } else {
      impl->cli = std::make_unique<httplib::ClientImpl>(url.host, url.port);
    }
  } catch (const std::exception& e) {
    return Error(Errc::kInternal, std::string("creating the HTTP client: ") + e.what());
  }
  httplib::ClientImpl& cli = *impl->cli;
  auto ms = [](int v) {
    return std::pair{static_cast<time_t>(v / 1000), static_cast<time_t>((v % 1000) * 1000)};
  };
  auto [csec, cusec] = ms(opts.connect_timeout_ms);
  auto [sec, usec] = ms(opts.timeout_ms);
  cli.set_connection_timeout(csec, cusec);
  cli.set_read_timeout(sec, usec);
  cli.set_write_timeout(sec, usec);
  cli.set_keep_alive(true);
  cli.set_tcp_nodelay(true);
  cli.set_follow_location(false);
  cli.set_url_encode(false);
  cli.set_socket_options([](socket_t sock) { set_cloexec(sock); });
  cli.set_default_headers({{"User-Agent", "ctrust"}});
  return HttpClient(std::move(impl));
}

Result<Response> HttpClient::request(std::string_view method, std::string_view path,
                                     std::string_view body, std::string_view content_type) {
  Impl& impl = *impl_;
  if (method.empty() ||
      !std::all_of(method.begin(), method.end(), [](char c) { return is_token_char(c); })) {
    return Error(Errc::kInvalidArgument, "\"" + printable(method) + "\" is not an HTTP method");
  }
  if (path.empty() || path.front() != '/' ||
      !std::all_of(path.begin(), path.end(), [](char c) { return c > 0x20 && c < 0x7f; })) {
    return Error(Errc::kInvalidArgument,
                 "request path \"" + printable(path, 200) +
                     "\" must start with '/' and be percent-encoded (no spaces or controls)");
  }
  std::string what = std::string(method) + " " + std::string(path);
  SigpipeBlock no_sigpipe;
  ERR_clear_error();
  impl.verify_failure.clear();

  // An idle keep-alive connection that has become readable was closed by the server (or
  // it said something unasked): reusing it would lose this request.
  if (impl.cli->is_socket_open() != 0) {
    pollfd p{impl.cli->socket(), POLLIN | POLLRDHUP, 0};
    if (poll(&p, 1, 0) != 0) impl.cli->stop();
  }

  const std::size_t max = impl.options.max_response;
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(impl.options.timeout_ms);
  bool too_large = false;
  bool timed_out = false;
  Response response;
  httplib::Request req;
  req.method = std::string(method);
  req.path = std::string(path);
  req.body = std::string(body);
  bool sends_body = method == "POST" || method == "PUT" || method == "PATCH";
  if (!body.empty() || sends_body) {
    req.set_header("Content-Type", std::string(content_type));
  }
  if (body.empty() && !sends_body && method != "GET" && method != "HEAD") {
    // httplib sends no length for an empty DELETE; without one a server may wait for EOF.
    req.set_header("Content-Length", "0");
  }
  req.response_handler = [&](const httplib::Response& r) {
    if (r.has_header("Content-Length") &&
        r.get_header_value<std::uint64_t>("Content-Length") > max) {
      too_large = true;
      return false;
    }
    return true;
  };
  req.content_receiver = [&](const char* data, std::size_t n, std::uint64_t, std::uint64_t) {
    if (n > max - response.body.size()) {
      too_large = true;
      return false;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      timed_out = true;
      return false;
    }
    response.body.append(data, n);
    return true;
  };
  httplib::Response res;
  httplib::Error error = httplib::Error::Success;
  bool sent = false;
  try {
    sent = impl.cli->send(req, res, error);
  } catch (const std::exception& e) {
    impl.cli->stop();
    return Error(Errc::kInternal, what + " to " + impl.base_url + ": " + e.what());
  }
  if (too_large) {
    impl.cli->stop();
    return Error(Errc::kLimit, "the response to " + what + " from " + impl.base_url +
                                   " is larger than " + std::to_string(max) + " bytes");
  }
  if (timed_out) {
    impl.cli->stop();
    return Error(Errc::kIo, what + " to " + impl.base_url + " timed out after " +
                                std::to_string(impl.options.timeout_ms) + " ms");
  }
  if (!impl.verify_failure.empty()) {
    ERR_clear_error();
    return Error(Errc::kCrypto, "connecting to " + impl.base_url + ": " + impl.verify_failure);
  }
  if (!sent || error != httplib::Error::Success) {
    return impl.transport_error(error, what);
  }
  response.status = res.status;
  response.content_type = res.get_header_value("Content-Type");
  response.headers.reserve(res.headers.size());
  for (const auto& [name, value] : res.headers) response.headers.emplace_back(name, value);
  return response;
}

const std::string& HttpClient::server_fingerprint() const { return impl_->server_fingerprint; }

const std::string& HttpClient::base_url() const { return impl_->base_url; }

}  // namespace ctrust::net
