#include "net/http_server.h"

#include <fcntl.h>
#include <httplib.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <exception>
#include <thread>

#include "net/openssl_util.h"
#include "net/rate_limiter.h"
#include "net/router.h"

namespace ctrust::net {
namespace {

using namespace std::chrono_literals;

// A keep-alive connection holds a worker thread; after this many requests it is closed so
// that one busy client cannot keep a thread for ever (it reconnects at once).
constexpr std::size_t kKeepAliveMaxRequests = 10000;
constexpr int kMaxVerifyDepth = 8;
constexpr int kMaxThreads = 1024;
constexpr auto kStartTimeout = 5s;

constexpr std::string_view kInternalMessage = "internal server error";

std::string_view code_for_status(int status) {
  switch (status) {
    case 400:
      return "bad_request";
    case 404:
      return "not_found";
    case 405:
      return "method_not_allowed";
    case 408:
      return "request_timeout";
    case 411:
      return "length_required";
    case 413:
      return "payload_too_large";
    case 414:
      return "uri_too_long";
    case 415:
      return "unsupported_media_type";
    case 416:
      return "range_not_satisfiable";
    case 429:
      return "rate_limited";
    case 500:
      return "internal";
    default:
      return status >= 500 ? "server_error" : "client_error";
  }
}

std::string_view message_for_status(int status) {
  switch (status) {
    case 400:
      return "the request is malformed";
    case 404:
      return "no such resource";
    case 413:
      return "the request body is too large";
    case 414:
      return "the request target is too long";
    case 416:
      return "the requested range cannot be satisfied";
    case 500:
      return kInternalMessage;
    default:
      return status >= 500 ? "the server could not handle the request"
                           : "the request cannot be handled";
  }
}

void write_response(httplib::Response& out, const Response& in) {
  out.status = in.status;
  for (const auto& [name, value] : in.headers) out.set_header(name, value);
  out.set_content(in.body, in.content_type);
}

void write_error(httplib::Response& out, int status, std::string_view code,
                 std::string_view message) {
  write_response(out, error_response(status, code, message));
}

struct SecondsAndMicros {
  time_t sec;
  time_t usec;
};
SecondsAndMicros split_ms(int ms) {
  return {static_cast<time_t>(ms / 1000), static_cast<time_t>((ms % 1000) * 1000)};
}

void set_cloexec(int fd) {
  int flags = fcntl(fd, F_GETFD);
  if (flags >= 0) fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}

// The peer's numeric address, formatted as httplib formats Request::remote_addr.
std::string peer_address_of(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return {};
  std::array<char, NI_MAXHOST> host{};
  if (getnameinfo(reinterpret_cast<sockaddr*>(&addr), len, host.data(), host.size(), nullptr, 0,
                  NI_NUMERICHOST) != 0) {
    return {};
  }
  return host.data();
}

}  // namespace

Response json_response(int status, const nlohmann::json& body) {
  Response response;
  response.status = status;
  response.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return response;
}

Response error_response(int status, std::string_view code, std::string_view message) {
  nlohmann::json body = {{"error", {{"code", code}, {"message", message}}}};
  return json_response(status, body);
}

std::optional<Response> client_error_response(const Error& e) {
  switch (e.code()) {
    case Errc::kFormat:
    case Errc::kInvalidArgument:
    case Errc::kTruncated:
    case Errc::kUnsupported:
      return error_response(400, "bad-request", e.message());
    case Errc::kLimit:
      return error_response(413, "too-large", e.message());
    case Errc::kNotFound:
      return error_response(404, "not-found", e.message());
    default:
      return std::nullopt;
  }
}

Result<std::pair<std::string, int>> parse_listen(const std::string& listen,
                                                 const std::string& what) {
  auto colon = listen.rfind(':');
  std::string port_text = colon == std::string::npos ? "" : listen.substr(colon + 1);
  if (colon == std::string::npos || port_text.empty() || port_text.size() > 5 ||
      port_text.find_first_not_of("0123456789") != std::string::npos ||
      std::stoi(port_text) > 65535) {
    return Error(Errc::kInvalidArgument, what + " " + listen + " is not ADDRESS:PORT");
  }
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return std::pair{host, std::stoi(port_text)};
}

struct HttpServer::Impl {
  explicit Impl(ServerOptions o)
      : options(std::move(o)),
        requests(options.rate_per_second, options.burst),
        handshakes(options.rate_per_second, options.burst) {}

