// The verifier at fleet scale (docs/BENCHMARKS.md, "verifier at fleet scale"): N simulated
// agents with M containers each, attested every T seconds by the real verifier
// (verifier::Verifier: its scheduler, leases, HTTPS with pinned agent keys, incremental
// verification, EAR signing and the store), against SQLite or PostgreSQL.
//
// Each simulated agent is an attest::SimHost (software AKs for the host and every
// container, logs kept as ctrustd keeps them) behind its own net::HttpServer on its own
// port (TLS 1.3, the verifier's client certificate required, one worker thread), answering
// POST /v1/challenge exactly as ctrustd does. Every container log starts with
// boot_aggregate, ctrust:image, ctrust:policy:fleet and --files file entries; on every
// challenge --new-entries new file entries appear, round-robin over the agent's containers,
// so that every attestation replays and judges new entries. All agents share one TLS key
// (each stored identity pins its fingerprint). The verifier judges every container by one
// signed policy (--policy-digests allowed digests), added through its REST API.
//
// The agents' servers close idle keep-alive connections after 1 s (--agent-idle-ms; ctrustd
// keeps net::ServerOptions' 5 s). Either is shorter than the interval, so every attestation
// makes a new TLS connection in both cases; but httplib waits on an idle keep-alive
// connection by polling it every ~10 ms, and 1000 such waits in this one process cost the
// agents' side most of a core that the verifier then lacks.
//
// Registration (EK trust, MakeCredential/ActivateCredential) is out of scope: this is the
// steady state, so the agents are written straight into the store with the identity a
// registration would have produced (the SimHost's AK, the pinned TLS key; placeholder EK
// fields). Their first due times are spread evenly over one interval.
//
// The simulated agents run in this process, on the same cores as the verifier. The CPU
// time is therefore split per thread (/proc/self/task/*/stat): the agents' server threads
// (TLS handshakes, evidence: 1 + M ECDSA signatures per challenge), the verifier's threads
// (everything created by Verifier::start), and, with --external-comm postgres, the
// PostgreSQL server processes. The machine's total busy time is reported too, since these
// machines are shared.
//
// Output: a table on stdout and, with --json PATH, the figures as JSON.
//
// Usage: fleet_bench [--agents 1000] [--containers 10] [--interval 10] [--warmup 25]
//          [--seconds 60] [--concurrency 32] [--store sqlite|URL] [--new-entries 1]
//          [--files 20] [--policy-digests 5000] [--agent-threads 1] [--agent-idle-ms 1000]
//          [--external-comm postgres] [--json PATH] [--label TEXT] [--state-dir DIR]
//          [--log-level warn]
#include <dirent.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "attest/evidence.h"
#include "attest/soft_quoter.h"
#include "crypto/digest.h"
#include "crypto/keys.h"
#include "net/http_client.h"
#include "net/http_server.h"
#include "net/tls.h"
#include "policy/policy.h"
#include "store/store.h"
#include "util/file.h"
#include "util/hex.h"
#include "verifier/config.h"
#include "verifier/registration.h"
#include "verifier/service.h"

namespace {

using namespace ctrust;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

struct Options {
  unsigned agents = 1000;
  unsigned containers = 10;
  unsigned interval = 10;
  unsigned warmup = 25;
  unsigned seconds = 60;
  unsigned concurrency = 32;
  unsigned new_entries = 1;
  unsigned files = 20;
  unsigned policy_digests = 5000;
  int agent_threads = 1;
  int agent_idle_ms = 1000;
  std::string store = "sqlite";
  std::string external_comm;
  std::string json_path;
  std::string label;
  std::string state_dir;
  std::string log_level = "warn";
};

[[noreturn]] void die(const std::string& what, const std::string& message) {
  std::fprintf(stderr, "fleet_bench: %s: %s\n", what.c_str(), message.c_str());
  std::exit(1);
}

template <typename T>
T must(Result<T> r, const std::string& what) {
  if (!r) die(what, r.error().message());
  return std::move(r).value();
}
void must(Result<void> r, const std::string& what) {
  if (!r) die(what, r.error().message());
}

void usage() {
  std::fprintf(stderr,
               "usage: fleet_bench [--agents N] [--containers M] [--interval S] [--warmup S]\n"
               "  [--seconds S] [--concurrency C] [--store sqlite|URL] [--new-entries K]\n"
               "  [--files F] [--policy-digests P] [--agent-threads T] [--agent-idle-ms MS]\n"
               "  [--external-comm NAME] [--json PATH] [--label TEXT] [--state-dir DIR]\n"
               "  [--log-level LEVEL]\n");
  std::exit(2);
}

Options parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") usage();
    if (i + 1 >= argc) usage();
    std::string v = argv[++i];
    auto number = [&](unsigned& out, unsigned min) {
      char* end = nullptr;
      unsigned long n = std::strtoul(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0' || n < min || n > 1000000) die(a, "bad number " + v);
      out = static_cast<unsigned>(n);
    };
    if (a == "--agents") {
      number(o.agents, 1);
    } else if (a == "--containers") {
      number(o.containers, 1);
    } else if (a == "--interval") {
      number(o.interval, 1);
    } else if (a == "--warmup") {
      number(o.warmup, 0);
    } else if (a == "--seconds") {
      number(o.seconds, 1);
    } else if (a == "--concurrency") {
      number(o.concurrency, 1);
    } else if (a == "--new-entries") {
      number(o.new_entries, 0);
    } else if (a == "--files") {
      number(o.files, 0);
    } else if (a == "--policy-digests") {
      number(o.policy_digests, 1);
    } else if (a == "--agent-threads") {
      unsigned t = 0;
      number(t, 1);
      o.agent_threads = static_cast<int>(t);
    } else if (a == "--agent-idle-ms") {
      unsigned t = 0;
      number(t, 1);
      o.agent_idle_ms = static_cast<int>(t);
    } else if (a == "--store") {
      o.store = v;
    } else if (a == "--external-comm") {
      o.external_comm = v;
    } else if (a == "--json") {
      o.json_path = v;
    } else if (a == "--label") {
      o.label = v;
    } else if (a == "--state-dir") {
      o.state_dir = v;
    } else if (a == "--log-level") {
      o.log_level = v;
    } else {
      usage();
    }
  }
  return o;
}

