#include "verifier/service.h"

#include <arpa/inet.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "attest/ear.h"
#include "attest/jwt.h"
#include "crypto/digest.h"
#include "net/http_client.h"
#include "net/http_server.h"
#include "net/tls.h"
#include "policy/policy.h"
#include "store/store.h"
#include "util/file.h"
#include "util/text.h"
#include "verifier/attester.h"
#include "verifier/metrics.h"
#include "verifier/registration.h"

namespace ctrust::verifier {

using attest::Status;
using nlohmann::json;

namespace {

std::int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Result<void> make_dir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    return errno_error("creating " + dir, errno);
  return ok_result();
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

bool valid_id(const std::string& id) {
  if (id.empty() || id.size() > 128 || id[0] == '.') return false;
  return id.find_first_not_of(
             "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") ==
         std::string::npos;
}

net::Response from_error(const Error& e) {
  if (auto r = net::client_error_response(e)) return *r;
  if (e.code() == Errc::kIo) return net::error_response(502, "agent-unreachable", e.message());
  spdlog::error("{}", e.message());
  return net::error_response(500, "internal", "the verifier failed; see its log");
}

Result<json> parse_body(const net::Request& req) {
  auto doc = json::parse(req.body, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    return Error(Errc::kFormat, "the request body must be a JSON object");
  }
  return doc;
}

std::string member(const json& doc, const char* key) {
  auto it = doc.find(key);
  return it != doc.end() && it->is_string() ? it->get<std::string>() : "";
}

json reasons_json(const std::vector<attest::Reason>& reasons) {
  json out = json::array();
  for (const auto& r : reasons) out.push_back(r.to_json());
  return out;
}

// A loaded policy and what the verifier judges with.
struct LoadedPolicy {
  store::PolicyRow row;
  attest::PolicyChoice choice;
};

class VerifierImpl final : public Verifier {
 public:
  explicit VerifierImpl(VerifierConfig config) : config_(std::move(config)) {}
  ~VerifierImpl() override { shutdown(); }

  Result<void> init();
  int port() const override { return server_ ? server_->port() : 0; }
  void wait() override {
    std::unique_lock lock(stop_mutex_);
    stop_cv_.wait(lock, [&] { return stopping_.load(); });
  }
  void stop() override;

 private:
  void shutdown();
  std::atomic<bool> shut_down_{false};
  void routes();
  void scheduler_loop();
  void worker_loop();
  void webhook_loop();
  void attest_one(store::AgentRow row);
  Result<json> attest_now(const std::string& id);
  Result<json> register_agent_request(const json& body);
  Result<json> add_policy(const std::string& text);
  Result<void> refresh_policies(bool force);
  std::optional<attest::PolicyChoice> lookup(const std::string& agent, const std::string& container,
                                             const std::string& image,
                                             const std::string& logged_policy);
  Result<std::shared_ptr<struct ClientSlot>> client_for(const RegisteredAgent& agent);
  json agent_json(const store::AgentRow& row, bool with_containers);
  void notify(const std::string& agent, const std::string& container, Status now, Status before,
              const std::vector<attest::Reason>& reasons, const std::string& ear);

  VerifierConfig config_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<net::HttpServer> server_;
  std::optional<net::TlsIdentity> client_identity_;
  std::optional<crypto::PrivateKey> ear_key_;
  std::string ear_kid_;
  json ear_jwks_;
  EkTrust ek_trust_;
  policy::TrustAnchors policy_anchors_;
  attest::ReferenceValues refs_;
  std::string instance_;

  // Policies and mappings, refreshed from the store (other verifiers may change them).
  std::mutex policies_mutex_;
  std::map<std::string, std::shared_ptr<LoadedPolicy>> by_digest_;  // compiled, cached
  std::map<std::string, std::string> policy_digest_by_name_;
  std::map<std::pair<std::string, std::string>, std::string> mappings_;  // (kind,key)->name
  std::int64_t policies_loaded_ = 0;

  std::mutex clients_mutex_;
  std::map<std::string, std::shared_ptr<struct ClientSlot>> clients_;

  // The loop.
  std::atomic<bool> stopping_{false};
  std::mutex stop_mutex_;
  std::condition_variable stop_cv_;
  std::mutex queue_mutex_;
  std::condition_variable queue_cv_;
  std::deque<store::AgentRow> queue_;
  std::set<std::string> in_flight_;
  // When each agent's last attestation finished (a sequence number): a claim that read an
  // agent before that finished holds a stale row, which must not be attested again.
  std::uint64_t finish_seq_ = 0;
  std::map<std::string, std::uint64_t> finished_at_;
  std::thread scheduler_;
  std::vector<std::thread> workers_;
  std::mutex hooks_mutex_;
  std::condition_variable hooks_cv_;
  std::deque<std::string> hooks_;  // event bodies (JSON)
  std::thread hook_thread_;