  Result<void> configure_tls(SSL_CTX* ctx);
  void install_handlers();
  void handle(const httplib::Request& req, httplib::Response& res, std::string body);
  void handle_with_body(const httplib::Request& req, httplib::Response& res,
                        const httplib::ContentReader& reader);
  static int on_client_hello(SSL* ssl, int* alert, void* arg);

  ServerOptions options;
  Router router;
  std::vector<Handler> handlers;
  std::optional<Error> route_error;
  RateLimiter requests;
  RateLimiter handshakes;
  std::unique_ptr<httplib::Server> server;
  std::thread thread;
  std::atomic<bool> listen_returned{false};
  bool started = false;
  int port = 0;
};

int HttpServer::Impl::on_client_hello(SSL* ssl, int* alert, void* arg) {
  auto* impl = static_cast<Impl*>(arg);
  int fd = SSL_get_fd(ssl);
  if (fd >= 0) set_cloexec(fd);
  if (impl->handshakes.acquire(fd >= 0 ? peer_address_of(fd) : std::string()) > 0) {
    *alert = SSL_AD_HANDSHAKE_FAILURE;
    return SSL_CLIENT_HELLO_ERROR;
  }
  return SSL_CLIENT_HELLO_SUCCESS;
}

Result<void> HttpServer::Impl::configure_tls(SSL_CTX* ctx) {
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
      SSL_CTX_set_max_proto_version(ctx, 0) != 1) {
    return openssl_error("restricting the server to TLS 1.3");
  }
  // No resumption: every connection authenticates the client certificate afresh, and no
  // ticket is computed and sent that nobody uses.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  if (SSL_CTX_set_num_tickets(ctx, 0) != 1) return openssl_error("disabling session tickets");
  const TlsIdentity& id = *options.identity;
  CTRUST_TRY(detail::use_identity(ctx, {id.key.native(), id.cert.native(), &id.chain}));
  if (!options.client_cas.empty()) {
    CTRUST_ASSIGN_OR_RETURN(detail::UniqueX509Store store, detail::store_of(options.client_cas));
    SSL_CTX_set_cert_store(ctx, store.release());  // the context owns it now
    for (const crypto::Certificate& ca : options.client_cas) {
      if (SSL_CTX_add_client_CA(ctx, ca.native()) != 1) {
        return openssl_error("listing client CA " + ca.subject());
      }
    }
    if (SSL_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT) != 1) {
      return openssl_error("requiring client certificates for TLS clients");
    }
    int mode = SSL_VERIFY_PEER;
    if (options.require_client_cert) mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    SSL_CTX_set_verify(ctx, mode, nullptr);
    SSL_CTX_set_verify_depth(ctx, kMaxVerifyDepth);
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  }
  SSL_CTX_set_client_hello_cb(ctx, &Impl::on_client_hello, this);
  return ok_result();
}

void HttpServer::Impl::handle(const httplib::Request& req, httplib::Response& res,
                              std::string body) {
  if (int wait = requests.acquire(req.remote_addr); wait > 0) {
    write_error(
        res, 429, "rate_limited",
        "too many requests from " + req.remote_addr + "; retry in " + std::to_string(wait) + " s");
    res.set_header("Retry-After", std::to_string(wait));
    return;
  }
  std::string_view target = req.target;
  std::string_view raw_path = target.substr(0, target.find('?'));
  Router::Lookup lookup = router.find(req.method, raw_path);
  switch (lookup.outcome) {
    case Router::Outcome::kBadPath:
      write_error(res, 400, "bad_path", "invalid request path: " + lookup.reason);
      return;
    case Router::Outcome::kNotFound:
      write_error(res, 404, "not_found", "no such resource");
      return;
    case Router::Outcome::kMethodNotAllowed:
      write_error(res, 405, "method_not_allowed",
                  req.method + " is not allowed here; allowed: " + lookup.allow);
      res.set_header("Allow", lookup.allow);
      return;
    case Router::Outcome::kMatched:
      break;
  }
  Request request;
  request.method = req.method;
  request.path = std::string(raw_path);
  for (const auto& [key, value] : req.params) request.query.emplace(key, value);
  request.path_params = std::move(lookup.params);
  request.body = std::move(body);
  request.content_type = req.get_header_value("Content-Type");
  request.peer_address = req.remote_addr;
  if (req.ssl != nullptr) {
    if (const X509* peer = SSL_get0_peer_certificate(req.ssl); peer != nullptr) {
      auto fingerprint = detail::spki_fingerprint_of(peer);
      if (!fingerprint) {
        write_error(res, 500, "internal", kInternalMessage);
        return;
      }
      request.peer_fingerprint = std::move(fingerprint).value();
      request.peer_subject = detail::subject_of(peer);
    }
  }
  Response response;
  try {
    response = handlers[lookup.route](request);
  } catch (...) {
    // Whatever went wrong stays on this side: the peer learns only that it did.
    response = error_response(500, "internal", kInternalMessage);
  }
  if (response.status < 100 || response.status > 599) {
    response = error_response(500, "internal", kInternalMessage);
  }
  write_response(res, response);
}