Bytes sha256_of(std::string_view s) {
  crypto::Digest d = must(crypto::digest_bytes(crypto::HashAlg::kSha256, as_bytes(s)), "sha256");
  return Bytes(d.view().begin(), d.view().end());
}

std::int64_t wall_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// ---- process accounting --------------------------------------------------------------

const double kTick = static_cast<double>(::sysconf(_SC_CLK_TCK));

// utime + stime (clock ticks) of a /proc/.../stat file; -1 if unreadable.
long long stat_ticks(const std::string& path) {
  std::ifstream in(path);
  std::string text;
  if (!in || !std::getline(in, text)) return -1;
  auto paren = text.rfind(')');
  if (paren == std::string::npos) return -1;
  std::istringstream fields(text.substr(paren + 2));
  std::string f;
  long long utime = 0, stime = 0;
  // After "(comm) ": state is field 3; utime and stime are fields 14 and 15.
  for (int i = 3; i <= 15 && (fields >> f); ++i) {
    if (i == 14) utime = std::atoll(f.c_str());
    if (i == 15) stime = std::atoll(f.c_str());
  }
  return utime + stime;
}

std::vector<long> numeric_entries(const std::string& dir) {
  std::vector<long> out;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    char* end = nullptr;
    long n = std::strtol(e->d_name, &end, 10);
    if (end != e->d_name && *end == '\0') out.push_back(n);
  }
  ::closedir(d);
  return out;
}

// Thread id -> CPU ticks, for this process.
std::map<long, long long> task_ticks() {
  std::map<long, long long> out;
  for (long tid : numeric_entries("/proc/self/task")) {
    long long t = stat_ticks("/proc/self/task/" + std::to_string(tid) + "/stat");
    if (t >= 0) out[tid] = t;
  }
  return out;
}

// Process id -> CPU ticks, for every process whose comm is `comm`.
std::map<long, long long> comm_ticks(const std::string& comm) {
  std::map<long, long long> out;
  if (comm.empty()) return out;
  for (long pid : numeric_entries("/proc")) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
    std::string name;
    if (!in || !std::getline(in, name) || name != comm) continue;
    long long t = stat_ticks("/proc/" + std::to_string(pid) + "/stat");
    if (t >= 0) out[pid] = t;
  }
  return out;
}

// Ticks gained between two snapshots (a process or thread new in `b` counts from zero).
double ticks_gained(const std::map<long, long long>& a, const std::map<long, long long>& b,
                    const std::set<long>* only = nullptr, const std::set<long>* except = nullptr) {
  long long sum = 0;
  for (const auto& [id, t] : b) {
    if (only != nullptr && !only->contains(id)) continue;
    if (except != nullptr && except->contains(id)) continue;
    auto it = a.find(id);
    sum += t - (it == a.end() ? 0 : it->second);
  }
  return static_cast<double>(sum);
}

struct MachineCpu {
  long long busy = 0, total = 0;
};
MachineCpu machine_cpu() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  MachineCpu m;
  in >> cpu;
  long long v[10] = {};
  for (auto& x : v) in >> x;
  for (int i = 0; i < 8; ++i) m.total += v[i];  // guest time is already in user
  m.busy = m.total - v[3] - v[4];               // minus idle and iowait
  return m;
}

double process_cpu_seconds() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  auto s = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return s(ru.ru_utime) + s(ru.ru_stime);
}

double status_kb(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  std::size_t n = std::strlen(key);
  while (std::getline(in, line)) {
    if (line.compare(0, n, key) == 0) return std::strtod(line.c_str() + n, nullptr);
  }
  return 0;
}

double thread_cpu_now() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

long current_tid() { return static_cast<long>(::syscall(SYS_gettid)); }

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  auto i = static_cast<std::size_t>(std::ceil(q * static_cast<double>(v.size()))) - 1;
  return v[std::min(i, v.size() - 1)];
}