  Registry metrics_;
  Counter* attest_ok_ = nullptr;
  Counter* attest_unreachable_ = nullptr;
  Counter* attest_error_ = nullptr;
  Counter* entries_ = nullptr;
  Counter* changes_ = nullptr;
  Counter* hook_failures_ = nullptr;
  Counter* hook_dropped_ = nullptr;
  Gauge* agents_gauge_ = nullptr;
  Gauge* inflight_gauge_ = nullptr;
  Histogram* latency_ = nullptr;
};

struct ClientSlot {
  std::mutex mutex;
  std::string fingerprint;
  std::optional<net::HttpClient> client;
};

}  // namespace

Result<void> ensure_tls_material(const std::string& dir, const std::vector<std::string>& names) {
  CTRUST_TRY(make_dir(dir));
  if (exists(dir + "/ca.pem") && exists(dir + "/server.pem") && exists(dir + "/client.pem")) {
    return ok_result();
  }
  CTRUST_ASSIGN_OR_RETURN(crypto::PrivateKey ca_key,
                          crypto::PrivateKey::generate(crypto::KeyType::kEcdsaP256));
  net::CertRequest ca_req;
  ca_req.common_name = "ctrust-verifier CA";
  ca_req.is_ca = true;
  ca_req.days = 3650;
  ca_req.issuer_key = &ca_key;
  CTRUST_ASSIGN_OR_RETURN(crypto::Certificate ca, net::make_certificate(ca_req));
  char host[256] = {};
  (void)::gethostname(host, sizeof(host) - 1);
  auto leaf = [&](const char* name, net::CertRequest::Usage usage) -> Result<void> {
    CTRUST_ASSIGN_OR_RETURN(crypto::PrivateKey key,
                            crypto::PrivateKey::generate(crypto::KeyType::kEcdsaP256));
    CTRUST_ASSIGN_OR_RETURN(crypto::PublicKey pub, key.public_key());
    net::CertRequest req;
    req.subject_key = &pub;
    req.common_name = std::string("ctrust-verifier ") + name;
    req.dns_names = {"localhost"};
    if (host[0] != '\0') req.dns_names.emplace_back(host);
    req.ip_addresses = {"127.0.0.1", "::1"};
    for (const auto& n : names) {
      in6_addr a6{};
      bool ip =
          ::inet_pton(AF_INET, n.c_str(), &a6) == 1 || ::inet_pton(AF_INET6, n.c_str(), &a6) == 1;
      auto& list = ip ? req.ip_addresses : req.dns_names;
      if (std::find(list.begin(), list.end(), n) == list.end()) list.push_back(n);
    }
    req.days = 825;
    req.usage = usage;
    req.issuer_key = &ca_key;
    req.issuer_cert = &ca;
    CTRUST_ASSIGN_OR_RETURN(crypto::Certificate cert, net::make_certificate(req));
    CTRUST_TRY(key.save_pem_file(dir + "/" + name + ".key"));
    CTRUST_ASSIGN_OR_RETURN(std::string pem, cert.to_pem());
    return write_file_atomic(dir + "/" + name + ".pem", as_bytes(pem), 0644);
  };
  CTRUST_TRY(leaf("server", net::CertRequest::kServer));
  CTRUST_TRY(leaf("client", net::CertRequest::kClient));
  CTRUST_TRY(ca_key.save_pem_file(dir + "/ca.key"));
  CTRUST_ASSIGN_OR_RETURN(std::string ca_pem, ca.to_pem());
  CTRUST_TRY(write_file_atomic(dir + "/ca.pem", as_bytes(ca_pem), 0644));
  spdlog::info("made the verifier's CA and certificates under {}", dir);
  return ok_result();
}

Result<std::unique_ptr<Verifier>> Verifier::start(const VerifierConfig& config) {
  auto v = std::make_unique<VerifierImpl>(config);
  CTRUST_TRY(v->init());
  return std::unique_ptr<Verifier>(std::move(v));
}

namespace {

Result<void> VerifierImpl::init() {
  CTRUST_TRY(make_dir(config_.state_dir));
  CTRUST_TRY(ensure_tls_material(config_.tls_dir()));
  CTRUST_ASSIGN_OR_RETURN(client_identity_, net::load_identity(config_.tls_dir() + "/client.key",
                                                               config_.tls_dir() + "/client.pem"));
  std::string ear_path = config_.ear_key_path();
  if (config_.ear_key.empty() && !exists(ear_path)) {
    CTRUST_ASSIGN_OR_RETURN(crypto::PrivateKey k,
                            crypto::PrivateKey::generate(crypto::KeyType::kEcdsaP256));
    CTRUST_TRY(k.save_pem_file(ear_path));
  }
  CTRUST_ASSIGN_OR_RETURN(crypto::PrivateKey ear_key, crypto::PrivateKey::load_pem_file(ear_path));
  CTRUST_ASSIGN_OR_RETURN(crypto::PublicKey ear_pub, ear_key.public_key());
  CTRUST_ASSIGN_OR_RETURN(ear_kid_, attest::jwk_kid(ear_pub));
  CTRUST_ASSIGN_OR_RETURN(json jwk, attest::jwk_of(ear_pub));
  jwk["use"] = "sig";
  jwk["alg"] = "ES256";
  ear_jwks_ = {{"keys", json::array({jwk})}};
  ear_key_.emplace(std::move(ear_key));

  CTRUST_ASSIGN_OR_RETURN(ek_trust_.cas, net::load_certificates(config_.ek_ca));
  ek_trust_.pins = config_.ek_pins;
  for (const auto& path : config_.policy_trust) {
    CTRUST_ASSIGN_OR_RETURN(policy::TrustAnchors a, policy::load_trust_anchors(path));
    policy_anchors_.keys.insert(policy_anchors_.keys.end(), a.keys.begin(), a.keys.end());
    policy_anchors_.certificates.insert(policy_anchors_.certificates.end(), a.certificates.begin(),
                                        a.certificates.end());
  }
  refs_.agent_binaries = config_.agent_binaries;
  refs_.agent_configs = config_.agent_configs;
  refs_.bpf_objects = config_.bpf_objects;
  instance_ = config_.id;
  if (instance_.empty()) {
    char host[256] = {};
    (void)::gethostname(host, sizeof(host) - 1);
    instance_ = std::string(host) + "-" + std::to_string(::getpid());
  }

  store::StoreOptions so;
  so.pool_size = std::max<std::size_t>(2, std::min<std::size_t>(config_.concurrency, 16));
  CTRUST_ASSIGN_OR_RETURN(store_, store::open_store(config_.store_url(), so));
  spdlog::info("store: {} ({})", store_->backend(),
               config_.store_url().rfind("sqlite:", 0) == 0 ? config_.store_url() : "postgresql");

  CTRUST_ASSIGN_OR_RETURN(
      attest_ok_, metrics_.counter("ctrust_verifier_attestations_total", "Attestations by result",
                                   {{"result", "verified"}}));
  CTRUST_ASSIGN_OR_RETURN(attest_unreachable_,
                          metrics_.counter("ctrust_verifier_attestations_total",
                                           "Attestations by result", {{"result", "unreachable"}}));
  CTRUST_ASSIGN_OR_RETURN(attest_error_,
                          metrics_.counter("ctrust_verifier_attestations_total",
                                           "Attestations by result", {{"result", "error"}}));
  CTRUST_ASSIGN_OR_RETURN(entries_, metrics_.counter("ctrust_verifier_log_entries_verified_total",
                                                     "Log entries verified (host and containers)"));
  CTRUST_ASSIGN_OR_RETURN(changes_, metrics_.counter("ctrust_verifier_verdict_changes_total",
                                                     "Changes of verdict (host or container)"));
  CTRUST_ASSIGN_OR_RETURN(hook_failures_,
                          metrics_.counter("ctrust_verifier_webhook_failures_total",
                                           "Webhook deliveries that failed after retries"));
  CTRUST_ASSIGN_OR_RETURN(hook_dropped_,
                          metrics_.counter("ctrust_verifier_webhook_dropped_total",
                                           "Webhook events dropped because the queue was full"));
  CTRUST_ASSIGN_OR_RETURN(
      agents_gauge_, metrics_.gauge("ctrust_verifier_agents", "Agents registered in the store"));
  CTRUST_ASSIGN_OR_RETURN(inflight_gauge_, metrics_.gauge("ctrust_verifier_attestations_in_flight",
                                                          "Attestations running now"));
  CTRUST_ASSIGN_OR_RETURN(latency_,
                          metrics_.histogram("ctrust_verifier_attestation_seconds",
                                             "Time of one attestation, challenge to stored result",
                                             kLatencyBucketsSeconds));
  CTRUST_TRY(refresh_policies(true));

  CTRUST_ASSIGN_OR_RETURN(auto where, net::parse_listen(config_.listen, "listen"));
  net::ServerOptions options;
  options.address = where.first;
  options.port = where.second;
  CTRUST_ASSIGN_OR_RETURN(
      net::TlsIdentity server_id,
      net::load_identity(config_.tls_dir() + "/server.key", config_.tls_dir() + "/server.pem"));
  options.identity = std::move(server_id);
  CTRUST_ASSIGN_OR_RETURN(options.client_cas,
                          net::load_certificates({config_.tls_dir() + "/ca.pem"}));
  options.require_client_cert = true;
  options.max_body = config_.api_max_body;
  options.rate_per_second = config_.api_rate;
  options.burst = config_.api_rate * 2;
  options.threads = 8;
  CTRUST_ASSIGN_OR_RETURN(server_, net::HttpServer::create(std::move(options)));
  routes();
  CTRUST_TRY(server_->start());
  spdlog::info("ctrust-verifier {}: REST API on {} port {} (TLS 1.3, client certificates of {})",
               instance_, where.first, server_->port(), config_.tls_dir() + "/ca.pem");

  hook_thread_ = std::thread([this] { webhook_loop(); });
  for (unsigned i = 0; i < config_.concurrency; ++i) {
    workers_.emplace_back([this] { worker_loop(); });
  }
  if (!config_.start_paused) scheduler_ = std::thread([this] { scheduler_loop(); });
  return ok_result();
}

// Only asks: safe from any thread (a signal thread). The destructor joins.
void VerifierImpl::stop() {
  stopping_ = true;
  {
    std::lock_guard lock(stop_mutex_);
    stop_cv_.notify_all();
  }
  {
    std::lock_guard lock(queue_mutex_);
    queue_cv_.notify_all();
  }
  {
    std::lock_guard lock(hooks_mutex_);
    hooks_cv_.notify_all();
  }
}

void VerifierImpl::shutdown() {
  bool was = shut_down_.exchange(true);
  if (was) return;
  stop();
  if (scheduler_.joinable()) scheduler_.join();
  for (auto& w : workers_) {
    if (w.joinable()) w.join();
  }
  workers_.clear();
  if (hook_thread_.joinable()) hook_thread_.join();
  server_.reset();
  if (store_) (void)store_->release(instance_);
}

// --- policies -----------------------------------------------------------------------------

Result<void> VerifierImpl::refresh_policies(bool force) {
  std::int64_t now = now_seconds();
  {
    std::lock_guard lock(policies_mutex_);
    if (!force && now - policies_loaded_ < 5) return ok_result();
  }
  CTRUST_ASSIGN_OR_RETURN(std::vector<store::PolicyRow> rows, store_->list_policies());
  CTRUST_ASSIGN_OR_RETURN(std::vector<store::MappingRow> maps, store_->list_mappings());
  std::map<std::string, std::string> names;
  std::map<std::string, std::shared_ptr<LoadedPolicy>> compiled;
  {
    std::lock_guard lock(policies_mutex_);
    compiled = by_digest_;
  }
  for (const auto& row : rows) {
    names[row.name] = row.digest;
    if (compiled.contains(row.digest)) continue;
    auto parsed = policy::parse_policy(row.document);
    if (!parsed) {
      spdlog::error("stored policy {}: {}", row.name, parsed.error().message());
      continue;
    }
    auto c = policy::CompiledPolicy::compile(*parsed);
    if (!c) {
      spdlog::error("stored policy {}: {}", row.name, c.error().message());
      continue;
    }
    auto lp = std::make_shared<LoadedPolicy>();
    lp->row = row;
    lp->choice.name = row.name + "@" + std::to_string(row.serial);
    lp->choice.digest = row.digest;
    lp->choice.compiled = std::make_shared<policy::CompiledPolicy>(std::move(*c));
    for (const auto& d : parsed->images) lp->choice.images.push_back("sha256:" + d.hex());
    compiled[row.digest] = std::move(lp);
  }
  // Only what the store still holds: a removed policy judges nothing any more.
  for (auto it = compiled.begin(); it != compiled.end();) {
    auto n = names.find(it->second->row.name);
    it = n == names.end() || n->second != it->first ? compiled.erase(it) : std::next(it);
  }
  std::map<std::pair<std::string, std::string>, std::string> m;
  for (const auto& row : maps) m[{row.kind, row.key}] = row.policy;
  std::lock_guard lock(policies_mutex_);
  by_digest_ = std::move(compiled);
  policy_digest_by_name_ = std::move(names);
  mappings_ = std::move(m);
  policies_loaded_ = now;
  return ok_result();
}

std::optional<attest::PolicyChoice> VerifierImpl::lookup(const std::string& agent,
                                                         const std::string& container,
                                                         const std::string& image,
                                                         const std::string& logged_policy) {
  if (auto r = refresh_policies(false); !r) spdlog::warn("policies: {}", r.error().message());
  // A digest of an older serial than the verifier's latest: the policy's name, from the
  // store (the latest serial of that name judges).
  std::string older_name;
  bool known = false;
  {
    std::lock_guard lock(policies_mutex_);
    known = by_digest_.contains(logged_policy);
  }
  if (!known && !logged_policy.empty()) {
    auto row = store_->get_policy_by_digest(logged_policy);
    if (row && *row) older_name = (*row)->name;
  }
  std::lock_guard lock(policies_mutex_);
  auto by_name = [&](const std::string& name) -> std::optional<attest::PolicyChoice> {
    auto d = policy_digest_by_name_.find(name);
    if (d == policy_digest_by_name_.end()) return std::nullopt;
    auto p = by_digest_.find(d->second);
    if (p == by_digest_.end()) return std::nullopt;
    return p->second->choice;
  };
  // The most specific mapping first: this agent's container, any agent's container of that
  // name, the image; else the policy the agent says it enforces, if the verifier has it.
  std::string qualified = agent;
  qualified += '/';
  qualified += container;
  for (const auto& key : {qualified, container}) {
    auto m = mappings_.find({"container", key});
    if (m != mappings_.end()) return by_name(m->second);
  }
  auto m = mappings_.find({"image", image});
  if (m != mappings_.end()) return by_name(m->second);
  auto p = by_digest_.find(logged_policy);
  if (p != by_digest_.end()) return p->second->choice;  // only newest serials are held
  // An older serial the agent still enforces: judged by the newest of that name.
  if (!older_name.empty()) return by_name(older_name);
  return std::nullopt;
}

Result<json> VerifierImpl::add_policy(const std::string& text) {
  auto parsed = policy::parse_policy(text);
  if (!parsed) return std::move(parsed).error();
  std::string signer;
  if (parsed->signature) {
    CTRUST_ASSIGN_OR_RETURN(policy::VerifyResult v,
                            policy::verify_policy(*parsed, policy_anchors_, now_seconds()));
    if (!v.ok) return Error(Errc::kInvalidArgument, "policy " + parsed->name + ": " + v.reason);
    signer = v.signer;
  } else if (!config_.allow_unsigned_policies) {
    return Error(Errc::kInvalidArgument, "policy " + parsed->name +
                                             " is not signed (sign it with `ctrust policy "
                                             "sign`; [trust] allow_unsigned_policies is off)");
  } else {
    signer = "unsigned";
  }
  auto compiled = policy::CompiledPolicy::compile(*parsed);
  if (!compiled) return std::move(compiled).error();
  CTRUST_ASSIGN_OR_RETURN(auto existing, store_->get_policy(parsed->name));
  if (existing && existing->serial > parsed->serial) {
    return Error(Errc::kInvalidArgument, "policy " + parsed->name + " serial " +
                                             std::to_string(parsed->serial) +
                                             " is older than the stored serial " +
                                             std::to_string(existing->serial) + " (a rollback)");
  }
  CTRUST_ASSIGN_OR_RETURN(crypto::Digest d,
                          crypto::digest_bytes(crypto::HashAlg::kSha256, as_bytes(text)));
  store::PolicyRow row;
  row.name = parsed->name;
  row.serial = parsed->serial;
  row.digest = "sha256:" + d.hex();
  row.document = text;
  row.signer = signer;
  row.added_at = now_seconds();
  CTRUST_TRY(store_->put_policy(row));
  CTRUST_TRY(refresh_policies(true));
  spdlog::info("policy {} serial {} added (signer {})", row.name, row.serial, signer);
  return json{{"name", row.name},
              {"serial", row.serial},
              {"digest", row.digest},
              {"signer", signer},
              {"entries", compiled->size()}};
}

// --- agents -------------------------------------------------------------------------------

Result<json> VerifierImpl::register_agent_request(const json& body) {
  std::string url = member(body, "url");
  if (url.empty()) return Error(Errc::kInvalidArgument, "register needs \"url\"");
  RegistrationOptions options;
  options.client = client_identity_;
  options.trust = ek_trust_;
  options.timeout_ms = static_cast<int>(config_.timeout_ms);
  if (body.contains("ek_pin")) {
    std::string pin = member(body, "ek_pin");
    if (pin.size() != 71 || pin.rfind("sha256:", 0) != 0) {
      return Error(Errc::kInvalidArgument, "ek_pin must be sha256:HEX (64 hex digits)");
    }
    options.trust.pins.push_back(pin);
  }
  CTRUST_ASSIGN_OR_RETURN(RegisteredAgent reg, register_agent(url, options));
  if (!valid_id(reg.id)) {
    return Error(Errc::kInvalidArgument, "the agent's id " + printable(reg.id) + " is not valid");
  }
  CTRUST_ASSIGN_OR_RETURN(auto old, store_->get_agent(reg.id));
  if (old) {
    // A new identity (another TPM, another AK) starts from scratch; history is kept only
    // for the same identity.
    auto prev = RegisteredAgent::from_json(old->identity);
    if (!prev || prev->ak_name != reg.ak_name) CTRUST_TRY(store_->delete_agent(reg.id));
  }
  store::AgentRow row;
  if (old && RegisteredAgent::from_json(old->identity).ok() &&
      RegisteredAgent::from_json(old->identity)->ak_name == reg.ak_name) {
    row = *old;
  }
  row.id = reg.id;
  row.url = url;
  row.identity = reg.to_json();
  if (row.status.empty()) row.status = "registered";
  row.registered_at = now_seconds();
  row.updated_at = row.registered_at;
  row.next_due = 0;
  row.owner.clear();
  row.lease_until = 0;
  CTRUST_TRY(store_->put_agent(row));
  {
    std::lock_guard lock(clients_mutex_);
    clients_.erase(reg.id);
  }
  spdlog::info("agent {} registered at {} (EK {}, {})", reg.id, url, reg.ek_fingerprint,
               reg.ek_trust);
  queue_cv_.notify_all();
  return agent_json(row, false);
}

Result<std::shared_ptr<ClientSlot>> VerifierImpl::client_for(const RegisteredAgent& agent) {
  std::lock_guard lock(clients_mutex_);
  auto& slot = clients_[agent.id];
  if (!slot) slot = std::make_shared<ClientSlot>();
  return slot;
}

json VerifierImpl::agent_json(const store::AgentRow& row, bool with_containers) {
  json out = {{"id", row.id},
              {"url", row.url},
              {"status", row.status},
              {"registered_at", row.registered_at},
              {"updated_at", row.updated_at},
              {"owner", row.owner}};
  if (row.identity.is_object()) {
    out["ek"] = row.identity.value("ek_fingerprint", "");
    out["ek_trust"] = row.identity.value("ek_trust", "");
    out["tls_fingerprint"] = row.identity.value("tls_fingerprint", "");
  }
  if (row.state.is_object() && row.state.contains("host")) {
    const json& h = row.state["host"];
    out["verdict"] = h.value("status", "none");
    json reasons = h.value("reasons", json::array());
    for (const auto& w : h.value("warnings", json::array())) reasons.push_back(w);
    out["reasons"] = reasons;
    out["host_log_entries"] = h.contains("log") ? h["log"].value("offset", 0) : 0;
  } else {
    out["verdict"] = "none";
  }
  if (row.state.is_object() && row.state.contains("round_reasons")) {
    out["last_reasons"] = row.state["round_reasons"];
  }
  if (with_containers) {
    json list = json::array();
    auto rows = store_->list_containers(row.id);
    if (rows) {
      for (const auto& c : *rows) {
        list.push_back(
            {{"id", c.container_id},
             {"verdict", c.verdict},
             {"reasons", c.reasons},
             {"image", c.state.value("image", "")},
             {"policy", c.state.value("policy", "")},
             {"mode", c.state.value("mode", "")},
             {"log_entries", c.state.contains("log") ? c.state["log"].value("offset", 0) : 0},
             {"stopped", c.state.value("stopped", false)},
             {"updated_at", c.updated_at}});
      }
    }
    out["containers"] = list;
  }
  return out;
}

// One attestation of one claimed agent; everything it learns is stored in one transaction.
void VerifierImpl::attest_one(store::AgentRow row) {
  auto started = std::chrono::steady_clock::now();
  inflight_gauge_->inc();
  auto done = [&] {
    inflight_gauge_->dec();
    latency_->observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  };
  std::int64_t now = now_seconds();
  // The state as stored now: another attestation of this agent (a manual one) may have
  // finished since the row was claimed. The claim's lease fields stay.
  if (auto fresh = store_->get_agent(row.id); fresh && *fresh) {
    std::string owner = row.owner;
    std::int64_t lease = row.lease_until;
    row = **fresh;
    row.owner = owner;
    row.lease_until = lease;
  }
  auto reg = RegisteredAgent::from_json(row.identity);
  if (!reg) {
    spdlog::error("agent {}: {}", row.id, reg.error().message());
    attest_error_->inc();
    done();
    return;
  }
  auto hstate = attest::HostState::from_json(row.state.value("host", json::object()));
  std::map<std::string, attest::ContainerState> containers;
  auto rows = store_->list_containers(row.id);
  if (!hstate || !rows) {
    spdlog::error("agent {}: stored state: {}", row.id,
                  (!hstate ? hstate.error() : rows.error()).message());
    attest_error_->inc();
    done();
    return;
  }
  for (const auto& c : *rows) {
    auto st = attest::ContainerState::from_json(c.state);
    if (st) containers[c.container_id] = std::move(*st);
  }
  std::map<std::string, Status> before;
  for (const auto& [id, st] : containers) before[id] = st.status;
  Status host_before = hstate->status;
  std::string status_before = row.status;

  auto slot = client_for(*reg);
  Result<attest::AttestationOutcome> outcome = Error(Errc::kInternal, "not run");
  {
    std::lock_guard lock((*slot)->mutex);
    if (!(*slot)->client || (*slot)->fingerprint != reg->tls_fingerprint) {
      auto c = agent_client(*reg, *client_identity_, static_cast<int>(config_.timeout_ms));
      if (c) {
        (*slot)->client.emplace(std::move(*c));
        (*slot)->fingerprint = reg->tls_fingerprint;
      } else {
        outcome = std::move(c).error();
      }
    }
    if ((*slot)->client) {
      outcome = attest_agent(
          *(*slot)->client, *reg, *hstate, containers, refs_,
          [&](const std::string& cid, const std::string& image, const std::string& logged) {
            return lookup(row.id, cid, image, logged);
          },
          now);
    }
  }
  std::vector<store::VerdictEvent> events;
  // Webhooks go out only for what was stored.
  struct Pending {
    std::string container;
    Status now, before;
    std::vector<attest::Reason> reasons;
    std::string ear;
  };
  std::vector<Pending> pending;
  std::vector<store::ContainerRow> changed_rows;
  std::vector<std::string> removed;
  row.updated_at = now;
  row.next_due = now + config_.interval;
  json state = row.state.is_object() ? row.state : json::object();
  if (!outcome) {
    attest_unreachable_->inc();
    row.status = "unreachable";
    state["error"] = outcome.error().message();
    if (status_before != "unreachable") {
      spdlog::warn("agent {}: {}", row.id, outcome.error().message());
      store::VerdictEvent e;
      e.agent_id = row.id;
      e.time = now;
      e.verdict = "none";
      attest::Reason r;
      r.code = "unreachable";
      r.message = outcome.error().message();
      e.reasons = reasons_json({r});
      events.push_back(e);
    }
  } else {
    attest_ok_->inc();
    entries_->inc(outcome->entries_verified);
    attest::Ear ear = make_ear(*reg, *hstate, containers, &*outcome, now);
    auto jwt = attest::sign_ear(ear, *ear_key_, ear_kid_);
    std::string token = jwt ? *jwt : "";
    if (!jwt) spdlog::error("agent {}: signing the EAR: {}", row.id, jwt.error().message());
    row.status = hstate->status == Status::kAffirming || hstate->status == Status::kWarning
                     ? "trusted"
                     : "untrusted";
    state["host"] = hstate->to_json();
    state["ear"] = token;
    state["round_reasons"] = reasons_json(outcome->host_reasons);
    state.erase("error");
    if (outcome->host_changed || status_before == "unreachable" || status_before == "registered") {
      store::VerdictEvent e;
      e.agent_id = row.id;
      e.time = now;
      e.verdict = std::string(attest::status_name(hstate->status));
      e.reasons = reasons_json(ear.submods[0].reasons);
      e.ear = token;
      events.push_back(e);
      pending.push_back({"", hstate->status, host_before, ear.submods[0].reasons, token});
    }
    for (const auto& id : outcome->dropped) {
      bool again = std::any_of(outcome->containers.begin(), outcome->containers.end(),
                               [&id](const attest::ContainerOutcome& o) { return o.id == id; });
      if (!again) removed.push_back(id);
    }
    for (const auto& o : outcome->containers) {
      auto it = containers.find(o.id);
      if (it == containers.end()) continue;
      const attest::Submod* sub = ear.find_submod(container_submod(o.id));
      std::vector<attest::Reason> reasons = sub ? sub->reasons : std::vector<attest::Reason>{};
      if (o.removed && !o.changed) {
        removed.push_back(o.id);
        continue;
      }
      store::ContainerRow cr;
      cr.agent_id = row.id;
      cr.container_id = o.id;
      cr.state = it->second.to_json();
      cr.verdict = std::string(attest::status_name(it->second.status));
      cr.reasons = reasons_json(reasons);
      cr.updated_at = now;
      changed_rows.push_back(std::move(cr));
      auto b = before.find(o.id);
      if (o.changed || b == before.end()) {
        store::VerdictEvent e;
        e.agent_id = row.id;
        e.container_id = o.id;
        e.time = now;
        e.verdict = std::string(attest::status_name(it->second.status));
        e.reasons = reasons_json(reasons);
        e.ear = token;
        events.push_back(e);
        pending.push_back({o.id, it->second.status, b == before.end() ? Status::kNone : b->second,
                           reasons, token});
      }
    }
  }
  row.state = state;
  changes_->inc(events.size());
  // A loop attestation holds the agent's lease; a manual one (POST .../attest) does not.
  std::string owner = row.owner == instance_ ? instance_ : "";
  auto saved = store_->save_attestation(row, owner, changed_rows, removed, events);
  if (!saved) {
    spdlog::error("agent {}: saving the attestation: {}", row.id, saved.error().message());
    attest_error_->inc();
  } else {
    for (const auto& p : pending) notify(row.id, p.container, p.now, p.before, p.reasons, p.ear);
  }
  done();
}

Result<json> VerifierImpl::attest_now(const std::string& id) {
  {
    std::unique_lock lock(queue_mutex_);
    // Wait for a loop attestation of this agent to finish: one at a time per agent.
    queue_cv_.wait_for(lock, std::chrono::seconds(30), [&] { return !in_flight_.contains(id); });
    in_flight_.insert(id);
  }
  // Read after the wait: a row read before would hold the state before that attestation.
  auto row = store_->get_agent(id);
  if (!row || !*row) {
    std::lock_guard lock(queue_mutex_);
    in_flight_.erase(id);
    queue_cv_.notify_all();
    if (!row) return std::move(row).error();
    return Error(Errc::kNotFound, "no agent " + id);
  }
  attest_one(**row);
  {
    std::lock_guard lock(queue_mutex_);
    in_flight_.erase(id);
    finished_at_[id] = ++finish_seq_;
  }
  queue_cv_.notify_all();
  CTRUST_ASSIGN_OR_RETURN(auto after, store_->get_agent(id));
  if (!after) return Error(Errc::kNotFound, "agent " + id + " was removed");
  json out = agent_json(*after, true);
  out["ear"] = after->state.value("ear", "");
  if (after->status == "unreachable") out["error"] = after->state.value("error", "");
  return out;
}

// --- the loop -----------------------------------------------------------------------------

void VerifierImpl::scheduler_loop() {
  while (!stopping_) {
    std::size_t room = 0;
    {
      std::lock_guard lock(queue_mutex_);
      std::size_t busy = queue_.size() + in_flight_.size();
      std::size_t cap = std::size_t{config_.concurrency} * 2;
      room = busy >= cap ? 0 : cap - busy;
    }
    // Every tick, busy or not: the heartbeat (written once a second), and agents handed to a
    // verifier that holds fewer (one came up). Every tick, because only agents not due may
    // be handed over, and with a 1 s interval an agent is not due for under a second; the
    // counts go through the agents_by_owner index.
    if (auto shed = store_->shed(instance_, now_seconds(), config_.lease); !shed) {
      spdlog::error("sharing agents: {}", shed.error().message());
    } else if (*shed > 0) {
      spdlog::info("handed {} agent(s) to the verifier that holds the fewest (fair shares)", *shed);
    }
    if (room > 0) {
      std::uint64_t claim_seq = 0;
      {
        std::lock_guard lock(queue_mutex_);
        claim_seq = finish_seq_;
      }
      auto due = store_->claim_due(instance_, now_seconds(), config_.lease, room);
      if (!due) {
        spdlog::error("claiming agents: {}", due.error().message());
      } else if (!due->empty()) {
        std::lock_guard lock(queue_mutex_);
        for (auto& row : *due) {
          if (in_flight_.contains(row.id)) continue;
          // Finished after the claim read it: the row is stale (not due any more).
          auto f = finished_at_.find(row.id);
          if (f != finished_at_.end() && f->second > claim_seq) continue;
          bool queued = std::any_of(queue_.begin(), queue_.end(),
                                    [&](const store::AgentRow& r) { return r.id == row.id; });
          if (!queued) queue_.push_back(std::move(row));
        }
        queue_cv_.notify_all();
      }
    }
    static std::int64_t last_count = 0;
    if (now_seconds() - last_count >= 5) {
      last_count = now_seconds();
      if (auto all = store_->list_agents()) agents_gauge_->set(static_cast<double>(all->size()));
    }
    std::unique_lock lock(stop_mutex_);
    stop_cv_.wait_for(lock, std::chrono::milliseconds(100), [&] { return stopping_.load(); });
  }
}

void VerifierImpl::worker_loop() {
  while (true) {
    store::AgentRow row;
    {
      std::unique_lock lock(queue_mutex_);
      queue_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      row = std::move(queue_.front());
      queue_.pop_front();
      if (in_flight_.contains(row.id)) continue;
      in_flight_.insert(row.id);
    }
    std::string id = row.id;
    attest_one(std::move(row));
    {
      std::lock_guard lock(queue_mutex_);
      in_flight_.erase(id);
      finished_at_[id] = ++finish_seq_;
    }
    queue_cv_.notify_all();
  }
}

// --- webhooks -----------------------------------------------------------------------------

void VerifierImpl::notify(const std::string& agent, const std::string& container, Status now,
                          Status before, const std::vector<attest::Reason>& reasons,
                          const std::string& ear) {
  if (config_.webhooks.empty()) return;
  json event = {{"type", "verdict-changed"},
                {"agent", agent},
                {"container", container},
                {"verdict", attest::status_name(now)},
                {"previous", attest::status_name(before)},
                {"reasons", reasons_json(reasons)},
                {"time", now_seconds()},
                {"ear", ear}};
  std::lock_guard lock(hooks_mutex_);
  if (hooks_.size() >= 10000) {
    hook_dropped_->inc();
    return;
  }
  hooks_.push_back(event.dump());
  hooks_cv_.notify_one();
}

void VerifierImpl::webhook_loop() {
  std::map<std::string, std::optional<net::HttpClient>> clients;
  while (true) {
    std::string body;
    {
      std::unique_lock lock(hooks_mutex_);
      hooks_cv_.wait(lock, [&] { return stopping_ || !hooks_.empty(); });
      if (hooks_.empty()) return;  // stopping, and everything queued was sent
      body = std::move(hooks_.front());
      hooks_.pop_front();
    }
    for (const auto& url : config_.webhooks) {
      auto scheme_end = url.find("://");
      auto path_start = url.find('/', scheme_end + 3);
      std::string base = path_start == std::string::npos ? url : url.substr(0, path_start);
      std::string path = path_start == std::string::npos ? "/" : url.substr(path_start);
      bool delivered = false;
      for (int attempt = 0; attempt < 3 && !delivered; ++attempt) {
        if (attempt > 0 && !stopping_)
          std::this_thread::sleep_for(std::chrono::milliseconds(200 << attempt));
        auto& client = clients[base];
        if (!client) {
          net::ClientOptions o;
          o.timeout_ms = static_cast<int>(config_.webhook_timeout_ms);
          o.connect_timeout_ms = static_cast<int>(config_.webhook_timeout_ms);
          auto c = net::HttpClient::create(base, o);
          if (!c) {
            spdlog::warn("webhook {}: {}", url, c.error().message());
            break;
          }
          client.emplace(std::move(*c));
        }
        auto r = client->request("POST", path, body);
        delivered = r && r->status >= 200 && r->status < 300;
        if (!delivered) {
          spdlog::warn("webhook {}: {}", url,
                       r ? "HTTP " + std::to_string(r->status) : r.error().message());
          client.reset();
        }
      }
      if (!delivered) hook_failures_->inc();
    }
  }
}

// --- REST ---------------------------------------------------------------------------------

void VerifierImpl::routes() {
  auto wrap = [](auto&& f) {
    return [f](const net::Request& req) -> net::Response {
      Result<net::Response> r = f(req);
      if (!r) return from_error(r.error());
      return std::move(*r);
    };
  };
  server_->route("GET", "/v1/health", [](const net::Request&) {
    return net::json_response(200, json{{"ok", true}});
  });
  server_->route("GET", "/metrics", [this](const net::Request&) {
    net::Response r;
    r.content_type = std::string(kExpositionContentType);
    r.body = metrics_.render();
    return r;
  });
  server_->route("GET", "/v1/ear-key",
                 [this](const net::Request&) { return net::json_response(200, ear_jwks_); });
  server_->route("POST", "/v1/agents",
                 wrap([this](const net::Request& req) -> Result<net::Response> {
                   CTRUST_ASSIGN_OR_RETURN(json body, parse_body(req));
                   CTRUST_ASSIGN_OR_RETURN(json agent, register_agent_request(body));
                   return net::json_response(201, agent);
                 }));
  server_->route("GET", "/v1/agents", wrap([this](const net::Request&) -> Result<net::Response> {
                   CTRUST_ASSIGN_OR_RETURN(auto rows, store_->list_agents());
                   json list = json::array();
                   for (const auto& row : rows) list.push_back(agent_json(row, true));
                   return net::json_response(200, json{{"agents", list}});
                 }));
  server_->route("GET", "/v1/agents/{id}",
                 wrap([this](const net::Request& req) -> Result<net::Response> {
                   const std::string& id = req.path_params.at("id");
                   CTRUST_ASSIGN_OR_RETURN(auto row, store_->get_agent(id));
                   if (!row) return Error(Errc::kNotFound, "no agent " + printable(id));
                   return net::json_response(200, agent_json(*row, true));
                 }));
  server_->route("DELETE", "/v1/agents/{id}",
                 wrap([this](const net::Request& req) -> Result<net::Response> {
                   const std::string& id = req.path_params.at("id");
                   CTRUST_ASSIGN_OR_RETURN(bool gone, store_->delete_agent(id));
                   if (!gone) return Error(Errc::kNotFound, "no agent " + printable(id));
                   std::lock_guard lock(clients_mutex_);
                   clients_.erase(id);
                   return net::json_response(200, json{{"deleted", id}});
                 }));
  server_->route("POST", "/v1/agents/{id}/attest",
                 wrap([this](const net::Request& req) -> Result<net::Response> {
                   CTRUST_ASSIGN_OR_RETURN(json out, attest_now(req.path_params.at("id")));
                   return net::json_response(200, out);
                 }));
  server_->route(
      "GET", "/v1/agents/{id}/result",
      wrap([this](const net::Request& req) -> Result<net::Response> {
        const std::string& id = req.path_params.at("id");
        CTRUST_ASSIGN_OR_RETURN(auto row, store_->get_agent(id));
        if (!row) return Error(Errc::kNotFound, "no agent " + printable(id));
        std::string ear = row->state.value("ear", "");
        if (ear.empty()) return Error(Errc::kNotFound, "agent " + id + " has no result yet");
        if (req.query.contains("format") && req.query.at("format") == "jwt") {
          net::Response r;
          r.content_type = "application/eat-ar+jwt";
          r.body = ear;
          return r;
        }
        auto verified = attest::verify_ear(ear, *ear_key_->public_key());
        if (!verified) return std::move(verified).error();
        return net::json_response(200, json{{"ear", ear}, {"claims", verified->to_claims()}});
      }));
  server_->route(
      "GET", "/v1/agents/{id}/containers/{cid}",
      wrap([this](const net::Request& req) -> Result<net::Response> {
        const std::string& id = req.path_params.at("id");
        const std::string& cid = req.path_params.at("cid");
        CTRUST_ASSIGN_OR_RETURN(auto c, store_->get_container(id, cid));
        if (!c) return Error(Errc::kNotFound, "no container " + printable(cid));
        CTRUST_ASSIGN_OR_RETURN(auto history, store_->events(id, cid, 20, 0));
        json h = json::array();
        for (const auto& e : history) {
          h.push_back(
              {{"id", e.id}, {"time", e.time}, {"verdict", e.verdict}, {"reasons", e.reasons}});
        }
        return net::json_response(200, json{{"agent", id},
                                            {"id", cid},
                                            {"verdict", c->verdict},
                                            {"reasons", c->reasons},
                                            {"state", c->state},
                                            {"history", h}});
      }));
  server_->route("GET", "/v1/history",
                 wrap([this](const net::Request& req) -> Result<net::Response> {
                   auto q = [&](const char* k) {
                     auto it = req.query.find(k);
                     return it == req.query.end() ? std::string() : it->second;
                   };
                   std::size_t limit = 100;
                   std::int64_t before = 0;
                   try {
                     if (!q("limit").empty())
                       limit = std::min<std::size_t>(std::stoul(q("limit")), 10000);
                     if (!q("before").empty()) before = std::stoll(q("before"));
                   } catch (const std::exception&) {
                     return Error(Errc::kInvalidArgument, "limit and before must be numbers");
                   }
                   CTRUST_ASSIGN_OR_RETURN(
                       auto events, store_->events(q("agent"), q("container"), limit, before));
                   json list = json::array();
                   for (const auto& e : events) {
                     list.push_back({{"id", e.id},
                                     {"agent", e.agent_id},
                                     {"container", e.container_id},
                                     {"time", e.time},
                                     {"verdict", e.verdict},
                                     {"reasons", e.reasons},
                                     {"ear", e.ear}});
                   }
                   return net::json_response(200, json{{"events", list}});
                 }));
  server_->route("POST", "/v1/policies",
                 wrap([this](const net::Request& req) -> Result<net::Response> {
                   CTRUST_ASSIGN_OR_RETURN(json out, add_policy(req.body));
                   return net::json_response(201, out);
                 }));
  server_->route("GET", "/v1/policies", wrap([this](const net::Request&) -> Result<net::Response> {
                   CTRUST_ASSIGN_OR_RETURN(auto rows, store_->list_policies());
                   json list = json::array();
                   for (const auto& r : rows) {
                     list.push_back({{"name", r.name},
                                     {"serial", r.serial},
                                     {"digest", r.digest},
                                     {"signer", r.signer},
                                     {"added_at", r.added_at}});
                   }
                   return net::json_response(200, json{{"policies", list}});
                 }));
  server_->route("DELETE", "/v1/policies/{name}",
                 wrap([this](const net::Request& req) -> Result<net::Response> {
                   const std::string& name = req.path_params.at("name");
                   CTRUST_ASSIGN_OR_RETURN(bool gone, store_->delete_policy(name));
                   if (!gone) return Error(Errc::kNotFound, "no policy " + printable(name));
                   CTRUST_TRY(refresh_policies(true));
                   return net::json_response(200, json{{"deleted", name}});
                 }));
  server_->route(
      "PUT", "/v1/mappings", wrap([this](const net::Request& req) -> Result<net::Response> {
        CTRUST_ASSIGN_OR_RETURN(json body, parse_body(req));
        store::MappingRow m{member(body, "kind"), member(body, "key"), member(body, "policy")};
        if (m.kind != "image" && m.kind != "container") {
          return Error(Errc::kInvalidArgument, R"(kind must be "image" or "container")");
        }
        if (m.key.empty() || m.key.size() > 300)
          return Error(Errc::kInvalidArgument, "key is missing");
        if (m.kind == "image" && (m.key.size() != 71 || m.key.rfind("sha256:", 0) != 0)) {
          return Error(Errc::kInvalidArgument, "an image key is sha256:HEX");
        }
        CTRUST_ASSIGN_OR_RETURN(auto p, store_->get_policy(m.policy));
        if (!p) return Error(Errc::kInvalidArgument, "no policy " + printable(m.policy));
        CTRUST_TRY(store_->put_mapping(m));
        CTRUST_TRY(refresh_policies(true));
        return net::json_response(200,
                                  json{{"kind", m.kind}, {"key", m.key}, {"policy", m.policy}});
      }));
  server_->route("GET", "/v1/mappings", wrap([this](const net::Request&) -> Result<net::Response> {
                   CTRUST_ASSIGN_OR_RETURN(auto rows, store_->list_mappings());
                   json list = json::array();
                   for (const auto& m : rows)
                     list.push_back({{"kind", m.kind}, {"key", m.key}, {"policy", m.policy}});
                   return net::json_response(200, json{{"mappings", list}});
                 }));
  // DELETE /v1/mappings?kind=KIND&key=KEY: in the query, because a container key
  // (AGENT/ID) holds a '/' that a path segment may not.
  server_->route(
      "DELETE", "/v1/mappings", wrap([this](const net::Request& req) -> Result<net::Response> {
        auto kind = req.query.find("kind");
        auto key = req.query.find("key");
        if (kind == req.query.end() || key == req.query.end()) {
          return Error(Errc::kInvalidArgument, "give ?kind=...&key=...");
        }
        CTRUST_ASSIGN_OR_RETURN(bool gone, store_->delete_mapping(kind->second, key->second));
        if (!gone) return Error(Errc::kNotFound, "no such mapping");
        CTRUST_TRY(refresh_policies(true));
        return net::json_response(200, json{{"deleted", true}});
      }));
}

}  // namespace
}  // namespace ctrust::verifier