void HttpServer::Impl::handle_with_body(const httplib::Request& req, httplib::Response& res,
                                        const httplib::ContentReader& reader) {
  // The body is always read (or skipped) first, so that the connection stays in step even
  // when the answer does not depend on it; httplib reads a declared Content-Length beyond
  // max_body by itself (413), chunked and unsized bodies are cut off here.
  const std::size_t max = options.max_body;
  std::string body;
  bool too_large = false;
  bool multipart = req.is_multipart_form_data();
  bool read = false;
  if (multipart) {
    std::size_t seen = 0;
    read = reader([](const httplib::MultipartFormData&) { return true; },
                  [&](const char*, std::size_t n) {
                    seen += n;
                    too_large = seen > max;
                    return !too_large;
                  });
  } else {
    read = reader([&](const char* data, std::size_t n) {
      if (n > max - body.size()) {
        too_large = true;
        return false;
      }
      body.append(data, n);
      return true;
    });
  }
  if (!read || too_large) {
    if (too_large || res.status == 413) {
      write_error(res, 413, "payload_too_large",
                  "the request body is larger than " + std::to_string(max) + " bytes");
    } else {
      write_error(res, 400, "bad_request", "the request body could not be read");
    }
    // What is left of the body would be read as the next request.
    res.set_header("Connection", "close");
    return;
  }
  if (multipart) {
    write_error(res, 415, "unsupported_media_type", "multipart bodies are not accepted");
    return;
  }
  handle(req, res, std::move(body));
}

void HttpServer::Impl::install_handlers() {
  httplib::Server::Handler plain = [this](const httplib::Request& req, httplib::Response& res) {
    handle(req, res, {});
  };
  httplib::Server::HandlerWithContentReader with_body =
      [this](const httplib::Request& req, httplib::Response& res,
             const httplib::ContentReader& reader) { handle_with_body(req, res, reader); };
  // One catch-all per method: routing is ours (net/router.h), on the raw request target.
  const std::string any = ".*";
  server->Get(any, plain);
  server->Options(any, plain);
  server->Post(any, with_body);
  server->Put(any, with_body);
  server->Patch(any, with_body);
  server->Delete(any, with_body);

  // httplib's own errors (bad request lines, 413 on Content-Length, 414, unroutable
  // methods) in the same JSON form; responses that already have a body are left alone.
  httplib::Server::HandlerWithResponse on_error = [](const httplib::Request&,
                                                     httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    write_error(res, res.status, code_for_status(res.status), message_for_status(res.status));
    return httplib::Server::HandlerResponse::Handled;
  };
  server->set_error_handler(std::move(on_error));
  server->set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, const std::exception_ptr&) {
        write_error(res, 500, "internal", kInternalMessage);
      });

  auto read = split_ms(options.read_timeout_ms);
  auto write = split_ms(options.write_timeout_ms);
  server->set_read_timeout(read.sec, read.usec);
  server->set_write_timeout(write.sec, write.usec);
  server->set_keep_alive_timeout(static_cast<time_t>((options.idle_timeout_ms + 999) / 1000));
  server->set_keep_alive_max_count(kKeepAliveMaxRequests);
  server->set_payload_max_length(options.max_body);
  server->set_tcp_nodelay(true);
  // httplib's default sets SO_REUSEPORT, which would let a second server bind the same
  // port silently; SO_REUSEADDR only allows rebinding over TIME_WAIT.
  server->set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    set_cloexec(sock);
  });
  const auto threads = static_cast<std::size_t>(options.threads);
  server->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() { stop(); }