// ---- the simulated agents ------------------------------------------------------------

std::string file_content(std::uint64_t i, unsigned pool) {
  return "fleet file content " + std::to_string(i % pool);
}

struct Answer {
  double at = 0;    // seconds since the bench started, at the challenge
  double wall = 0;  // seconds in the handler
  double cpu = 0;   // thread CPU seconds in the handler
  std::size_t bytes = 0;
};

struct SimAgent {
  std::string id;
  std::vector<std::string> container_ids;
  std::mutex mutex;  // the SimHost is single-threaded
  std::optional<attest::SimHost> host;
  std::unique_ptr<net::HttpServer> server;
  std::uint64_t next_container = 0;
  std::uint64_t next_file = 0;
  std::vector<Answer> answers;
};

struct Fleet {
  const Options* options = nullptr;
  Clock::time_point t0;
  std::vector<std::unique_ptr<SimAgent>> agents;
  std::mutex tids_mutex;
  std::set<long> handler_tids;
  std::atomic<std::uint64_t> failures{0};
};

net::Response answer_challenge(Fleet& fleet, SimAgent& agent, const net::Request& req) {
  auto started = Clock::now();
  double cpu0 = thread_cpu_now();
  auto challenge = attest::parse_challenge(req.body);
  if (!challenge) return net::error_response(400, "bad-request", challenge.error().message());
  std::lock_guard lock(agent.mutex);
  // New measurements since the last challenge: the containers ran something.
  const unsigned pool = fleet.options->policy_digests;
  for (unsigned k = 0; k < fleet.options->new_entries; ++k) {
    const std::string& cid =
        agent.container_ids[agent.next_container++ % agent.container_ids.size()];
    std::uint64_t n = agent.next_file++;
    auto r = agent.host->exec(cid, "/usr/bin/job-" + std::to_string(n),
                              file_content(n * 7919 + agent.id.size(), pool));
    if (!r) return net::error_response(500, "internal", r.error().message());
  }
  auto evidence = agent.host->answer(*challenge);
  if (!evidence) {
    fleet.failures++;
    return net::error_response(500, "internal", evidence.error().message());
  }
  net::Response res = net::json_response(200, attest::to_json(*evidence));
  Answer a;
  a.at = std::chrono::duration<double>(started - fleet.t0).count();
  a.wall = since(started);
  a.cpu = thread_cpu_now() - cpu0;
  a.bytes = res.body.size();
  agent.answers.push_back(a);
  {
    std::lock_guard t(fleet.tids_mutex);
    fleet.handler_tids.insert(current_tid());
  }
  return res;
}

void build_fleet(Fleet& fleet, const net::TlsIdentity& tls,
                 const std::vector<crypto::Certificate>& verifier_ca, ByteView image,
                 ByteView policy_digest) {
  const Options& o = *fleet.options;
  for (unsigned i = 0; i < o.agents; ++i) {
    auto agent = std::make_unique<SimAgent>();
    char name[32];
    std::snprintf(name, sizeof(name), "fleet-%05u", i);
    agent->id = name;
    agent->host.emplace(
        must(attest::SimHost::create(to_hex(sha256_of(agent->id)).substr(0, 16)), "SimHost"));
    for (unsigned c = 0; c < o.containers; ++c) {
      // Container ids as runtimes make them: 64 hex digits.
      std::string cid = to_hex(sha256_of(agent->id + " container " + std::to_string(c)));
      must(agent->host->add_container(cid, image, policy_digest, "fleet"), "add_container");
      must(agent->host->exec(cid, "/usr/bin/entrypoint",
                             file_content((i * o.containers + c) * 131, o.policy_digests)),
           "exec");
      for (unsigned f = 1; f < o.files; ++f) {
        must(agent->host->exec(
                 cid, "/usr/lib/x86_64-linux-gnu/lib" + std::to_string(f) + ".so.1",
                 file_content((i * o.containers + c) * 131 + f * 17, o.policy_digests)),
             "exec");
      }
      agent->container_ids.push_back(cid);
    }
    net::ServerOptions so;
    so.address = "127.0.0.1";
    so.port = 0;
    so.identity = tls;
    so.client_cas = verifier_ca;
    so.require_client_cert = true;
    so.threads = o.agent_threads;
    so.idle_timeout_ms = o.agent_idle_ms;
    agent->server = must(net::HttpServer::create(std::move(so)), "agent server");
    SimAgent* raw = agent.get();
    Fleet* f = &fleet;
    agent->server->route("POST", "/v1/challenge", [f, raw](const net::Request& req) {
      return answer_challenge(*f, *raw, req);
    });
    agent->server->route("GET", "/v1/health", [](const net::Request&) {
      return net::json_response(200, json{{"ok", true}});
    });
    must(agent->server->start(), "starting agent " + agent->id);
    fleet.agents.push_back(std::move(agent));
  }
}

// ---- the verifier's /metrics ---------------------------------------------------------