Result<std::unique_ptr<HttpServer>> HttpServer::create(ServerOptions options) {
  if (options.port < 0 || options.port > 65535) {
    return Error(Errc::kInvalidArgument, "port " + std::to_string(options.port) +
                                             " is out of range (0 for any, up to 65535)");
  }
  if (options.max_body == 0) return Error(Errc::kInvalidArgument, "max_body must be positive");
  if (options.read_timeout_ms <= 0 || options.write_timeout_ms <= 0 ||
      options.idle_timeout_ms <= 0) {
    return Error(Errc::kInvalidArgument, "server timeouts must be positive");
  }
  if (options.threads < 1 || options.threads > kMaxThreads) {
    return Error(Errc::kInvalidArgument, "threads must be between 1 and 1024");
  }
  if (options.tls) {
    if (!options.identity) {
      return Error(Errc::kInvalidArgument,
                   "a TLS server needs an identity (key and certificate); set tls = false only "
                   "for a plain HTTP port on localhost");
    }
    if (options.require_client_cert && options.client_cas.empty()) {
      return Error(Errc::kInvalidArgument,
                   "require_client_cert is set but no client_cas were given: pass the CA "
                   "certificates that issue client certificates, or clear require_client_cert");
    }
  }
  auto impl = std::make_unique<Impl>(std::move(options));
  if (impl->options.tls) {
    ERR_clear_error();
    Result<void> configured = ok_result();
    Impl* raw = impl.get();
    auto server = std::make_unique<httplib::SSLServer>([&configured, raw](SSL_CTX& ctx) {
      configured = raw->configure_tls(&ctx);
      return configured.ok();
    });
    if (!configured) return std::move(configured).error().with_context("TLS server");
    if (!server->is_valid()) return openssl_error("creating the TLS server context");
    impl->server = std::move(server);
  } else {
    impl->server = std::make_unique<httplib::Server>();
  }
  impl->install_handlers();
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

void HttpServer::route(std::string method, std::string pattern, Handler handler) {
  if (impl_->route_error) return;
  if (impl_->started) {
    impl_->route_error = Error(Errc::kInvalidArgument,
                               "route " + method + " " + pattern + " was added after start()");
    return;
  }
  if (!handler) {
    impl_->route_error =
        Error(Errc::kInvalidArgument, "route " + method + " " + pattern + " has no handler");
    return;
  }
  auto added = impl_->router.add(std::move(method), std::move(pattern));
  if (!added) {
    impl_->route_error = std::move(added).error();
    return;
  }
  impl_->handlers.push_back(std::move(handler));
}

Result<void> HttpServer::start() {
  Impl& impl = *impl_;
  if (impl.route_error) return *impl.route_error;
  if (impl.started) return Error(Errc::kInvalidArgument, "the server is already started");
  errno = 0;
  int port = impl.options.port;
  if (port == 0) {
    port = impl.server->bind_to_any_port(impl.options.address);
  } else if (!impl.server->bind_to_port(impl.options.address, port)) {
    port = -1;
  }
  if (port <= 0) {
    int err = errno;
    std::string where = impl.options.address + ":" + std::to_string(impl.options.port);
    return Error(Errc::kIo,
                 "cannot listen on " + where + (err != 0 ? ": " + std::string(strerror(err)) : "") +
                     " (is the address local, and the port free?)",
                 err);
  }
  impl.port = port;
  impl.started = true;
  impl.thread = std::thread([&impl] {
    // Workers inherit this mask: a write to a peer that has gone must fail with EPIPE, not
    // kill the process with SIGPIPE.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    try {
      impl.server->listen_after_bind();
    } catch (...) {
      // Thread creation failed inside httplib; start() reports that it never ran.
    }
    impl.listen_returned = true;
  });
  // stop() only takes effect once httplib's loop runs; wait for it so that a stop() right
  // after start() cannot be lost.
  auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
  while (!impl.server->is_running() && !impl.listen_returned &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  if (!impl.server->is_running()) {
    stop();
    return Error(Errc::kInternal,
                 "the HTTP server on port " + std::to_string(port) + " did not start");
  }
  return ok_result();
}

int HttpServer::port() const { return impl_->port; }

void HttpServer::stop() {
  if (!impl_ || !impl_->thread.joinable()) return;
  // httplib's stop() does nothing until its loop is running: repeat until the loop is over.
  while (!impl_->listen_returned) {
    impl_->server->stop();
    std::this_thread::sleep_for(1ms);
  }
  impl_->thread.join();
}

}  // namespace ctrust::net