std::map<std::string, double> scrape(net::HttpClient& client) {
  std::map<std::string, double> out;
  auto r = client.request("GET", "/metrics");
  if (!r || r->status != 200) {
    std::fprintf(stderr, "fleet_bench: /metrics: %s\n",
                 r ? ("HTTP " + std::to_string(r->status)).c_str() : r.error().message().c_str());
    return out;
  }
  std::istringstream in(r->body);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    auto space = line.rfind(' ');
    if (space == std::string::npos) continue;
    out[line.substr(0, space)] = std::strtod(line.c_str() + space + 1, nullptr);
  }
  return out;
}

double metric(const std::map<std::string, double>& m, const std::string& key) {
  auto it = m.find(key);
  return it == m.end() ? 0 : it->second;
}

struct Quantile {
  double value = 0;             // linear interpolation inside the bucket (histogram_quantile)
  double lower = 0, upper = 0;  // the bucket
};

// The q-quantile of the observations made between two scrapes of a histogram.
Quantile histogram_quantile(const std::map<std::string, double>& a,
                            const std::map<std::string, double>& b, const std::string& name,
                            double q) {
  std::vector<std::pair<double, double>> buckets;  // (upper bound, cumulative count)
  const std::string prefix = name + "_bucket{le=\"";
  for (const auto& [key, value] : b) {
    if (key.rfind(prefix, 0) != 0) continue;
    std::string le = key.substr(prefix.size(), key.size() - prefix.size() - 2);
    double bound = le == "+Inf" ? INFINITY : std::strtod(le.c_str(), nullptr);
    buckets.emplace_back(bound, value - metric(a, key));
  }
  std::sort(buckets.begin(), buckets.end());
  Quantile out;
  if (buckets.empty() || buckets.back().second <= 0) return out;
  double rank = q * buckets.back().second;
  double lower = 0, below = 0;
  for (const auto& [bound, cum] : buckets) {
    if (cum >= rank) {
      out.lower = lower;
      out.upper = bound;
      if (std::isinf(bound)) {
        out.value = lower;
      } else {
        double in_bucket = cum - below;
        out.value = in_bucket > 0 ? lower + (bound - lower) * (rank - below) / in_bucket : bound;
      }
      return out;
    }
    lower = bound;
    below = cum;
  }
  return out;
}

// ---- one snapshot of everything counted ------------------------------------------------

struct Snapshot {
  double t = 0;  // seconds since the bench started
  std::map<std::string, double> metrics;
  std::map<long, long long> tasks;
  std::map<long, long long> external;
  MachineCpu machine;
  double process_cpu = 0;
};

Snapshot snapshot(Fleet& fleet, net::HttpClient& api) {
  Snapshot s;
  s.metrics = scrape(api);
  s.tasks = task_ticks();
  s.external = comm_ticks(fleet.options->external_comm);
  s.machine = machine_cpu();
  s.process_cpu = process_cpu_seconds();
  s.t = since(fleet.t0);
  return s;
}

const char* kAttested = "ctrust_verifier_attestations_total{result=\"verified\"}";
const char* kUnreachable = "ctrust_verifier_attestations_total{result=\"unreachable\"}";
const char* kErrors = "ctrust_verifier_attestations_total{result=\"error\"}";
const char* kEntries = "ctrust_verifier_log_entries_verified_total";
const char* kLatency = "ctrust_verifier_attestation_seconds";

std::string round_to(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
  return buf;
}

double round_n(double v, int digits) {
  double p = std::pow(10.0, digits);
  return std::round(v * p) / p;
}

int run(const Options& o) {
  spdlog::set_level(spdlog::level::from_str(o.log_level));
  // Three descriptors per agent at most (listener, its side and the verifier's side of a
  // connection), and a few per store connection.
  rlimit nofile{};
  if (::getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &nofile);
  }

  Fleet fleet;
  fleet.options = &o;
  fleet.t0 = Clock::now();
  const long main_tid = current_tid();

  std::string dir = o.state_dir;
  bool own_dir = dir.empty();
  if (own_dir) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "fleet-bench-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) die("mkdtemp", std::strerror(errno));
    dir = tmpl;
  }
  const std::string state = dir + "/verifier";
  std::filesystem::create_directories(state);
  must(verifier::ensure_tls_material(state + "/tls"), "verifier TLS material");
  Bytes ca_pem = must(read_file(state + "/tls/ca.pem", 1 << 20), "ca.pem");
  std::vector<crypto::Certificate> verifier_ca =
      must(crypto::Certificate::bundle_from_pem(
               std::string_view(reinterpret_cast<const char*>(ca_pem.data()), ca_pem.size())),
           "ca.pem");
  net::TlsIdentity client_id = must(
      net::load_identity(state + "/tls/client.key", state + "/tls/client.pem"), "client identity");

  // One TLS key for every simulated agent, self-signed as ctrustd makes its own.
  crypto::PrivateKey tls_key =
      must(crypto::PrivateKey::generate(crypto::KeyType::kEcdsaP256), "agent TLS key");
  crypto::PublicKey tls_pub = must(tls_key.public_key(), "agent TLS key");
  net::CertRequest cr;
  cr.subject_key = &tls_pub;
  cr.common_name = "fleet-agent";
  cr.dns_names = {"localhost"};
  cr.ip_addresses = {"127.0.0.1"};
  cr.days = 30;
  cr.usage = net::CertRequest::kServer;
  cr.issuer_key = &tls_key;
  crypto::Certificate tls_cert = must(net::make_certificate(cr), "agent certificate");
  std::string tls_fp = must(net::spki_fingerprint(tls_cert), "agent TLS fingerprint");
  net::TlsIdentity tls{std::move(tls_key), std::move(tls_cert), {}};

  // The signed policy every container is judged by.
  Bytes image = sha256_of("fleet image");
  crypto::PrivateKey signer =
      must(crypto::PrivateKey::generate(crypto::KeyType::kEcdsaP256), "policy signer");
  std::string signer_pem = must(must(signer.public_key(), "signer").to_pem(), "signer PEM");
  const std::string signer_path = dir + "/policy-signer.pem";
  must(write_file_atomic(signer_path, as_bytes(signer_pem), 0644), "policy-signer.pem");
  policy::Policy pol;
  pol.name = "fleet";
  pol.issuer = "fleet-bench";
  pol.serial = 1;
  pol.not_before = wall_seconds() - 3600;
  pol.not_after = wall_seconds() + 30 * 86400;
  pol.images.push_back(must(crypto::Digest::from_bytes(crypto::HashAlg::kSha256, image), "image"));
  pol.mode = policy::Mode::kEnforce;
  for (unsigned i = 0; i < o.policy_digests; ++i) {
    pol.allow.push_back({must(crypto::digest_bytes(crypto::HashAlg::kSha256,
                                                   as_bytes(file_content(i, o.policy_digests))),
                              "digest"),
                         {}});
  }
  must(policy::normalize(pol), "policy");
  must(policy::sign_policy(pol, signer, {}), "signing the policy");
  const std::string policy_text = policy::to_json(pol);
  const Bytes policy_digest = sha256_of(policy_text);

  // The fleet.
  std::printf(
      "fleet_bench: starting %u simulated agents x %u containers (%u file entries, "
      "%u new entries per challenge)...\n",
      o.agents, o.containers, o.files + 3, o.new_entries);
  std::fflush(stdout);
  auto before_fleet = task_ticks();
  auto fleet_started = Clock::now();
  build_fleet(fleet, tls, verifier_ca, image, policy_digest);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  std::set<long> agent_tids;
  for (const auto& [tid, t] : task_ticks()) {
    if (!before_fleet.contains(tid)) agent_tids.insert(tid);
  }
  const double fleet_seconds = since(fleet_started);
  const double rss_fleet_kb = status_kb("VmRSS:");
  const std::size_t fleet_threads = agent_tids.size();
  std::printf("fleet_bench: %zu agents up in %.1f s: %zu threads, RSS %.0f MB\n",
              fleet.agents.size(), fleet_seconds, fleet_threads, rss_fleet_kb / 1024.0);

  // The store: a fresh start for the bench's agents and policy.
  const std::string store_url = o.store == "sqlite" ? "sqlite:" + state + "/verifier.db" : o.store;
  auto store = must(store::open_store(store_url), "opening the store");
  for (const auto& row : must(store->list_agents(), "listing agents")) {
    if (row.id.rfind("fleet-", 0) == 0) must(store->delete_agent(row.id), "deleting " + row.id);
  }
  (void)store->delete_policy("fleet");

  verifier::VerifierConfig vc;
  vc.state_dir = state;
  vc.listen = "127.0.0.1:0";
  vc.store = store_url;
  vc.id = "fleet-bench";
  vc.log_level = o.log_level;
  vc.interval = o.interval;
  vc.concurrency = o.concurrency;
  vc.policy_trust = {signer_path};
  vc.agent_binaries = {"sha256:" + to_hex(sha256_of("ctrustd binary"))};
  vc.agent_configs = {"sha256:" + to_hex(sha256_of("ctrustd config"))};
  vc.api_rate = 1000;
  const double rss_before_verifier_kb = status_kb("VmRSS:");
  auto verifier = must(verifier::Verifier::start(vc), "starting the verifier");

  net::ClientOptions api_options;
  api_options.identity = client_id;
  api_options.ca_certs = verifier_ca;
  api_options.timeout_ms = 30000;
  net::HttpClient api = must(
      net::HttpClient::create("https://127.0.0.1:" + std::to_string(verifier->port()), api_options),
      "REST client");
  auto added = must(api.request("POST", "/v1/policies", policy_text), "POST /v1/policies");
  if (added.status != 201) die("POST /v1/policies", added.body);

  // Registered agents, due evenly over one interval.
  const std::int64_t first_due = wall_seconds() + 2;
  for (unsigned i = 0; i < o.agents; ++i) {
    SimAgent& a = *fleet.agents[i];
    verifier::RegisteredAgent reg;
    reg.id = a.id;
    reg.url = "https://127.0.0.1:" + std::to_string(a.server->port());
    reg.ek_public = sha256_of("placeholder EK of " + a.id);  // registration is out of scope
    reg.ek_fingerprint = "sha256:" + to_hex(sha256_of("placeholder EK fingerprint " + a.id));
    reg.ek_trust = "pinned";
    reg.ak_public = a.host->ak().public_tpm2b();
    reg.ak_name = a.host->ak().name();
    reg.tls_fingerprint = tls_fp;
    store::AgentRow row;
    row.id = a.id;
    row.url = reg.url;
    row.identity = reg.to_json();
    row.status = "registered";
    row.registered_at = wall_seconds();
    row.updated_at = row.registered_at;
    row.next_due = first_due + static_cast<std::int64_t>(i) * o.interval / o.agents;
    must(store->put_agent(row), "put_agent " + a.id);
  }
  std::printf(
      "fleet_bench: verifier on port %d (store %s, concurrency %u, interval %u s); "
      "warm-up %u s, then %u s measured\n",
      verifier->port(), std::string(store->backend()).c_str(), o.concurrency, o.interval, o.warmup,
      o.seconds);
  std::fflush(stdout);

  auto progress = [&](const char* phase, unsigned seconds) {
    auto prev = scrape(api);
    double prev_t = since(fleet.t0);
    for (unsigned left = seconds; left > 0;) {
      unsigned step = std::min(left, 10u);
      std::this_thread::sleep_for(std::chrono::seconds(step));
      left -= step;
      auto now = scrape(api);
      double t = since(fleet.t0);
      double n = metric(now, kAttested) - metric(prev, kAttested);
      std::printf(
          "  %-7s t=%5.0f s  %6.1f attestations/s  (unreachable %.0f, errors %.0f, "
          "in flight %.0f)\n",
          phase, t, n / (t - prev_t), metric(now, kUnreachable) - metric(prev, kUnreachable),
          metric(now, kErrors) - metric(prev, kErrors),
          metric(now, "ctrust_verifier_attestations_in_flight"));
      std::fflush(stdout);
      prev = std::move(now);
      prev_t = t;
    }
  };
  // Warm-up: from the first due time, the first round (whole logs) and some steady state.
  progress("warm-up", o.warmup + 2);
  Snapshot a = snapshot(fleet, api);
  progress("measure", o.seconds);
  Snapshot b = snapshot(fleet, api);
  const double window = b.t - a.t;

  // Staleness as the store sees it, right after the window.
  std::int64_t now_wall = wall_seconds();
  std::int64_t store_max_age = 0;
  std::size_t never_attested = 0;
  for (const auto& row : must(store->list_agents(), "listing agents")) {
    if (row.id.rfind("fleet-", 0) != 0) continue;
    if (row.status == "registered") ++never_attested;
    store_max_age = std::max(store_max_age, now_wall - row.updated_at);
  }
  const double rss_end_kb = status_kb("VmRSS:");
  const double hwm_kb = status_kb("VmHWM:");
  const std::size_t threads_total = b.tasks.size();

  verifier->stop();
  verifier.reset();

  // ---- the figures ----
  const double attested = metric(b.metrics, kAttested) - metric(a.metrics, kAttested);
  const double unreachable = metric(b.metrics, kUnreachable) - metric(a.metrics, kUnreachable);
  const double errors = metric(b.metrics, kErrors) - metric(a.metrics, kErrors);
  const double entries = metric(b.metrics, kEntries) - metric(a.metrics, kEntries);
  const double target = static_cast<double>(o.agents) / o.interval;
  const double rate = attested / window;
  const double lat_count = metric(b.metrics, std::string(kLatency) + "_count") -
                           metric(a.metrics, std::string(kLatency) + "_count");
  const double lat_sum = metric(b.metrics, std::string(kLatency) + "_sum") -
                         metric(a.metrics, std::string(kLatency) + "_sum");
  Quantile p50 = histogram_quantile(a.metrics, b.metrics, kLatency, 0.50);
  Quantile p90 = histogram_quantile(a.metrics, b.metrics, kLatency, 0.90);
  Quantile p99 = histogram_quantile(a.metrics, b.metrics, kLatency, 0.99);

  // Per agent: the longest time between two challenges in the window (an open gap at its
  // end counts too).
  double max_period = 0, min_period = 1e9;
  std::size_t late_agents = 0, early_challenges = 0;
  std::vector<double> answer_wall, answer_cpu, answer_bytes;
  double agent_handler_cpu = 0;
  for (auto& agent : fleet.agents) {
    std::lock_guard lock(agent->mutex);
    double last = -1, worst = 0;
    for (const Answer& x : agent->answers) {
      if (x.at > b.t) break;
      if (x.at >= a.t) {
        if (last >= 0) {
          worst = std::max(worst, x.at - last);
          min_period = std::min(min_period, x.at - last);
          // Sooner than the interval allows (next_due is in whole seconds).
          if (x.at - last < o.interval - 1.0) ++early_challenges;
        }
        answer_wall.push_back(x.wall);
        answer_cpu.push_back(x.cpu);
        answer_bytes.push_back(static_cast<double>(x.bytes));
        agent_handler_cpu += x.cpu;
      }
      last = x.at;
    }
    worst = last < 0 ? window : std::max(worst, b.t - last);
    max_period = std::max(max_period, worst);
    if (worst > o.interval + 2.0) ++late_agents;
  }
  const bool kept_up = late_agents == 0 && unreachable == 0 && errors == 0 && rate >= 0.98 * target;

  std::set<long> main_only{main_tid};
  std::set<long> not_verifier = agent_tids;
  {
    std::lock_guard t(fleet.tids_mutex);
    not_verifier.insert(fleet.handler_tids.begin(), fleet.handler_tids.end());
  }
  std::set<long> agents_set = not_verifier;
  not_verifier.insert(main_tid);
  // Threads that existed before the fleet (none but main) and the verifier's.
  const double agents_cpu = ticks_gained(a.tasks, b.tasks, &agents_set) / kTick;
  const double main_cpu = ticks_gained(a.tasks, b.tasks, &main_only) / kTick;
  const double verifier_cpu = ticks_gained(a.tasks, b.tasks, nullptr, &not_verifier) / kTick;
  const double process_cpu = b.process_cpu - a.process_cpu;
  const double external_cpu = ticks_gained(a.external, b.external) / kTick;
  const double machine_busy = static_cast<double>(b.machine.busy - a.machine.busy) /
                              static_cast<double>(b.machine.total - a.machine.total);
  const unsigned cores = std::thread::hardware_concurrency();

  // Verdicts, to check that the attestations did judge what they were meant to.
  std::map<std::string, std::size_t> hosts, containers, reasons;
  for (const auto& row : must(store->list_agents(), "listing agents")) {
    if (row.id.rfind("fleet-", 0) != 0) continue;
    hosts[row.status]++;
    for (const auto& c : must(store->list_containers(row.id), "containers of " + row.id)) {
      containers[c.verdict]++;
      if (c.reasons.is_array()) {
        for (const auto& r : c.reasons) reasons[r.value("code", "?")]++;
      }
    }
  }

  const std::string backend(store->backend());
  json out = {
      {"label", o.label},
      {"store", backend},
      {"agents", o.agents},
      {"containers_per_agent", o.containers},
      {"interval_s", o.interval},
      {"concurrency", o.concurrency},
      {"entries_per_container_at_start", o.files + 3},
      {"new_entries_per_challenge", o.new_entries},
      {"policy_digests", o.policy_digests},
      {"agent_server_threads", o.agent_threads},
      {"agent_idle_timeout_ms", o.agent_idle_ms},
      {"warmup_s", o.warmup},
      {"window_s", round_n(window, 2)},
      {"target_attestations_per_s", round_n(target, 2)},
      {"attestations", attested},
      {"attestations_per_s", round_n(rate, 2)},
      {"container_attestations_per_s", round_n(rate * o.containers, 1)},
      {"log_entries_verified_per_s", round_n(entries / window, 1)},
      {"unreachable", unreachable},
      {"errors", errors},
      {"agent_failures", fleet.failures.load()},
      {"kept_up", kept_up},
      {"max_challenge_period_s", round_n(max_period, 2)},
      {"max_lag_s", round_n(std::max(0.0, max_period - o.interval), 2)},
      {"late_agents", late_agents},
      {"min_challenge_period_s", round_n(min_period, 3)},
      {"early_challenges", early_challenges},
      {"store_max_age_s", store_max_age},
      {"never_attested", never_attested},
      {"latency_s",
       {{"source", "ctrust_verifier_attestation_seconds, interpolated within buckets"},
        {"count", lat_count},
        {"mean", round_n(lat_count > 0 ? lat_sum / lat_count : 0, 4)},
        {"p50", round_n(p50.value, 4)},
        {"p50_bucket", {p50.lower, std::isinf(p50.upper) ? -1 : p50.upper}},
        {"p90", round_n(p90.value, 4)},
        {"p99", round_n(p99.value, 4)},
        {"p99_bucket", {p99.lower, std::isinf(p99.upper) ? -1 : p99.upper}}}},
      {"agent_answer",
       {{"p50_ms", round_n(percentile(answer_wall, 0.5) * 1e3, 3)},
        {"p99_ms", round_n(percentile(answer_wall, 0.99) * 1e3, 3)},
        {"cpu_ms_mean",
         round_n(answer_cpu.empty()
                     ? 0
                     : agent_handler_cpu / static_cast<double>(answer_cpu.size()) * 1e3,
                 3)},
        {"evidence_bytes_p50", percentile(answer_bytes, 0.5)}}},
      {"cpu",
       {{"unit", "percent of one core over the window"},
        {"cores", cores},
        {"process_pct", round_n(100 * process_cpu / window, 1)},
        {"verifier_pct", round_n(100 * verifier_cpu / window, 1)},
        {"agents_pct", round_n(100 * agents_cpu / window, 1)},
        {"bench_main_pct", round_n(100 * main_cpu / window, 1)},
        {"external_comm", o.external_comm},
        {"external_pct", round_n(100 * external_cpu / window, 1)},
        {"machine_busy_pct", round_n(100 * machine_busy * cores, 1)},
        {"verifier_ms_per_attestation",
         round_n(attested > 0 ? verifier_cpu / attested * 1e3 : 0, 3)},
        {"agents_ms_per_attestation", round_n(attested > 0 ? agents_cpu / attested * 1e3 : 0, 3)},
        {"external_ms_per_attestation",
         round_n(attested > 0 ? external_cpu / attested * 1e3 : 0, 3)}}},
      {"memory_mb",
       {{"rss_agents_only", round_n(rss_fleet_kb / 1024.0, 1)},
        {"rss_end", round_n(rss_end_kb / 1024.0, 1)},
        {"rss_verifier_delta", round_n((rss_end_kb - rss_before_verifier_kb) / 1024.0, 1)},
        {"hwm", round_n(hwm_kb / 1024.0, 1)}}},
      {"threads", {{"agents", fleet_threads}, {"process", threads_total}}},
      {"fleet_start_s", round_n(fleet_seconds, 1)},
      {"verdicts", {{"agents", hosts}, {"containers", containers}, {"reasons", reasons}}},
  };
  if (!o.json_path.empty()) {
    must(write_file_atomic(o.json_path, as_bytes(out.dump(2) + "\n"), 0644), o.json_path);
  }

  std::printf("\nfleet_bench %s: %u agents x %u containers every %u s, %s, concurrency %u\n",
              o.label.c_str(), o.agents, o.containers, o.interval, backend.c_str(), o.concurrency);
  std::printf(
      "  attestations/s     %.1f (target %.1f; %.0f in %.1f s; unreachable %.0f, "
      "errors %.0f)\n",
      rate, target, attested, window, unreachable, errors);
  std::printf(
      "  kept up            %s (max period between challenges %.2f s, late agents %zu, "
      "store max age %lld s)\n",
      kept_up ? "yes" : "NO", max_period, late_agents, static_cast<long long>(store_max_age));
  std::printf(
      "  early challenges   %zu (sooner than interval - 1 s after the previous one; "
      "shortest period %.3f s)\n",
      early_challenges, min_period);
  std::printf(
      "  latency            p50 %s ms, p90 %s ms, p99 %s ms (bucket %s-%s ms), mean %s ms\n",
      round_to(p50.value * 1e3, 1).c_str(), round_to(p90.value * 1e3, 1).c_str(),
      round_to(p99.value * 1e3, 1).c_str(), round_to(p99.lower * 1e3, 0).c_str(),
      std::isinf(p99.upper) ? "inf" : round_to(p99.upper * 1e3, 0).c_str(),
      round_to(lat_count > 0 ? lat_sum / lat_count * 1e3 : 0, 1).c_str());
  std::printf(
      "  agent answer       p50 %.2f ms, p99 %.2f ms, %.2f ms CPU in the handler\n",
      percentile(answer_wall, 0.5) * 1e3, percentile(answer_wall, 0.99) * 1e3,
      answer_cpu.empty() ? 0 : agent_handler_cpu / static_cast<double>(answer_cpu.size()) * 1e3);
  std::printf(
      "  CPU (%% of a core)  process %.0f%% = verifier %.0f%% + agents %.0f%% + main %.0f%%;"
      " %s %.0f%%; machine %.0f%% of %u00%%\n",
      100 * process_cpu / window, 100 * verifier_cpu / window, 100 * agents_cpu / window,
      100 * main_cpu / window, o.external_comm.empty() ? "external" : o.external_comm.c_str(),
      100 * external_cpu / window, 100 * machine_busy * cores, cores);
  std::printf("  CPU per attestation verifier %.2f ms, agents %.2f ms, %s %.2f ms\n",
              attested > 0 ? verifier_cpu / attested * 1e3 : 0,
              attested > 0 ? agents_cpu / attested * 1e3 : 0,
              o.external_comm.empty() ? "external" : o.external_comm.c_str(),
              attested > 0 ? external_cpu / attested * 1e3 : 0);
  std::printf(
      "  memory             RSS %.0f MB (agents alone %.0f MB, verifier +%.0f MB), "
      "%zu threads\n",
      rss_end_kb / 1024.0, rss_fleet_kb / 1024.0, (rss_end_kb - rss_before_verifier_kb) / 1024.0,
      threads_total);
  std::printf("  verdicts           agents %s, containers %s\n", json(hosts).dump().c_str(),
              json(containers).dump().c_str());
  if (!reasons.empty()) std::printf("  reasons            %s\n", json(reasons).dump().c_str());
  std::fflush(stdout);

  store.reset();
  // Stopping 1000 servers one by one takes a while; nothing is left to write.
  if (own_dir) {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  std::_Exit(0);
}

}  // namespace

int main(int argc, char** argv) { return run(parse_args(argc, argv)); }
