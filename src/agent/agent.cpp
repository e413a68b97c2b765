#include "agent/agent.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <charconv>
#include <condition_variable>
#include <csignal>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "agent/api.h"
#include "agent/cgroup.h"
#include "agent/container_log.h"
#include "agent/control.h"
#include "agent/digest_cache.h"
#include "agent/exec_guard.h"
#include "agent/fair_queue.h"
#include "agent/mountinfo.h"
#include "agent/oci.h"
#include "agent/proc_maps.h"
#include "attest/evidence.h"
#include "events/fanotify.h"
#include "imalog/binary.h"
#ifdef CTRUST_WITH_BPF
#include "events/bpf_observer.h"
#endif
#include "image/manifest.h"
#include "policy/compiled.h"
#include "tpm/swtpm.h"
#include "tpm/tpm.h"
#include "tpm/vtpm.h"
#include "util/file.h"
#include "util/json.h"
#include "util/text.h"

namespace ctrust::agent {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr decltype(statfs::f_type) kOverlayMagic = 0x794c7630;
constexpr decltype(statfs::f_type) kTmpfsMagic = 0x01021994;

std::int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Result<void> make_dir(const std::string& path) {
  if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
    return errno_error("creating " + path, errno);
  }
  if (::chmod(path.c_str(), 0700) != 0) return errno_error("chmod 0700 " + path, errno);
  return ok_result();
}

// statx of an open descriptor: type, device, inode, mount id, mount-root flag.
struct FileId {
  std::uint32_t mode = 0;
  dev_t dev = 0;
  ino_t ino = 0;
  std::uint64_t mnt_id = 0;
  bool mount_root = false;
  struct timespec ctime {};  // what the exec gate checks the inode against
  std::uint64_t size = 0;
};
Result<FileId> file_id(int fd) {
  struct statx sx {};
  if (::statx(fd, "", AT_EMPTY_PATH,
              STATX_TYPE | STATX_INO | STATX_MNT_ID | STATX_CTIME | STATX_SIZE, &sx) != 0) {
    return errno_error("statx", errno);
  }
  FileId id;
  id.mode = sx.stx_mode;
  id.dev = makedev(sx.stx_dev_major, sx.stx_dev_minor);
  id.ino = sx.stx_ino;
  id.mnt_id = (sx.stx_mask & STATX_MNT_ID) != 0 ? sx.stx_mnt_id : 0;
  id.mount_root = (sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) != 0 &&
                  (sx.stx_attributes & STATX_ATTR_MOUNT_ROOT) != 0;
  id.ctime.tv_sec = sx.stx_ctime.tv_sec;
  id.ctime.tv_nsec = sx.stx_ctime.tv_nsec;
  id.size = sx.stx_size;
  return id;
}

// The inode number of a process's mount namespace (0 when it is gone).
ino_t mount_ns(pid_t pid) {
  struct stat st {};
  std::string path = "/proc/" + std::to_string(pid) + "/ns/mnt";
  return ::stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

// Opens `rel` beneath `root_fd` as the container would resolve it (symlinks stay inside).
Result<UniqueFd> open_in_root(int root_fd, const std::string& rel) {
  open_how how{};
  how.flags = O_PATH | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  std::string r = rel;
  while (!r.empty() && r[0] == '/') r.erase(0, 1);
  if (r.empty()) r = ".";
  long fd = ::syscall(SYS_openat2, root_fd, r.c_str(), &how, sizeof(how));
  if (fd < 0) return errno_error("opening " + rel + " in the container", errno);
  return UniqueFd(static_cast<int>(fd));
}

Result<imalog::Entry> named_digest_entry(const std::string& name, const crypto::Digest& digest,
                                         unsigned pcr) {
  imalog::MeasurementSpec spec;
  spec.pcr = pcr;
  spec.file_digest = digest;
  spec.name = name;
  return imalog::make_entry(spec, crypto::HashAlg::kSha1);
}

// An ima-buf record whose buffer is `doc` as compact JSON (the kernel's convention: the
// d-ng digest is the buffer's hash).
Result<imalog::Entry> json_entry(const std::string& name, const json& doc, unsigned pcr) {
  std::string text = doc.dump(-1, ' ', false, json::error_handler_t::replace);
  imalog::MeasurementSpec spec;
  spec.template_name = "ima-buf";
  spec.pcr = pcr;
  spec.name = name;
  spec.buf.assign(text.begin(), text.end());
  CTRUST_ASSIGN_OR_RETURN(spec.file_digest,
                          crypto::digest_bytes(crypto::HashAlg::kSha256, spec.buf));
  return imalog::make_entry(spec, crypto::HashAlg::kSha1);
}

policy::Mode stricter(policy::Mode a, policy::Mode b) { return a > b ? a : b; }

// A bundle's config.json, strictly parsed (untrusted: the container's author writes it).
Result<OciConfig> read_bundle_config(const std::string& bundle) {
  CTRUST_ASSIGN_OR_RETURN(Bytes bytes, read_file(bundle + "/config.json", kMaxOciDocument));
  auto config =
      parse_oci_config(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
  if (!config) return std::move(config).error().with_context(bundle + "/config.json");
  return config;
}

struct LoadedPolicy {
  std::string name;
  std::string path;
  crypto::Digest digest;  // SHA-256 of the file
  policy::Policy policy;
  std::optional<policy::CompiledPolicy> compiled;
  std::string signer;
};

struct Mark {
  UniqueFd fd;  // O_PATH on the marked object
  bool filesystem = false;
  std::string what;
  std::string dest;  // where the container sees it ("/" for its root)
  std::uint64_t mnt_id = 0;
  dev_t dev = 0;
  // An overlayfs mount: its upper directory (O_PATH). A writable mapping of an overlay
  // file holds the real upper file, not the overlay inode, so the digest cache leases both.
  UniqueFd upper;
  bool no_cache = false;   // overlay whose upper directory the agent cannot reach
  bool exec_only = false;  // opens are not asked about (a tmpfs: see mark_container)
  // Verdicts may be cached in the kernel (ignore marks) only for files no other container
  // can reach: an overlay or tmpfs of this container's own, whose device no other mark has.
  std::shared_ptr<std::atomic<bool>> kernel_cache = std::make_shared<std::atomic<bool>>(false);
};

// The overlay upper directory of mount `mnt_id` as process `pid` sees its mounts, or "".
std::string overlay_upper(pid_t pid, std::uint64_t mnt_id) {
  auto bytes = read_file("/proc/" + std::to_string(pid) + "/mountinfo", std::size_t{16} << 20);
  if (!bytes) return "";
  auto mounts = parse_mountinfo(
      std::string_view(reinterpret_cast<const char*>(bytes->data()), bytes->size()));
  if (!mounts) {
    spdlog::warn("/proc/{}/mountinfo: {}", pid, mounts.error().message());
    return "";
  }
  for (const auto& m : *mounts) {
    if (m.mnt_id == mnt_id) return overlay_upperdir(m);
  }
  return "";
}

struct Container {
  std::uint64_t number = 0;
  std::string id;
  std::string bundle;
  pid_t pid = 0;
  ino_t mnt_ns = 0;
  std::string rootfs;  // host path
  std::string cgroup;
  std::vector<std::string> namespaces;
  crypto::Digest image = crypto::Digest::zero(crypto::HashAlg::kSha256);
  std::shared_ptr<LoadedPolicy> policy;
  policy::Mode mode = policy::Mode::kMeasure;
  tpm::VtpmInfo vtpm;
  std::string log_path;
  std::unique_ptr<ContainerLog> log;
  std::unique_ptr<ExecGuard> guard;
  std::vector<Mark> marks;
  std::int64_t created = 0;
  // The exec gate (docs/EXEC_PATH.md): the container's cgroup v2, and whether the kernel
  // checks its execs and executable mappings against what the agent vouched for.
  ContainerCgroup cgroup_v2;
  bool gated = false;
};

struct Job {
  std::shared_ptr<Container> container;
  events::PendingEvent event;
  FileKey key;
  std::uint64_t mnt_id = 0;
  std::optional<crypto::Digest> cached;  // from the digest cache
  bool leased = false;                   // a lease was taken (begin()); finish() it
  bool writers = false;                  // the file had a writer when asked
  struct timespec ctime {};              // the inode's ctime when asked (the gate's check)
  std::uint64_t size = 0;                // the file's size when asked
};

class AgentImpl final : public Agent {
 public:
  explicit AgentImpl(AgentConfig config) : config_(std::move(config)) {}
  ~AgentImpl() override { shutdown(); }

  Result<void> init(const std::string& config_bytes);
  Result<void> serve() override;
  void stop() override {
    stopping_ = true;
    std::uint64_t one = 1;
    (void)!::write(wake_.get(), &one, sizeof(one));
  }
  json handle(const json& request) override;

 private:
  Result<void> open_host_tpm();
  Result<void> open_host_log();
  Result<void> load_policies();
  Result<std::shared_ptr<LoadedPolicy>> read_policy(const std::string& path);
  Result<void> record_agent_start(const std::string& config_bytes);
  Result<json> create(const json& request);
  Result<json> remove(const std::string& id);
  Result<json> remove_orphan(const std::string& id);
  Result<json> policy_load(const json& request);
  json ps();
  json container_json(const Container& c) const;
  Result<void> mark_container(Container& c, const OciConfig& config, bool started);
  template <typename Add>
  Result<void> mark_submounts(Container& c, const std::string& destination, bool started,
                              int root_fd, Add& add);
  // Makes the container's marks findable by events; drops kernel caching on devices that
  // another container has marks on too.
  void register_marks(const std::shared_ptr<Container>& c);
  Result<std::shared_ptr<Container>> adopt(const std::string& id, const std::string& dir);
  void unmark_container(Container& c);
  Result<void> host_record(const std::string& name, const json& doc);
  // The attestation API (agent/api.h, docs/PROTOCOL.md).
  Result<void> start_attestation_api();
  Result<attest::Identity> identity(const std::optional<Bytes>& nonce);
  Result<attest::ActivateResponse> activate(const attest::ActivateRequest& request);
  Result<attest::Evidence> answer(const attest::Challenge& challenge);
  void record_gap(const std::string& id, const std::string& path);

  void fanotify_loop();
  [[maybe_unused]] void bpf_loop();  // used only with CTRUST_WITH_BPF
#ifdef CTRUST_WITH_BPF
  void observed(const events::ObservedEvent& e);
  void gate_event(const std::shared_ptr<Container>& c, const events::ObservedEvent& e);
#endif
  // Puts the container under the exec gate (its cgroup v2); an error when it cannot be.
  Result<void> gate(Container& c);
  void ungate(Container& c);
  // A writer is about to open a file the agent vouched for (its lease broke; the writer
  // waits): the container's processes that have it mapped executable would run the new
  // bytes, so they are ended (enforce) or the log says so (elsewhere).
  void written_while_cached(const FileKey& key, const std::vector<int>& fds);
  // Vouches for the event's file in the gate; false when that failed.
  bool vouch(const Container& c, const FileKey& key, const struct timespec& ctime,
             bool pinned = false);
  json unmanaged();
  void dispatch(events::PendingEvent event);
  void queue_overflowed();
  void violation_everywhere(const std::string& name, const std::string& reason);
  void worker_loop();
  void process(Job job);
  void publish(const json& event);
  void serve_connection(UniqueFd fd);
  void shutdown();
  void schedule_teardown(const std::string& id);
  void wait_teardown(const std::string& id);
  void teardown_loop();

  AgentConfig config_;
  std::atomic<bool> stopping_{false};
  UniqueFd wake_;  // eventfd: stop()

  tpm::Swtpm host_swtpm_;  // the embedded host TPM, when configured
  std::mutex host_mutex_;  // host TPM and host log
  std::unique_ptr<ContainerLog> host_log_;
  std::unique_ptr<tpm::Tpm> host_tpm_aggregate_;  // a second connection for PCR reads
  // The attestation API's state: the host AK (persistent), the EK facts, the TLS key.
  std::optional<tpm::TpmKey> host_ak_;
  Bytes host_ek_public_;
  std::optional<Bytes> host_ek_certificate_;
  std::string tls_fingerprint_;
  std::string instance_;  // random per start: a verifier sees restarts
  std::int64_t started_ = 0;
  std::unique_ptr<net::HttpServer> api_;
  std::unique_ptr<tpm::VtpmManager> vtpms_;

  std::mutex policies_mutex_;
  std::map<std::string, std::shared_ptr<LoadedPolicy>> policies_;
  policy::TrustAnchors trust_;

  // Containers, and the maps that attribute events to them.
  std::shared_mutex containers_mutex_;
  std::map<std::string, std::shared_ptr<Container>> containers_;
  std::unordered_map<std::uint64_t, std::shared_ptr<Container>> by_mount_;
  std::unordered_map<ino_t, std::shared_ptr<Container>> by_mnt_ns_;
  std::unordered_map<std::uint64_t, std::shared_ptr<Container>> by_number_;  // the gate's
  std::multiset<dev_t> filesystem_marks_;
  std::atomic<std::uint64_t> next_number_{1};
  std::mutex create_mutex_;  // one create or delete at a time

  std::optional<events::FanotifyMonitor> monitor_;
  std::optional<DigestCache> cache_;
  std::thread fanotify_thread_;
#ifdef CTRUST_WITH_BPF
  std::unique_ptr<events::BpfObserver> bpf_;
#endif
  std::thread bpf_thread_;
  ino_t host_mnt_ns_ = 0;
  ino_t host_pid_ns_ = 0;
  std::mutex unmanaged_mutex_;
  std::set<ino_t> alerted_;  // mount namespaces already reported as unmanaged
  std::atomic<std::uint64_t> unvouched_{0};
  std::vector<std::thread> workers_;
  // Fair between containers: at most hash_threads_per_container jobs of one run at once.
  std::unique_ptr<FairQueue<Job>> jobs_;

  std::mutex subscribers_mutex_;
  std::vector<UniqueFd> subscribers_;
  std::atomic<std::uint64_t> unattributed_{0};

  std::mutex teardown_mutex_;
  std::condition_variable teardown_cv_;
  std::deque<std::string> teardowns_;  // containers whose vTPM is to be destroyed
  std::set<std::string> tearing_down_;
  std::thread teardown_thread_;

  std::mutex connections_mutex_;
  std::condition_variable connections_cv_;
  int connections_ = 0;
};

Result<void> AgentImpl::open_host_tpm() {
  std::string tcti = config_.host_tcti;
  if (tcti == "embedded") {
    std::string dir = config_.host_dir() + "/host-tpm";
    CTRUST_TRY(make_dir(dir));
    std::string socket = dir + "/tpm.sock";
    auto pid = tpm::read_pid_file(dir + "/swtpm.pid");
    if (!pid || !tpm::swtpm_alive(*pid, socket)) {
      tpm::SwtpmOptions options;
      options.state_dir = dir;
      options.socket = socket;
      options.detached = true;  // outlives an agent restart, as a hardware TPM would
      CTRUST_ASSIGN_OR_RETURN(host_swtpm_, tpm::Swtpm::start(options));
      spdlog::info("host TPM: embedded swtpm started (pid {}); no hardware root of trust",
                   host_swtpm_.pid());
    } else {
      spdlog::info("host TPM: embedded swtpm adopted (pid {})", *pid);
    }
    tcti = "swtpm:path=" + socket;
  }
  CTRUST_ASSIGN_OR_RETURN(tpm::Tpm host, tpm::Tpm::open(tcti));
  host_tpm_aggregate_ = std::make_unique<tpm::Tpm>(std::move(host));
  return ok_result();
}

Result<void> AgentImpl::open_host_log() {
  CTRUST_TRY(make_dir(config_.host_dir()));
  std::string path = config_.host_dir() + "/measurements.bin";
  std::string tcti = host_tpm_aggregate_->tcti();
  CTRUST_ASSIGN_OR_RETURN(tpm::Tpm tpm, tpm::Tpm::open(tcti));
  auto log = ContainerLog::open(path, std::move(tpm), config_.host_pcr);
  if (!log && log.error().code() == Errc::kFormat) {
    // The host PCR no longer holds this log: the host TPM was reset (a reboot, or a new
    // embedded swtpm). The old log is kept beside, and a new one starts.
    std::string old = path + "." + std::to_string(now_seconds());
    spdlog::warn("host log: {}; kept as {} and started anew", log.error().message(), old);
    if (::rename(path.c_str(), old.c_str()) != 0) return errno_error("renaming " + path, errno);
    CTRUST_ASSIGN_OR_RETURN(tpm::Tpm again, tpm::Tpm::open(tcti));
    log = ContainerLog::open(path, std::move(again), config_.host_pcr);
  }
  if (!log) return std::move(log).error().with_context("host log " + path);
  host_log_ = std::make_unique<ContainerLog>(std::move(*log));
  return ok_result();
}

Result<std::shared_ptr<LoadedPolicy>> AgentImpl::read_policy(const std::string& path) {
  CTRUST_ASSIGN_OR_RETURN(Bytes bytes, read_file(path, policy::kMaxPolicyBytes));
  std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  auto parsed = policy::parse_policy(text);
  if (!parsed) return std::move(parsed).error().with_context(path);
  // The name becomes a file name in the policy directory: no '/', no leading '.'.
  if (!tpm::valid_container_id(parsed->name)) {
    return Error(Errc::kInvalidArgument,
                 path + ": policy name " + printable(parsed->name, 64) +
                     " is not usable by the agent (1-128 of A-Z a-z 0-9 _ . -, not starting "
                     "with '.')");
  }
  auto loaded = std::make_shared<LoadedPolicy>(
      LoadedPolicy{parsed->name, path, crypto::Digest::zero(crypto::HashAlg::kSha256),
                   std::move(*parsed), std::nullopt, ""});
  CTRUST_ASSIGN_OR_RETURN(loaded->digest, crypto::digest_bytes(crypto::HashAlg::kSha256, bytes));
  if (loaded->policy.signature) {
    CTRUST_ASSIGN_OR_RETURN(policy::VerifyResult v,
                            policy::verify_policy(loaded->policy, trust_, now_seconds()));
    if (!v.ok) return Error(Errc::kInvalidArgument, path + ": " + v.reason);
    loaded->signer = v.signer;
  } else if (!config_.allow_unsigned_policies) {
    return Error(Errc::kInvalidArgument,
                 path +
                     ": the policy is not signed (sign it with `ctrust policy sign`, or set "
                     "policies.allow_unsigned for experiments)");
  } else {
    if (auto problem = policy::validity_problem(loaded->policy, now_seconds()); !problem.empty()) {
      return Error(Errc::kInvalidArgument, path + ": " + problem);
    }
  }
  auto compiled = policy::CompiledPolicy::compile(loaded->policy);
  if (!compiled) return std::move(compiled).error().with_context(path);
  loaded->compiled.emplace(std::move(*compiled));
  return loaded;
}

Result<void> AgentImpl::load_policies() {
  for (const auto& file : config_.policy_trust) {
    auto anchors = policy::load_trust_anchors(file);
    if (!anchors) return std::move(anchors).error().with_context("policies.trust");
    for (auto& k : anchors->keys) trust_.keys.push_back(std::move(k));
    for (auto& c : anchors->certificates) trust_.certificates.push_back(std::move(c));
  }
  CTRUST_TRY(make_dir(config_.policies()));
  std::error_code ec;
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(config_.policies(), ec)) {
    if (entry.path().extension() == ".json") files.push_back(entry.path().string());
  }
  if (ec) return Error(Errc::kIo, "listing " + config_.policies() + ": " + ec.message());
  std::sort(files.begin(), files.end());
  for (const auto& file : files) {
    auto loaded = read_policy(file);
    if (!loaded) {
      // One bad file must not keep the others (or the agent) from working; it is loud.
      spdlog::error("policy not loaded: {}", loaded.error().message());
      continue;
    }
    std::lock_guard lock(policies_mutex_);
    policies_[(*loaded)->name] = *loaded;
    spdlog::info("policy {} loaded from {} (signer {})", (*loaded)->name, file,
                 (*loaded)->signer.empty() ? "none" : (*loaded)->signer);
  }
  return ok_result();
}

// --- attestation API ------------------------------------------------------------------

namespace {

// Entries [offset, count) of a binary log file; a verifier holding more than the log has
// (a log that started anew) gets the whole log.
Result<attest::LogChunk> read_log_chunk(const std::string& path, std::uint64_t offset,
                                        std::uint64_t count) {
  attest::LogChunk chunk;
  chunk.count = count;
  chunk.offset = offset > count ? 0 : offset;
  if (chunk.offset == count) return chunk;
  CTRUST_ASSIGN_OR_RETURN(imalog::BinaryReader reader,
                          imalog::BinaryReader::open(path, imalog::BinaryFormat{}));
  imalog::Entry e;
  for (std::uint64_t i = 0; i < count; ++i) {
    CTRUST_ASSIGN_OR_RETURN(bool more, reader.next(e));
    if (!more) {
      return Error(Errc::kTruncated,
                   path + " holds " + std::to_string(i) + " entries, not " + std::to_string(count));
    }
    if (i < chunk.offset) continue;
    CTRUST_TRY(imalog::append_binary(chunk.entries, e));
    if (chunk.entries.size() > attest::kMaxLogChunkBytes) {
      return Error(Errc::kLimit, path + ": the entries after " + std::to_string(chunk.offset) +
                                     " exceed one message (" +
                                     std::to_string(attest::kMaxLogChunkBytes) + " bytes)");
    }
  }
  return chunk;
}

attest::QuoteEvidence quote_evidence(const tpm::Quote& q) {
  attest::QuoteEvidence out;
  out.message = q.message;
  out.signature = q.signature;
  std::size_t k = 0;
  for (const auto& bank : q.pcrs.selection) {
    for (unsigned pcr : bank.pcrs) {
      if (k >= q.pcrs.values.size()) break;
      const auto& v = q.pcrs.values[k++];
      if (bank.alg == crypto::HashAlg::kSha256) {
        out.pcrs.emplace_back(pcr, Bytes(v.view().begin(), v.view().end()));
      }
    }
  }
  return out;
}

std::string random_hex(std::size_t bytes) {
  Bytes b(bytes);
  std::ifstream urandom("/dev/urandom", std::ios::binary);
  urandom.read(reinterpret_cast<char*>(b.data()), static_cast<std::streamsize>(b.size()));
  return to_hex(b);
}

}  // namespace

Result<void> AgentImpl::start_attestation_api() {
  std::string agent_id = config_.agent_id;
  if (agent_id.empty()) {
    char name[256] = {};
    if (::gethostname(name, sizeof(name) - 1) != 0) return errno_error("gethostname", errno);
    agent_id = name;
  }
  config_.agent_id = agent_id;
  {
    std::lock_guard lock(host_mutex_);
    CTRUST_ASSIGN_OR_RETURN(tpm::TpmKey ak,
                            host_tpm_aggregate_->attestation_key(tpm::KeyAlg::kEccP256));
    host_ak_.emplace(std::move(ak));
    CTRUST_ASSIGN_OR_RETURN(tpm::TpmKey ek,
                            host_tpm_aggregate_->endorsement_key(tpm::KeyAlg::kEccP256));
    host_ek_public_ = ek.public_area().marshal_tpm2b();
    CTRUST_ASSIGN_OR_RETURN(host_ek_certificate_,
                            host_tpm_aggregate_->ek_certificate(tpm::KeyAlg::kEccP256));
  }
  CTRUST_ASSIGN_OR_RETURN(net::TlsIdentity tls,
                          load_or_make_tls_identity(config_.api_dir(), agent_id));
  CTRUST_ASSIGN_OR_RETURN(tls_fingerprint_, net::spki_fingerprint(tls.cert));
  instance_ = random_hex(8);
  started_ = now_seconds();
  AttestationSource source;
  source.identity = [this](const std::optional<Bytes>& nonce) { return identity(nonce); };
  source.activate = [this](const attest::ActivateRequest& r) { return activate(r); };
  source.answer = [this](const attest::Challenge& c) { return answer(c); };
  CTRUST_ASSIGN_OR_RETURN(api_, start_api(config_, std::move(tls), std::move(source)));
  return ok_result();
}

Result<attest::Identity> AgentImpl::identity(const std::optional<Bytes>& nonce) {
  attest::Identity id;
  id.agent_id = config_.agent_id;
  id.ek_public = host_ek_public_;
  id.ek_certificate = host_ek_certificate_;
  id.ak_public = host_ak_->public_area().marshal_tpm2b();
  id.tls_fingerprint = tls_fingerprint_;
  if (vtpms_) id.vtpm_ca_certificates = vtpms_->ca_certificates();
  if (nonce) {
    tpm::PcrSelection sel{{crypto::HashAlg::kSha256, {config_.host_pcr}}};
    std::lock_guard lock(host_mutex_);
    CTRUST_ASSIGN_OR_RETURN(
        tpm::Quote q, host_tpm_aggregate_->quote(
                          *host_ak_, sel, attest::tls_binding_data(*nonce, tls_fingerprint_)));
    id.tls_quote = quote_evidence(q);
  }
  return id;
}

Result<attest::ActivateResponse> AgentImpl::activate(const attest::ActivateRequest& request) {
  tpm::Credential credential{request.credential_blob, request.secret};
  std::lock_guard lock(host_mutex_);
  CTRUST_ASSIGN_OR_RETURN(tpm::TpmKey ek,
                          host_tpm_aggregate_->endorsement_key(tpm::KeyAlg::kEccP256));
  CTRUST_ASSIGN_OR_RETURN(Bytes secret,
                          host_tpm_aggregate_->activate_credential(*host_ak_, ek, credential));
  attest::ActivateResponse out;
  out.proof = attest::activation_proof(secret, tls_fingerprint_);
  return out;
}

Result<attest::Evidence> AgentImpl::answer(const attest::Challenge& challenge) {
  attest::Evidence ev;
  ev.agent_instance = instance_;
  ev.agent_started = started_;
  std::map<std::string, std::uint64_t> asked;
  for (const auto& c : challenge.containers) asked[c.id] = c.log_offset;
  std::vector<std::shared_ptr<Container>> running;
  {
    std::shared_lock lock(containers_mutex_);
    for (const auto& [id, c] : containers_) {
      if (challenge.all || asked.contains(id)) running.push_back(c);
    }
  }
  std::set<std::string> answered;
  for (const auto& c : running) {
    std::uint64_t offset = asked.contains(c->id) ? asked[c->id] : 0;
    auto quoted =
        c->guard->with_log([&](ContainerLog* guarded) -> Result<attest::ContainerEvidence> {
          ContainerLog* log = guarded != nullptr ? guarded : c->log.get();
          if (log == nullptr) return Error(Errc::kNotFound, c->id + " has no log");
          attest::ContainerEvidence ce;
          ce.id = c->id;
          ce.state = "running";
          CTRUST_ASSIGN_OR_RETURN(ce.log, read_log_chunk(c->log_path, offset, log->entries()));
          CTRUST_ASSIGN_OR_RETURN(tpm::TpmKey ak,
                                  log->vtpm().attestation_key(tpm::KeyAlg::kEccP256));
          ce.ak_public = ak.public_area().marshal_tpm2b();
          tpm::PcrSelection sel{{crypto::HashAlg::kSha256, {10}}};
          CTRUST_ASSIGN_OR_RETURN(tpm::Quote q,
                                  log->vtpm().quote(ak, sel,
                                                    attest::container_qualifying_data(
                                                        challenge.nonce, c->id, log->entries())));
          ce.quote = quote_evidence(q);
          return ce;
        });
    if (!quoted) {
      // One container's vTPM failing must not hide the others: the verifier sees it missing.
      spdlog::warn("{}: no evidence: {}", c->id, quoted.error().message());
      continue;
    }
    answered.insert(c->id);
    ev.containers.push_back(std::move(*quoted));
  }
  // Asked about, not running: a stopped container's final log, or unknown.
  for (const auto& [id, offset] : asked) {
    if (answered.contains(id)) continue;
    if (!tpm::valid_container_id(id)) {
      ev.unknown.push_back(id);
      continue;
    }
    std::string dir = config_.containers_dir() + "/" + id;
    auto status = read_file(dir + "/status", 64);
    // A container being removed leaves the map before its status says so: wait for it
    // rather than call it unknown (which a verifier must treat as withheld).
    for (int i = 0; i < 20 && status && std::string(status->begin(), status->end()) == "running";
         ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      status = read_file(dir + "/status", 64);
    }
    if (!status || std::string(status->begin(), status->end()) == "running" ||
        std::any_of(running.begin(), running.end(),
                    [&wanted = id](const auto& c) { return c->id == wanted; })) {
      ev.unknown.push_back(id);
      continue;
    }
    std::uint64_t count = 0;
    {
      auto reader = imalog::BinaryReader::open(dir + "/measurements.bin", imalog::BinaryFormat{});
      if (!reader) {
        ev.unknown.push_back(id);
        continue;
      }
      imalog::Entry e;
      while (true) {
        auto more = reader->next(e);
        if (!more || !*more) break;
        ++count;
      }
    }
    auto chunk = read_log_chunk(dir + "/measurements.bin", offset, count);
    if (!chunk) {
      ev.unknown.push_back(id);
      continue;
    }
    attest::ContainerEvidence ce;
    ce.id = id;
    ce.state = "stopped";
    ce.log = std::move(*chunk);
    ev.containers.push_back(std::move(ce));
  }
  // The host last: its quote vouches for the container quotes and the host log's length.
  tpm::PcrSelection sel{
      {crypto::HashAlg::kSha256, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, config_.host_pcr}}};
  std::lock_guard lock(host_mutex_);
  std::uint64_t count = host_log_->entries();
  CTRUST_ASSIGN_OR_RETURN(ev.host_log, read_log_chunk(config_.host_dir() + "/measurements.bin",
                                                      challenge.host_log_offset, count));
  CTRUST_ASSIGN_OR_RETURN(
      tpm::Quote q,
      host_tpm_aggregate_->quote(
          *host_ak_, sel, attest::host_qualifying_data(challenge.nonce, count, ev.containers)));
  ev.host_quote = quote_evidence(q);
  return ev;
}

Result<void> AgentImpl::host_record(const std::string& name, const json& doc) {
  CTRUST_ASSIGN_OR_RETURN(imalog::Entry e, json_entry(name, doc, config_.host_pcr));
  std::lock_guard lock(host_mutex_);
  return host_log_->append(e);
}

Result<void> AgentImpl::record_agent_start(const std::string& config_bytes) {
  std::vector<imalog::Entry> entries;
  CTRUST_ASSIGN_OR_RETURN(crypto::Digest self,
                          crypto::digest_file(crypto::HashAlg::kSha256, "/proc/self/exe"));
  CTRUST_ASSIGN_OR_RETURN(imalog::Entry binary,
                          named_digest_entry("ctrustd", self, config_.host_pcr));
  entries.push_back(std::move(binary));
  CTRUST_ASSIGN_OR_RETURN(crypto::Digest conf,
                          crypto::digest_bytes(crypto::HashAlg::kSha256, as_bytes(config_bytes)));
  CTRUST_ASSIGN_OR_RETURN(imalog::Entry config,
                          named_digest_entry("ctrustd-config", conf, config_.host_pcr));
  entries.push_back(std::move(config));
  json policies = json::array();
  {
    std::lock_guard lock(policies_mutex_);
    for (const auto& [name, p] : policies_) {
      CTRUST_ASSIGN_OR_RETURN(imalog::Entry e, named_digest_entry("ctrust-policy:" + name,
                                                                  p->digest, config_.host_pcr));
      entries.push_back(std::move(e));
      policies.push_back({{"name", name}, {"digest", "sha256:" + p->digest.hex()}});
    }
  }
  json bpf = json::array();
#ifdef CTRUST_WITH_BPF
  if (bpf_) {
    for (const auto& [name, digest] : bpf_->object_digests()) {
      CTRUST_ASSIGN_OR_RETURN(
          crypto::Digest d,
          crypto::Digest::from_hex(crypto::HashAlg::kSha256, std::string_view(digest).substr(7)));
      CTRUST_ASSIGN_OR_RETURN(imalog::Entry e,
                              named_digest_entry("ctrust-bpf:" + name, d, config_.host_pcr));
      entries.push_back(std::move(e));
      bpf.push_back({{"name", name}, {"digest", digest}});
    }
  }
#endif
  json doc = {{"event", "agent-start"},
              {"time", now_seconds()},
              {"binary", "sha256:" + self.hex()},
              {"config", "sha256:" + conf.hex()},
              {"policies", policies},
              {"bpf", bpf}};
  CTRUST_ASSIGN_OR_RETURN(imalog::Entry start,
                          json_entry("ctrust:agent-start", doc, config_.host_pcr));
  entries.push_back(std::move(start));
  std::lock_guard lock(host_mutex_);
  return host_log_->append(entries);
}

Result<void> AgentImpl::init(const std::string& config_bytes) {
  spdlog::info("ctrustd starting: state {}, socket {}", config_.state_dir, config_.socket);
  CTRUST_TRY(make_dir(config_.state_dir));
  CTRUST_TRY(make_dir(config_.containers_dir()));
  CTRUST_TRY(make_dir(config_.host_dir()));
  wake_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake_) return errno_error("eventfd", errno);

  CTRUST_ASSIGN_OR_RETURN(DigestCache cache, DigestCache::create(config_.cache_entries));
  cache_.emplace(std::move(cache));
  events::MonitorOptions options;
  options.exec = true;
  options.open = true;  // shared objects and scripts
  options.on_error = events::Verdict::kDeny;
  CTRUST_ASSIGN_OR_RETURN(events::FanotifyMonitor monitor,
                          events::FanotifyMonitor::create(options));
  monitor_.emplace(std::move(monitor));
  cache_->set_kernel_hooks({[this](int fd) {
                              auto r = monitor_->ignore(fd);
                              if (!r) spdlog::debug("{}", r.error().message());
                              return r.ok();
                            },
                            [this](int fd) {
                              if (auto r = monitor_->unignore(fd); !r) {
                                // The kernel would keep skipping a file that may now change: say it
                                // loudly.
                                spdlog::error("{}", r.error().message());
                              }
                            }});
  cache_->set_break_hook(
      [this](const FileKey& key, const std::vector<int>& fds) { written_while_cached(key, fds); });
#ifdef CTRUST_WITH_BPF
  cache_->set_erase_hook([this](const FileKey& key) {
    if (!bpf_) return;
    if (auto r = bpf_->gate_unpin(key.owner, key.dev, key.ino); !r) {
      spdlog::error("{}", r.error().message());
    }
  });
#endif
  unsigned per_container = config_.hash_threads_per_container != 0
                               ? config_.hash_threads_per_container
                               : std::max(1U, config_.hash_threads - 1);
  jobs_ = std::make_unique<FairQueue<Job>>(per_container);
  // The event thread first: everything after this may touch marked files.
  fanotify_thread_ = std::thread([this] { fanotify_loop(); });
  for (unsigned i = 0; i < config_.hash_threads; ++i) {
    workers_.emplace_back([this] { worker_loop(); });
  }
  teardown_thread_ = std::thread([this] { teardown_loop(); });

  CTRUST_TRY(open_host_tpm());
  CTRUST_TRY(open_host_log());
  tpm::VtpmConfig vc;
  vc.root = config_.vtpm_root();
  vc.max = config_.vtpm_max;
  vc.pool_size = config_.vtpm_pool;
  vc.archive_on_destroy = config_.vtpm_archive;
  CTRUST_ASSIGN_OR_RETURN(vtpms_, tpm::VtpmManager::open(vc));
  CTRUST_TRY(load_policies());
  {
    struct stat st {};
    if (::stat("/proc/self/ns/mnt", &st) == 0) host_mnt_ns_ = st.st_ino;
    if (::stat("/proc/self/ns/pid", &st) == 0) host_pid_ns_ = st.st_ino;
  }
#ifdef CTRUST_WITH_BPF
  if (config_.bpf) {
    auto observer = events::BpfObserver::open({});
    if (!observer) {
      return std::move(observer).error().with_context(
          "the BPF observers (set enforcement.bpf = false to run without them)");
    }
    bpf_ = std::move(*observer);
    bpf_thread_ = std::thread([this] { bpf_loop(); });
  }
#else
  if (config_.bpf) {
    return Error(Errc::kUnsupported,
                 "this ctrustd was built without BPF (CTRUST_WITH_BPF); set "
                 "enforcement.bpf = false");
  }
#endif
  CTRUST_TRY(record_agent_start(config_bytes));
  // Containers that were registered before a restart: their logs are closed and the gap
  // is on record; their marks died with the old fanotify group.
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(config_.containers_dir(), ec)) {
    std::string id = entry.path().filename().string();
    std::string status = entry.path().string() + "/status";
    auto bytes = read_file(status, 64);
    if (bytes && std::string(bytes->begin(), bytes->end()) == "running") {
      auto adopted = adopt(id, entry.path().string());
      (void)host_record("ctrust:agent-gap",
                        {{"event", "agent-gap"}, {"container", id}, {"adopted", adopted.ok()}});
      if (adopted) {
        spdlog::warn(
            "container {} was running while no agent watched it (the gap is in its "
            "log); watched again from now on",
            id);
        (void)write_file_atomic(entry.path().string() + "/container.json",
                                as_bytes(container_json(**adopted).dump(2) + "\n"), 0600);
        continue;
      }
      spdlog::warn(
          "container {} was registered when the agent stopped and cannot be watched again "
          "({}); its measurements from then on are not vouched for",
          id, adopted.error().message());
      record_gap(id, entry.path().string() + "/measurements.bin");
      (void)write_file_atomic(status, as_bytes(std::string("orphaned")), 0600);
    }
  }
  if (!config_.api_listen.empty()) CTRUST_TRY(start_attestation_api());
  spdlog::info("ctrustd ready");
  return ok_result();
}

// The container's own log says that it ran unwatched from some point on: a violation
// record, extended into its vTPM. Opening the log also extends what a crash left unextended.
void AgentImpl::record_gap(const std::string& id, const std::string& path) {
  auto info = vtpms_->get(id);
  if (!info || info->status != tpm::VtpmStatus::kRunning) {
    spdlog::warn("{}: its vTPM is gone ({}): the log cannot be extended", id,
                 info ? std::string(tpm::vtpm_status_name(info->status)) : info.error().message());
    return;
  }
  auto done = [&]() -> Result<std::uint64_t> {
    CTRUST_ASSIGN_OR_RETURN(tpm::Tpm vtpm, tpm::Tpm::open(info->tcti));
    CTRUST_ASSIGN_OR_RETURN(ContainerLog log, ContainerLog::open(path, std::move(vtpm)));
    CTRUST_ASSIGN_OR_RETURN(
        imalog::Entry v, imalog::make_violation("ima-ng", 10, "ctrust:agent-gap",
                                                crypto::HashAlg::kSha256, crypto::HashAlg::kSha1));
    CTRUST_TRY(log.append(v));
    return log.reconciliation().extended_on_open;
  }();
  if (!done) {
    spdlog::error("{}: recording the agent gap: {}", id, done.error().message());
  } else if (*done > 0) {
    spdlog::warn("{}: {} logged entries were extended into the vTPM only now", id, *done);
  }
}

// --- events -------------------------------------------------------------------------------

void AgentImpl::fanotify_loop() {
  std::uint64_t overflows_seen = 0;
  pollfd fds[3] = {{monitor_->fd(), POLLIN, 0}, {cache_->signal_fd(), POLLIN, 0}, {-1, 0, 0}};
  while (!stopping_) {
    fds[2] = {wake_.get(), POLLIN, 0};
    int ready = ::poll(fds, 3, 500);
    if (ready <= 0) continue;
    if ((fds[1].revents & POLLIN) != 0) cache_->drain();
    if ((fds[0].revents & POLLIN) != 0) {
      auto n =
          monitor_->poll_dispatch([this](events::PendingEvent e) { dispatch(std::move(e)); }, 0);
      if (!n) spdlog::error("fanotify: {}", n.error().message());
      if (monitor_->overflows() != overflows_seen) {
        overflows_seen = monitor_->overflows();
        queue_overflowed();
      }
    }
  }
}

// The kernel lost fanotify events: whatever they asked about ran unasked, in any container.
// Every running container's log says so (the exec gate still killed, in enforce, whatever
// of it was an exec or executable mapping of a file nobody vouched for).
void AgentImpl::queue_overflowed() {
  spdlog::error("fanotify: the event queue overflowed; a violation is recorded in every container");
  violation_everywhere("ctrust:fanotify-overflow",
                       "the fanotify queue overflowed: opens and execs went unasked");
}

// A violation record named `name` in every running container's log (mode off aside), and
// an event for each: something may have run in any of them without being judged.
void AgentImpl::violation_everywhere(const std::string& name, const std::string& reason) {
  std::vector<std::shared_ptr<Container>> all;
  {
    std::shared_lock lock(containers_mutex_);
    for (const auto& [id, c] : containers_) all.push_back(c);
  }
  for (const auto& c : all) {
    if (c->mode == policy::Mode::kOff) continue;
    if (auto r = c->guard->record_violation(name); !r) {
      spdlog::error("{}: logging a violation: {}", c->id, r.error().message());
    }
    publish({{"time", now_seconds()},
             {"container", c->id},
             {"kind", "violation"},
             {"mode", policy::mode_name(c->mode)},
             {"path", name},
             {"reason", reason}});
  }
}

// Runs on the fanotify thread: only attribution and cheap answers; everything that may
// block (hashing, the log, the vTPM) goes to the workers.
void AgentImpl::dispatch(events::PendingEvent event) {
  const auto& e = event.event();
  if (e.pid == ::getpid()) {
    (void)event.answer(events::Verdict::kAllow);  // our own reads: never wait on ourselves
    return;
  }
  auto id = file_id(e.fd);
  if (!id) return;  // destroyed unanswered: the fail verdict (deny)
  std::shared_ptr<Container> container;
  {
    std::shared_lock lock(containers_mutex_);
    if (auto it = by_mount_.find(id->mnt_id); it != by_mount_.end()) {
      container = it->second;
    } else if (filesystem_marks_.contains(id->dev)) {
      ino_t ns = mount_ns(e.pid);
      if (auto n = by_mnt_ns_.find(ns); n != by_mnt_ns_.end()) container = n->second;
    }
  }
  if (!container) {
    // Not a container's file (a filesystem mark also sees the host's accesses).
    ++unattributed_;
    (void)event.answer(events::Verdict::kAllow);
    return;
  }
  if (!S_ISREG(id->mode) || container->mode == policy::Mode::kOff) {
    (void)event.answer(events::Verdict::kAllow);
    return;
  }
  if (!e.exec) {
    // An open: only ELF objects (shared libraries, ld.so's input) and scripts matter.
    std::uint8_t head[4] = {};
    auto n = pread_full(e.fd, head, 0);
    if (!n) return;  // deny: unreadable
    if (image::content_kind(ByteView(head, *n)) == image::ContentKind::kData) {
      (void)event.answer(events::Verdict::kAllow);
      // Asked once per inode: the gate, not this question, stops a data file rewritten
      // into code (docs/EXEC_PATH.md, "Cost").
      if (container->gated) {
        if (auto r = monitor_->ignore_data_opens(e.fd); !r)
          spdlog::debug("{}", r.error().message());
      }
      return;
    }
  }
  // The device of the superblock: the mark's mount root reports it (a regular file on
  // overlayfs may report a lower layer's), and the exec gate keys files by it.
  dev_t dev = id->dev;
  for (const auto& m : container->marks) {
    if (m.mnt_id == id->mnt_id) dev = m.dev;
  }
  Job job{std::move(container),
          std::move(event),
          FileKey{0, dev, id->ino},
          id->mnt_id,
          std::nullopt,
          false,
          false,
          id->ctime,
          id->size};
  job.key.owner = job.container->number;
  const auto& je = job.event.event();  // `e` was moved into the job
  // The cache is asked here and the event file's lease taken here, before the job waits
  // in the queue: the sooner the lease, the fewer writers can slip in before the hash.
  if (auto cached = cache_->find(job.key)) {
    job.cached = *cached;
  } else if (!je.exec && cache_->recently_broken(job.key)) {
    // A writer is at this file (its open may be this one): judged, not leased or cached.
  } else {
    auto lease = cache_->begin(je.fd);
    if (lease) {
      job.leased = *lease == DigestCache::Lease::kHeld;
      job.writers = *lease == DigestCache::Lease::kWriters;
    } else {
      spdlog::debug("no lease on {}: {}", je.path, lease.error().message());
    }
  }
  std::uint64_t owner = job.container->number;
  jobs_->push(owner, std::move(job));
}

void AgentImpl::worker_loop() {
  while (auto job = jobs_->pop()) {
    process(std::move(job->second));
    jobs_->done(job->first);
  }
}

void AgentImpl::process(Job job) {
  Container& c = *job.container;
  const auto& e = job.event.event();
  Result<Measured> measured = Error(Errc::kInternal, "not measured");
  bool leased = job.leased;
  std::vector<UniqueFd> upper;  // the real upper file of an overlay file, leased too
  const Mark* mark = nullptr;   // the mark the event came through
  for (const auto& m : c.marks) {
    if (m.mnt_id == job.mnt_id) mark = &m;
  }
  if (mark != nullptr && mark->no_cache) leased = false;
  // Only when the entry may be cached: a lease taken for nothing would hold back a writer
  // (its retried open(O_NONBLOCK) meets it) while the file is hashed.
  if (!job.cached && job.leased && mark != nullptr && mark->upper) {
    std::string rel = c.guard->container_path(e.path);
    bool inside = mark->dest == "/" || rel.compare(0, mark->dest.size(), mark->dest) == 0;
    if (inside && mark->dest != "/") rel = rel.substr(mark->dest.size());
    auto real = inside ? open_beneath(mark->upper.get(),
                                      rel.empty() ? "." : rel.substr(rel[0] == '/' ? 1 : 0),
                                      O_RDONLY | O_NONBLOCK | O_NOCTTY | O_NOFOLLOW)
                       : Result<UniqueFd>(Error(Errc::kNotFound, "outside the mount"));
    // No upper file: not copied up, and a lower file cannot be written in place.
    if (real) {
      auto lease = cache_->begin(real->get());
      if (lease && *lease == DigestCache::Lease::kWriters) job.writers = true;
      if (lease && *lease == DigestCache::Lease::kHeld) upper.push_back(std::move(*real));
      if (!lease) leased = false;
    }
  }
  if (job.cached) {
    measured = Measured{*job.cached, false};
  } else if (job.size > config_.max_file_bytes) {
    measured =
        Error(Errc::kInvalidArgument, "file of " + std::to_string(job.size) +
                                          " bytes is larger than enforcement.max_file_bytes (" +
                                          std::to_string(config_.max_file_bytes) + "): not hashed");
  } else {
    auto digest = crypto::digest_fd(crypto::HashAlg::kSha256, e.fd);
    if (digest) {
      // Only an exec of a file someone could be writing is beyond vouching; an open may
      // be the writer itself.
      measured = Measured{*digest, job.writers && e.exec};
    } else {
      measured = std::move(digest).error();
    }
  }
  ExecDecision d = c.guard->judge(e.path, measured);
  // The gate learns what may run before the kernel is told: the exec or mapping that
  // follows this answer is checked against it. A file the gate cannot be told about is not
  // allowed in enforce (the gate would kill it anyway, after its open).
  if (d.verdict == events::Verdict::kAllow && c.gated && !vouch(c, job.key, job.ctime) &&
      c.mode == policy::Mode::kEnforce) {
    d.verdict = events::Verdict::kDeny;
    d.error = "the exec gate could not record the verdict";
  }
  if (auto r = job.event.answer(d.verdict); !r) spdlog::error("{}", r.error().message());
  if (job.leased) {
    if (leased && measured) {
      std::vector<UniqueFd> fds;
      fds.push_back(job.event.take_fd());
      for (auto& u : upper) fds.push_back(std::move(u));
      // The kernel may answer for us next time if the answer cannot change: allowed, not
      // a violation, on a mount only this container has, and (in enforce) for any path.
      bool kernel = false;
      if (d.verdict == events::Verdict::kAllow && !d.violation && d.error.empty()) {
        kernel = mark != nullptr && mark->kernel_cache->load();
        if (kernel && c.mode == policy::Mode::kEnforce && c.policy) {
          kernel = c.policy->compiled->paths_for(measured->digest).empty();
        }
      }
      // Cached under a lease: the content cannot change unseen, so the gate's verdict need
      // not follow the ctime (a chmod or an overlay copy-up) until the lease goes.
      if (cache_->finish(job.key, std::move(fds), measured->digest, kernel) && c.gated &&
          d.verdict == events::Verdict::kAllow) {
        (void)vouch(c, job.key, job.ctime, true);
      }
    } else {
      cache_->abandon(e.fd);
    }
  }
  for (const auto& u : upper) {
    if (u) cache_->abandon(u.get());
  }
  bool denied = d.verdict == events::Verdict::kDeny;
  if (denied || d.violation || !d.error.empty()) {
    json ev = {{"time", now_seconds()},
               {"container", c.id},
               {"kind", denied ? "denied" : (d.violation ? "violation" : "error")},
               {"exec", e.exec},
               {"path", d.path},
               {"mode", policy::mode_name(c.mode)},
               {"judged", policy::verdict_name(d.judged)},
               {"pid", e.pid}};
    if (!d.digest.is_zero()) ev["digest"] = "sha256:" + d.digest.hex();
    if (!d.error.empty()) ev["reason"] = d.error;
    if (denied) {
      spdlog::warn("{}: denied {} ({}{})", c.id, printable(d.path, 256),
                   policy::verdict_name(d.judged), d.error.empty() ? "" : ": " + d.error);
    } else {
      spdlog::warn("{}: {} {}", c.id, d.violation ? "violation at" : "error at", d.error);
    }
    publish(ev);
  }
}

void AgentImpl::publish(const json& event) {
  std::string line = event.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  std::lock_guard lock(subscribers_mutex_);
  for (auto it = subscribers_.begin(); it != subscribers_.end();) {
    // Non-blocking: a subscriber that does not keep up is dropped, never waited for.
    ssize_t n = ::send(it->get(), line.data(), line.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n != static_cast<ssize_t>(line.size())) {
      it = subscribers_.erase(it);
    } else {
      ++it;
    }
  }
}

// --- the BPF observers --------------------------------------------------------------------

void AgentImpl::bpf_loop() {
#ifdef CTRUST_WITH_BPF
  std::uint64_t reported_lost = 0;
  while (!stopping_) {
    auto n = bpf_->poll(500, [this](const events::ObservedEvent& e) { observed(e); });
    if (!n) spdlog::error("BPF observers: {}", n.error().message());
    std::uint64_t lost = bpf_->lost();
    if (lost != reported_lost) {
      // Records the kernel could not queue: execs and gate reports we cannot account for. In
      // enforce the gate killed what it reported regardless; in every mode the logs say that
      // something may have run unmeasured.
      spdlog::error("BPF observers: {} records lost (ring buffer full)", lost - reported_lost);
      publish({{"time", now_seconds()}, {"kind", "lost"}, {"records", lost - reported_lost}});
      reported_lost = lost;
      violation_everywhere("ctrust:bpf-records-lost",
                           "BPF records were lost: an exec or a gate report may be missing");
    }
  }
#endif
}

#ifdef CTRUST_WITH_BPF
namespace {

// The file behind an exec or executable mapping the gate reported, opened again through
// the process (its executable, or the mapping with that inode), with the path it has there.
struct RunningFile {
  UniqueFd fd;
  std::string path;
};

Result<RunningFile> open_running(const events::ObservedEvent& e) {
  std::string proc = "/proc/" + std::to_string(e.pid);
  RunningFile f;
  std::string link;
  if (e.kind == events::ObservedKind::kExec) {
    link = proc + "/exe";
  } else {
    // The mapping of that file (device and inode), through map_files.
    CTRUST_ASSIGN_OR_RETURN(std::vector<Mapping> maps, read_maps(e.pid));
    for (const auto& m : maps) {
      if (m.ino == e.ino && m.major == ::major(e.dev) && m.minor == ::minor(e.dev)) {
        link = proc + "/map_files/" + m.range;
        break;
      }
    }
    if (link.empty()) return Error(Errc::kNotFound, "the mapping is gone");
  }
  f.path = read_link(link);
  f.fd.reset(::open(link.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!f.fd) return errno_error("opening " + link, errno);
  struct stat st {};
  if (::fstat(f.fd.get(), &st) != 0) return errno_error("fstat " + link, errno);
  if (st.st_ino != e.ino) return Error(Errc::kNotFound, "the process runs another file now");
  return f;
}

const char* map_call(events::MapSyscall s) {
  switch (s) {
    case events::MapSyscall::kMmap:
      return "mmap(PROT_EXEC)";
    case events::MapSyscall::kMprotect:
      return "mprotect(PROT_EXEC)";
    case events::MapSyscall::kShmat:
      return "shmat(SHM_EXEC)";
  }
  return "?";
}

}  // namespace

// The gate saw a container's task run, or map executable, a file the agent never vouched
// for (it came through no marked mount, or changed since). In enforce the kernel has killed
// the task already; elsewhere the file ran, and is measured now if it can still be found.
void AgentImpl::gate_event(const std::shared_ptr<Container>& c, const events::ObservedEvent& e) {
  if (c->mode == policy::Mode::kOff) return;
  ++unvouched_;
  const bool exec = e.kind == events::ObservedKind::kExec;
  std::string how = exec ? std::string("exec") : std::string(map_call(e.map_syscall));
  std::string name = exec ? e.filename : e.name;
  if (e.memfd_name || e.unlinked) how += " of a file on no filesystem (memfd or deleted)";
  if (e.unresolved) how += " of memory the gate could not trace to a file";
  if (name.empty()) name = "(unnamed)";
  auto violation = [&](const std::string& reason, const std::string& kind) {
    if (auto r = c->guard->record_violation(name); !r) {
      spdlog::error("{}: logging a violation: {}", c->id, r.error().message());
    }
    spdlog::warn("{}: pid {}: {} {}: {}", c->id, e.pid, how, printable(name, 256), reason);
    publish({{"time", now_seconds()},
             {"container", c->id},
             {"kind", kind},
             {"exec", exec},
             {"path", name},
             {"mode", policy::mode_name(c->mode)},
             {"pid", e.pid},
             {"reason", how + ": " + reason}});
  };
  if (e.killed) {
    violation("not vouched for; killed by the exec gate before it ran", "denied");
    return;
  }
  auto file = open_running(e);
  if (!file) {
    violation(
        "not vouched for, and gone before it could be measured (" + file.error().message() + ")",
        "violation");
    return;
  }
  if (!file->path.empty()) name = file->path;
  auto digest = crypto::digest_fd(crypto::HashAlg::kSha256, file->fd.get());
  if (!digest) {
    violation("not vouched for, and unreadable: " + digest.error().message(), "violation");
    return;
  }
  ExecDecision d = c->guard->judge(name, Measured{*digest, false});
  // Keyed as the kernel reported it (e.dev is the superblock's device).
  auto id = file_id(file->fd.get());
  if (id) (void)vouch(*c, FileKey{c->number, e.dev, id->ino}, id->ctime);
  spdlog::warn(
      "{}: pid {}: {} {} was seen only by the exec gate; measured from the process "
      "({})",
      c->id, e.pid, how, printable(name, 256), policy::verdict_name(d.judged));
  publish({{"time", now_seconds()},
           {"container", c->id},
           {"kind", "unvouched"},
           {"exec", exec},
           {"path", name},
           {"mode", policy::mode_name(c->mode)},
           {"judged", policy::verdict_name(d.judged)},
           {"digest", "sha256:" + digest->hex()},
           {"pid", e.pid},
           {"reason", how + " seen only by the exec gate; measured from the running process"}});
}

// An exec that succeeded, or the gate's report. In a gated container the gate has checked
// it against what fanotify vouched for; otherwise fanotify asked about it if the file came
// through one of the container's marked mounts (or a marked filesystem).
void AgentImpl::observed(const events::ObservedEvent& e) {
  if (e.kind == events::ObservedKind::kNamespace || e.pid == ::getpid()) return;
  if (e.container != 0) {
    std::shared_ptr<Container> gc;
    {
      std::shared_lock lock(containers_mutex_);
      if (auto it = by_number_.find(e.container); it != by_number_.end()) gc = it->second;
    }
    if (gc && e.unvouched) gate_event(gc, e);
    return;
  }
  if (e.kind != events::ObservedKind::kExec) return;
  std::shared_ptr<Container> c;
  bool seen = false;
  {
    std::shared_lock lock(containers_mutex_);
    auto it = by_mnt_ns_.find(static_cast<ino_t>(e.mnt_ns));
    if (it != by_mnt_ns_.end()) {
      c = it->second;
      // A gated container's tasks are judged above; this one is in its mount namespace but
      // not its cgroup (a host process entering it, such as the runtime's own helpers).
      if (c->gated) return;
      auto m = by_mount_.find(e.mnt_id);
      seen = !e.fileless() &&
             ((m != by_mount_.end() && m->second == c) || filesystem_marks_.contains(e.dev));
    }
  }
  if (!c) {
    // An exec in a pid and mount namespace of their own that no container of ours has: a
    // container started without the hook (or while the agent was down). Said once.
    if (e.mnt_ns == host_mnt_ns_) return;
    std::string pidns = "/proc/" + std::to_string(e.pid) + "/ns/pid";
    struct stat st {};
    if (::stat(pidns.c_str(), &st) != 0 || st.st_ino == host_pid_ns_) return;
    {
      std::lock_guard lock(unmanaged_mutex_);
      if (alerted_.size() > 4096) alerted_.clear();
      if (!alerted_.insert(static_cast<ino_t>(e.mnt_ns)).second) return;
    }
    spdlog::warn("unmanaged container: pid {} ran {} in mount namespace {} without the hook", e.pid,
                 printable(e.filename, 256), e.mnt_ns);
    publish({{"time", now_seconds()},
             {"kind", "unmanaged"},
             {"pid", e.pid},
             {"mnt_ns", e.mnt_ns},
             {"path", e.filename}});
    return;
  }
  if (seen || c->mode == policy::Mode::kOff) return;
  ++unvouched_;
  bool end_it = c->mode == policy::Mode::kEnforce && config_.kill_unvouched;
  std::string what = e.fileless() ? "a file on no filesystem (memfd or deleted)"
                                  : "a file on a mount the agent does not watch";
  // The kernel already ran it: the log must say so, and enforce ends the process.
  if (end_it) {
    // Through a pidfd, checked to still be in the container's mount namespace after it was
    // opened, so that a recycled pid never gets the signal.
    UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, e.pid, 0)));
    if (pidfd && mount_ns(e.pid) == c->mnt_ns) {
      (void)::syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0);
    }
  }
  std::string name = e.filename.empty() ? "(unnamed)" : e.filename;
  if (auto r = c->guard->record_violation(name); !r) {
    spdlog::error("{}: logging a violation: {}", c->id, r.error().message());
  }
  spdlog::warn("{}: pid {} ran {} ({}), unseen by the enforcement path{}", c->id, e.pid,
               printable(name, 256), what, end_it ? ": killed" : "");
  publish({{"time", now_seconds()},
           {"container", c->id},
           {"kind", "violation"},
           {"exec", true},
           {"path", name},
           {"mode", policy::mode_name(c->mode)},
           {"pid", e.pid},
           {"reason", "exec of " + what + (end_it ? "; the process was killed" : "")}});
}
#endif

// Processes in a pid and mount namespace of their own whose mount namespace is not a
// registered container's: containers started without the hook or while the agent was down.
json AgentImpl::unmanaged() {
  std::map<ino_t, json> found;
  std::set<ino_t> known;
  {
    std::shared_lock lock(containers_mutex_);
    for (const auto& [ns, c] : by_mnt_ns_) known.insert(ns);
  }
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    struct stat mnt {};
    struct stat pid {};
    if (::stat((entry.path() / "ns/mnt").c_str(), &mnt) != 0) continue;
    if (::stat((entry.path() / "ns/pid").c_str(), &pid) != 0) continue;
    if (mnt.st_ino == host_mnt_ns_ || pid.st_ino == host_pid_ns_ || known.contains(mnt.st_ino)) {
      continue;
    }
    int p = std::stoi(name);
    auto it = found.find(mnt.st_ino);
    if (it != found.end()) {
      it->second["processes"] = it->second["processes"].get<int>() + 1;
      if (p < it->second["pid"].get<int>()) it->second["pid"] = p;
      continue;
    }
    std::string comm;
    if (auto bytes = read_file(entry.path().string() + "/comm", 64); bytes) {
      comm.assign(bytes->begin(), bytes->end());
      while (!comm.empty() && comm.back() == '\n') comm.pop_back();
    }
    found[mnt.st_ino] = {{"id", "mntns:" + std::to_string(mnt.st_ino)},
                         {"pid", p},
                         {"mnt_ns", mnt.st_ino},
                         {"comm", printable(comm)},
                         {"processes", 1}};
  }
  json list = json::array();
  for (auto& [ns, j] : found) list.push_back(std::move(j));
  return list;
}

// --- the exec gate ------------------------------------------------------------------------

namespace {

// Every process in cgroup `dir` and below it.
void cgroup_pids(const std::string& dir, std::vector<pid_t>& out, int depth = 0) {
  if (depth > 16) return;
  if (auto bytes = read_file(dir + "/cgroup.procs", std::size_t{16} << 20)) {
    std::string_view text(reinterpret_cast<const char*>(bytes->data()), bytes->size());
    while (!text.empty()) {
      std::string_view line = next_line(text);
      pid_t pid = 0;
      auto [p, ec] = std::from_chars(line.data(), line.data() + line.size(), pid);
      if (ec == std::errc() && p == line.data() + line.size() && pid > 0) out.push_back(pid);
    }
  }
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.is_directory(ec)) cgroup_pids(entry.path().string(), out, depth + 1);
  }
}

// Whether process `pid` maps one of `files` (device, inode) executable.
bool maps_executable(pid_t pid, const std::vector<std::pair<dev_t, ino_t>>& files) {
  auto maps = read_maps(pid);
  if (!maps) return false;  // gone
  for (const auto& m : *maps) {
    if (!m.exec) continue;
    for (const auto& [dev, ino] : files) {
      if (ino == m.ino && ::major(dev) == m.major && ::minor(dev) == m.minor) return true;
    }
  }
  return false;
}

}  // namespace

void AgentImpl::written_while_cached(const FileKey& key, const std::vector<int>& fds) {
  std::shared_ptr<Container> c;
  {
    std::shared_lock lock(containers_mutex_);
    if (auto it = by_number_.find(key.owner); it != by_number_.end()) c = it->second;
  }
  if (!c || !c->gated || c->mode == policy::Mode::kOff) return;
  std::vector<std::pair<dev_t, ino_t>> files;
  std::string path;
  for (int fd : fds) {
    struct stat st {};
    if (::fstat(fd, &st) == 0) files.emplace_back(st.st_dev, st.st_ino);
    if (path.empty()) path = read_link("/proc/self/fd/" + std::to_string(fd));
  }
  if (!path.empty()) path = c->guard->container_path(path);
  std::vector<pid_t> pids;
  cgroup_pids(c->cgroup_v2.path, pids);
  std::vector<pid_t> mapping;
  for (pid_t pid : pids) {
    if (maps_executable(pid, files)) mapping.push_back(pid);
  }
  if (mapping.empty()) return;
  bool end_them = c->mode == policy::Mode::kEnforce;
  if (end_them) {
    for (pid_t pid : mapping) {
      UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
      if (pidfd) (void)::syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0);
    }
  }
  std::string name = path.empty() ? "(unnamed)" : path;
  if (auto r = c->guard->record_violation(name); !r) {
    spdlog::error("{}: logging a violation: {}", c->id, r.error().message());
  }
  std::string reason = "opened for writing while " + std::to_string(mapping.size()) +
                       " process(es) of the container had it mapped executable" +
                       (end_them ? "; they were killed before the write" : "");
  spdlog::warn("{}: {}: {}", c->id, printable(name, 256), reason);
  publish({{"time", now_seconds()},
           {"container", c->id},
           {"kind", end_them ? "denied" : "violation"},
           {"exec", false},
           {"path", name},
           {"mode", policy::mode_name(c->mode)},
           {"pid", mapping.front()},
           {"reason", reason}});
}

Result<void> AgentImpl::gate(Container& c) {
#ifdef CTRUST_WITH_BPF
  if (!bpf_) {
    return Error(Errc::kUnsupported,
                 "the exec gate needs the BPF programs (enforcement.bpf = true)");
  }
  if (c.mode == policy::Mode::kOff) return ok_result();
  CTRUST_ASSIGN_OR_RETURN(c.cgroup_v2, container_cgroup(c.pid, c.id));
  events::GateMode mode = c.mode == policy::Mode::kEnforce ? events::GateMode::kEnforce
                          : c.mode == policy::Mode::kAudit ? events::GateMode::kAudit
                                                           : events::GateMode::kMeasure;
  {
    // One container per cgroup: a second one there would share the first one's verdicts.
    std::shared_lock lock(containers_mutex_);
    for (const auto& [id, other] : containers_) {
      if (other->gated && other->cgroup_v2.id == c.cgroup_v2.id && other.get() != &c) {
        release_cgroup(c.cgroup_v2);
        return Error(Errc::kInvalidArgument, "container " + other->id + " has the same cgroup " +
                                                 c.cgroup_v2.path +
                                                 ": the exec gate needs one "
                                                 "cgroup per container");
      }
    }
  }
  if (auto r = bpf_->gate_container(c.cgroup_v2.id, c.number, mode); !r) {
    release_cgroup(c.cgroup_v2);
    return std::move(r).error();
  }
  c.gated = true;
  return ok_result();
#else
  (void)c;
  return Error(Errc::kUnsupported, "this ctrustd was built without BPF: no exec gate");
#endif
}

void AgentImpl::ungate(Container& c) {
#ifdef CTRUST_WITH_BPF
  if (c.gated && bpf_) {
    if (auto r = bpf_->gate_release(c.cgroup_v2.id, c.number); !r) {
      spdlog::error("{}: {}", c.id, r.error().message());
    }
  }
#endif
  c.gated = false;
  release_cgroup(c.cgroup_v2);
}

bool AgentImpl::vouch(const Container& c, const FileKey& key, const struct timespec& ctime,
                      bool pinned) {
#ifdef CTRUST_WITH_BPF
  if (!c.gated || !bpf_) return false;
  if (auto r = bpf_->gate_allow(c.number, key.dev, key.ino, ctime, pinned); !r) {
    spdlog::error("{}: {}", c.id, r.error().message());
    return false;
  }
  return true;
#else
  (void)c;
  (void)key;
  (void)ctime;
  (void)pinned;
  return false;
#endif
}

// --- containers ---------------------------------------------------------------------------

Result<void> AgentImpl::mark_container(Container& c, const OciConfig& config, bool started) {
  std::string proc_root = "/proc/" + std::to_string(c.pid) + "/root";
  UniqueFd host_root(::open(proc_root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!host_root) return errno_error("opening " + proc_root, errno);
  // The root filesystem as the container's mount namespace has it: under the runtime's
  // view at createRuntime (before pivot_root), or the process's root once it runs.
  CTRUST_ASSIGN_OR_RETURN(UniqueFd root, started ? open_in_root(host_root.get(), "/")
                                                 : open_in_root(host_root.get(), c.rootfs));
  auto add = [&](UniqueFd fd, const std::string& what, const std::string& dest) -> Result<void> {
    CTRUST_ASSIGN_OR_RETURN(FileId id, file_id(fd.get()));
    Mark m;
    m.what = what;
    m.dest = dest;
    m.dev = id.dev;
    m.mnt_id = id.mnt_id;
    if (std::string upper = overlay_upper(c.pid, id.mnt_id); !upper.empty()) {
      m.upper.reset(::open(upper.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
      if (!m.upper) {
        m.no_cache = true;
        spdlog::warn(
            "{}: overlay upper directory {} is out of reach: digests of files on {} "
            "are not cached, and writable mappings of them cannot be seen",
            c.id, upper, what);
      }
    }
    struct statfs fs_type {};
    bool tmpfs = ::fstatfs(fd.get(), &fs_type) == 0 && fs_type.f_type == kTmpfsMagic;
    if (id.mount_root && id.mnt_id != 0) {
      // A tmpfs is scratch space: opens there are not asked about (creating and reading
      // files costs nothing), execs are, and a library mapped from it is the exec gate's.
      m.exec_only = tmpfs && dest != "/";
      CTRUST_TRY(monitor_->mark_mount_fd(fd.get(), what, m.exec_only));
    } else {
      // Not a mount of its own (yet): the whole filesystem, events told apart by mount
      // namespace. This also sees the host's accesses to that filesystem.
      CTRUST_TRY(monitor_->mark_filesystem_fd(fd.get(), what));
      m.filesystem = true;
      spdlog::info("{}: {} is not a mount of its own; marked its whole filesystem", c.id, what);
    }
    struct statfs sfs {};
    if (!m.filesystem && !m.no_cache && ::fstatfs(fd.get(), &sfs) == 0 &&
        (sfs.f_type == kOverlayMagic || sfs.f_type == kTmpfsMagic)) {
      m.kernel_cache->store(true);
    }
    m.fd = std::move(fd);
    c.marks.push_back(std::move(m));
    return ok_result();
  };
  CTRUST_TRY(add(std::move(root), "the root filesystem " + c.rootfs, "/"));
  CTRUST_ASSIGN_OR_RETURN(UniqueFd root_again, started ? open_in_root(host_root.get(), "/")
                                                       : open_in_root(host_root.get(), c.rootfs));
  static const std::set<std::string> kNoExec = {"proc",   "sysfs",  "cgroup",     "cgroup2",
                                                "devpts", "mqueue", "securityfs", "debugfs"};
  for (const auto& m : config.mounts) {
    if (kNoExec.contains(m.type)) continue;
    if (std::find(m.options.begin(), m.options.end(), "noexec") != m.options.end()) continue;
    auto fd = open_in_root(root_again.get(), m.destination);
    if (!fd) {
      // The runtime mounts it later than this hook, or not at all: we cannot see it.
      return std::move(fd).error().with_context("mount " + m.destination);
    }
    auto id = file_id(fd->get());
    if (!id) return std::move(id).error();
    if (!id->mount_root) {
      if (m.type == "bind" || m.type == "tmpfs" ||
          std::find(m.options.begin(), m.options.end(), "bind") != m.options.end() ||
          std::find(m.options.begin(), m.options.end(), "rbind") != m.options.end()) {
        return Error(Errc::kNotFound,
                     "mount " + m.destination + " is not mounted in the container yet");
      }
      continue;
    }
    CTRUST_TRY(add(std::move(*fd), "the mount " + m.destination, m.destination));
    if (std::find(m.options.begin(), m.options.end(), "rbind") != m.options.end()) {
      CTRUST_TRY(mark_submounts(c, m.destination, started, root_again.get(), add));
    }
  }
  return ok_result();
}

// The mounts below an rbind volume come along with it, each a mount of its own that the
// volume's mark does not cover: each is marked too (the exec gate would otherwise stop
// even listed programs on them, having never been asked).
template <typename Add>
Result<void> AgentImpl::mark_submounts(Container& c, const std::string& destination, bool started,
                                       int root_fd, Add& add) {
  CTRUST_ASSIGN_OR_RETURN(Bytes bytes, read_file("/proc/" + std::to_string(c.pid) + "/mountinfo",
                                                 std::size_t{16} << 20));
  CTRUST_ASSIGN_OR_RETURN(
      std::vector<MountInfo> mounts,
      parse_mountinfo(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size())));
  // As the container's mount namespace names them: under the bundle's root before the
  // runtime's pivot_root (at createRuntime), under "/" once the container runs.
  std::string base = started ? std::string() : c.rootfs;
  while (!base.empty() && base.back() == '/') base.pop_back();
  std::string dest = destination;
  while (dest.size() > 1 && dest.back() == '/') dest.pop_back();
  std::string prefix = base + dest + "/";
  static const std::set<std::string> kNoExec = {"proc",   "sysfs",  "cgroup",     "cgroup2",
                                                "devpts", "mqueue", "securityfs", "debugfs"};
  for (const auto& mi : mounts) {
    if (mi.mount_point.compare(0, prefix.size(), prefix) != 0) continue;
    if (kNoExec.contains(mi.fstype)) continue;
    bool noexec = ("," + mi.options + ",").find(",noexec,") != std::string::npos;
    if (noexec) continue;
    std::string inside = mi.mount_point.substr(base.size());
    auto fd = open_in_root(root_fd, inside);
    if (!fd) return std::move(fd).error().with_context("submount " + inside);
    auto id = file_id(fd->get());
    if (!id) return std::move(id).error();
    if (!id->mount_root || id->mnt_id != mi.mnt_id) continue;  // not the mount listed: moved
    CTRUST_TRY(add(std::move(*fd), "the mount " + inside, inside));
  }
  return ok_result();
}

void AgentImpl::register_marks(const std::shared_ptr<Container>& c) {
  std::vector<std::uint64_t> shared_with;
  {
    std::unique_lock lock(containers_mutex_);
    for (const auto& m : c->marks) {
      if (m.filesystem) {
        filesystem_marks_.insert(m.dev);
      } else {
        by_mount_[m.mnt_id] = c;
      }
    }
    // A device another container also has marks on: neither may cache in the kernel,
    // because an ignore mark is per inode and would skip the other's judgement too.
    for (const auto& [id, other] : containers_) {
      if (other == c) continue;
      for (auto& om : other->marks) {
        for (auto& m : c->marks) {
          if (om.dev != m.dev) continue;
          om.kernel_cache->store(false);
          m.kernel_cache->store(false);
          shared_with.push_back(other->number);
        }
      }
    }
  }
  for (auto n : shared_with) cache_->drop_owner(n);  // their ignore marks go
}

// A container the previous agent registered, still running: watched again from now on.
// Its log is reopened against its vTPM (extending what a crash left unextended), the gap
// recorded, its measurements so far remembered, and its mounts marked again through its
// process's root.
Result<std::shared_ptr<Container>> AgentImpl::adopt(const std::string& id, const std::string& dir) {
  CTRUST_ASSIGN_OR_RETURN(Bytes bytes, read_file(dir + "/container.json", kMaxOciDocument));
  auto doc = parse_json_strict(
      std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()), 16);
  if (!doc || !doc->is_object()) return Error(Errc::kFormat, dir + "/container.json is unreadable");
  auto str = [&](const char* key) {
    auto it = doc->find(key);
    return it != doc->end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  auto num = [&](const char* key) -> std::int64_t {
    auto it = doc->find(key);
    return it != doc->end() && it->is_number_integer() ? it->get<std::int64_t>() : 0;
  };
  auto c = std::make_shared<Container>();
  c->number = next_number_++;
  c->id = id;
  c->bundle = str("bundle");
  c->pid = static_cast<pid_t>(num("pid"));
  c->rootfs = str("rootfs");
  c->cgroup = str("cgroup");
  c->created = num("created");
  c->log_path = dir + "/measurements.bin";
  c->mnt_ns = c->pid > 0 ? mount_ns(c->pid) : 0;
  // The pid must still be that container's: same mount namespace as registered.
  if (c->mnt_ns == 0 || static_cast<std::int64_t>(c->mnt_ns) != num("mnt_ns")) {
    return Error(Errc::kNotFound, "its process " + std::to_string(c->pid) + " is gone");
  }
  auto mode = policy::parse_mode(str("mode"));
  if (!mode) return Error(Errc::kFormat, "no mode in container.json");
  c->mode = *mode;
  CTRUST_ASSIGN_OR_RETURN(
      c->image,
      crypto::Digest::from_hex(crypto::HashAlg::kSha256, std::string_view(str("image")).substr(7)));
  if (std::string name = str("policy"); !name.empty()) {
    std::lock_guard lock(policies_mutex_);
    auto it = policies_.find(name);
    if (it == policies_.end() || "sha256:" + it->second->digest.hex() != str("policy_digest")) {
      return Error(Errc::kNotFound, "its policy " + name + " is no longer loaded as it was");
    }
    c->policy = it->second;
  }
  CTRUST_ASSIGN_OR_RETURN(c->vtpm, vtpms_->get(id));
  if (c->vtpm.status != tpm::VtpmStatus::kRunning) {
    return Error(Errc::kNotFound,
                 "its vTPM is " + std::string(tpm::vtpm_status_name(c->vtpm.status)));
  }
  CTRUST_ASSIGN_OR_RETURN(tpm::Tpm vtpm, tpm::Tpm::open(c->vtpm.tcti));
  CTRUST_ASSIGN_OR_RETURN(ContainerLog log, ContainerLog::open(c->log_path, std::move(vtpm)));
  c->log = std::make_unique<ContainerLog>(std::move(log));
  c->guard = std::make_unique<ExecGuard>(c->policy ? &*c->policy->compiled : nullptr, c->mode,
                                         c->log.get(), c->rootfs);
  {
    // What is already in the log is not logged again.
    CTRUST_ASSIGN_OR_RETURN(imalog::BinaryReader reader, imalog::BinaryReader::open(c->log_path));
    imalog::Entry e;
    for (;;) {
      CTRUST_ASSIGN_OR_RETURN(bool more, reader.next(e));
      if (!more) break;
      if (e.is_violation()) continue;
      auto fields = imalog::parse_fields(e);
      if (!fields) continue;
      if (auto d = fields->file_digest_value()) c->guard->remember(std::string(fields->name), *d);
    }
  }
  CTRUST_ASSIGN_OR_RETURN(imalog::Entry gap,
                          imalog::make_violation("ima-ng", 10, "ctrust:agent-gap",
                                                 crypto::HashAlg::kSha256, crypto::HashAlg::kSha1));
  CTRUST_TRY(c->log->append(gap));
  CTRUST_ASSIGN_OR_RETURN(OciConfig config, read_bundle_config(c->bundle));
  for (const auto& ns : config.namespaces) c->namespaces.push_back(ns.type);
  {
    std::unique_lock lock(containers_mutex_);
    containers_[c->id] = c;
    by_number_[c->number] = c;
    by_mnt_ns_[c->mnt_ns] = c;
  }
  auto marked = mark_container(*c, config, true);
  if (marked && config_.bpf) {
    if (auto g = gate(*c); !g) marked = std::move(g).error().with_context("the exec gate");
  }
  if (!marked) {
    std::unique_lock lock(containers_mutex_);
    containers_.erase(c->id);
    by_number_.erase(c->number);
    by_mnt_ns_.erase(c->mnt_ns);
    return std::move(marked).error();
  }
  register_marks(c);
  return c;
}

void AgentImpl::unmark_container(Container& c) {
  for (auto& m : c.marks) {
    if (m.filesystem) {
      std::unique_lock lock(containers_mutex_);
      if (auto it = filesystem_marks_.find(m.dev); it != filesystem_marks_.end()) {
        filesystem_marks_.erase(it);
      }
      if (filesystem_marks_.contains(m.dev)) continue;  // another container still needs it
    }
    // A mount mark goes with its mount; a filesystem mark must be removed.
    if (m.filesystem) {
      if (auto r = monitor_->unmark_filesystem_fd(m.fd.get(), m.what); !r) {
        spdlog::warn("{}: {}", c.id, r.error().message());
      }
    }
  }
}

json AgentImpl::container_json(const Container& c) const {
  ExecCounters k = c.guard ? c.guard->counters() : ExecCounters{};
  return {{"id", c.id},
          {"bundle", c.bundle},
          {"pid", c.pid},
          {"mnt_ns", c.mnt_ns},
          {"rootfs", c.rootfs},
          {"cgroup", c.cgroup},
          {"gate", {{"on", c.gated}, {"cgroup", c.cgroup_v2.path}, {"cgroup_id", c.cgroup_v2.id}}},
          {"namespaces", c.namespaces},
          {"mode", policy::mode_name(c.mode)},
          {"image", "sha256:" + c.image.hex()},
          {"policy", c.policy ? c.policy->name : ""},
          {"policy_digest", c.policy ? "sha256:" + c.policy->digest.hex() : ""},
          {"vtpm",
           {{"uuid", c.vtpm.uuid},
            {"tcti", c.vtpm.tcti},
            {"ak_name", c.vtpm.ak_name},
            {"ek_name", c.vtpm.ek_name}}},
          {"log", c.log_path},
          {"created", c.created},
          {"mounts",
           [&] {
             json list = json::array();
             for (const auto& m : c.marks) {
               list.push_back({{"destination", m.dest},
                               {"mnt_id", m.mnt_id},
                               {"mark", m.filesystem ? "filesystem" : "mount"},
                               {"asks", m.exec_only ? "exec" : "exec+open"},
                               {"kernel_cache", m.kernel_cache->load()}});
             }
             return list;
           }()},
          {"marks", c.marks.size()},
          {"counts",
           {{"events", k.events},
            {"measurements", k.logged},
            {"denials", k.denied},
            {"would_deny", k.would_deny},
            {"violations", k.violations},
            {"errors", k.errors}}}};
}

Result<json> AgentImpl::create(const json& request) {
  if (!request.contains("state") || !request["state"].is_string()) {
    return Error(Errc::kInvalidArgument, "create needs \"state\": the OCI state as a string");
  }
  CTRUST_ASSIGN_OR_RETURN(OciState state, parse_oci_state(request["state"].get<std::string>()));
  if (!tpm::valid_container_id(state.id)) {
    return Error(Errc::kInvalidArgument, "container id " + printable(state.id) +
                                             " is not usable (1-128 of A-Z a-z 0-9 _ . -)");
  }
  if (!state.pid || *state.pid <= 0) {
    return Error(Errc::kInvalidArgument, "the OCI state has no pid: run the hook at createRuntime");
  }
  std::lock_guard create_lock(create_mutex_);
  {
    std::shared_lock lock(containers_mutex_);
    if (containers_.contains(state.id)) {
      return Error(Errc::kInvalidArgument, "container " + state.id + " is already registered");
    }
  }
  CTRUST_ASSIGN_OR_RETURN(OciConfig config, read_bundle_config(state.bundle));
  auto annotations = config.annotations;
  for (const auto& [k, v] : state.annotations) annotations[k] = v;
  CTRUST_ASSIGN_OR_RETURN(ContainerSettings settings, settings_from_annotations(annotations));

  auto c = std::make_shared<Container>();
  c->number = next_number_++;
  c->id = state.id;
  c->bundle = state.bundle;
  c->pid = *state.pid;
  c->mnt_ns = mount_ns(c->pid);
  c->created = now_seconds();
  c->cgroup = config.cgroups_path;
  for (const auto& ns : config.namespaces) c->namespaces.push_back(ns.type);
  c->rootfs = config.root_path.empty() || config.root_path[0] == '/'
                  ? config.root_path
                  : state.bundle + "/" + config.root_path;
  if (c->rootfs.empty()) return Error(Errc::kInvalidArgument, "config.json has no root.path");

  // Policy and mode.
  {
    std::lock_guard lock(policies_mutex_);
    if (settings.policy) {
      const std::string& want = *settings.policy;
      for (const auto& [name, p] : policies_) {
        if (name == want || "sha256:" + p->digest.hex() == want) c->policy = p;
      }
      if (!c->policy) {
        return Error(Errc::kNotFound, "io.ctrust.policy names " + printable(want) +
                                          ", which is not loaded (ctrust policy load FILE)");
      }
    }
  }
  // The image digest before anything is attached: what the container will run from.
  image::ManifestOptions mo;
  mo.threads = 0;
  auto manifest = image::manifest_from_directory(c->rootfs, mo);
  if (!manifest) return std::move(manifest).error().with_context("image digest of " + c->rootfs);
  CTRUST_ASSIGN_OR_RETURN(c->image, manifest->digest());
  {
    std::lock_guard lock(policies_mutex_);
    // The policy that applies without the annotation: one listing the image, else the
    // default policy.
    std::shared_ptr<LoadedPolicy> own;
    for (const auto& [name, p] : policies_) {
      const auto& images = p->policy.images;
      if (std::find(images.begin(), images.end(), c->image) != images.end()) {
        own = p;
        break;
      }
    }
    if (!own && !config_.default_policy.empty()) {
      auto it = policies_.find(config_.default_policy);
      if (it == policies_.end()) {
        return Error(Errc::kNotFound,
                     "containers.default_policy " + config_.default_policy + " is not loaded");
      }
      own = it->second;
    }
    // The container's author may choose among the policies that list its image; any other
    // choice could replace the image's own policy by a weaker one (a measure policy, or a
    // longer list), so it is taken only where no policy applies otherwise and its mode is no
    // weaker than the default, or where annotations_may_weaken says so.
    if (c->policy && c->policy != own && !config_.annotations_may_weaken) {
      const auto& images = c->policy->policy.images;
      bool lists = std::find(images.begin(), images.end(), c->image) != images.end();
      if (!lists && (own || c->policy->policy.mode < config_.default_mode)) {
        return Error(Errc::kInvalidArgument,
                     "io.ctrust.policy names " + c->policy->name +
                         ", which does not list this image (sha256:" + c->image.hex() + ")" +
                         (own ? "; policy " + own->name + " applies to it" : std::string()) +
                         " (containers.annotations_may_weaken allows it)");
      }
    }
    if (!c->policy) c->policy = own;
  }
  c->mode = c->policy ? c->policy->policy.mode : config_.default_mode;
  if (settings.mode) {
    if (*settings.mode < c->mode && !config_.annotations_may_weaken) {
      return Error(Errc::kInvalidArgument, std::string("io.ctrust.mode ") +
                                               std::string(policy::mode_name(*settings.mode)) +
                                               " is weaker than the container's mode " +
                                               std::string(policy::mode_name(c->mode)) +
                                               " (containers.annotations_may_weaken allows it)");
    }
    c->mode = config_.annotations_may_weaken ? *settings.mode : stricter(*settings.mode, c->mode);
  }
  if (c->mode == policy::Mode::kEnforce) {
    if (!c->policy) {
      return Error(Errc::kNotFound,
                   "mode enforce, but no policy applies to image sha256:" + c->image.hex() +
                       " (load one, or name it in io.ctrust.policy)");
    }
    const auto& images = c->policy->policy.images;
    if (!images.empty() && std::find(images.begin(), images.end(), c->image) == images.end()) {
      return Error(Errc::kInvalidArgument,
                   "policy " + c->policy->name +
                       " does not list this image (sha256:" + c->image.hex() + ")");
    }
  }

  // vTPM, then the log with its first entries, then the host record, then the marks.
  wait_teardown(c->id);  // a container of this name that just stopped still has its vTPM
  CTRUST_ASSIGN_OR_RETURN(c->vtpm, vtpms_->create(c->id));
  auto undo_vtpm = [&] { (void)vtpms_->destroy(c->id); };
  std::string dir = config_.containers_dir() + "/" + c->id;
  auto prepared = [&]() -> Result<void> {
    if (fs::exists(dir)) {
      // A container of the same name ran before: its log is kept, not overwritten.
      std::string old = dir + "." + std::to_string(now_seconds());
      if (::rename(dir.c_str(), old.c_str()) != 0) return errno_error("renaming " + dir, errno);
    }
    CTRUST_TRY(make_dir(dir));
    c->log_path = dir + "/measurements.bin";
    CTRUST_ASSIGN_OR_RETURN(tpm::Tpm vtpm, tpm::Tpm::open(c->vtpm.tcti));
    CTRUST_ASSIGN_OR_RETURN(ContainerLog log, ContainerLog::open(c->log_path, std::move(vtpm)));
    c->log = std::make_unique<ContainerLog>(std::move(log));
    std::vector<imalog::Entry> first;
    crypto::Digest aggregate;
    {
      std::lock_guard lock(host_mutex_);
      CTRUST_ASSIGN_OR_RETURN(aggregate,
                              boot_aggregate(*host_tpm_aggregate_, crypto::HashAlg::kSha256));
    }
    CTRUST_ASSIGN_OR_RETURN(imalog::Entry ba,
                            boot_aggregate_entry(aggregate, crypto::HashAlg::kSha1));
    first.push_back(std::move(ba));
    CTRUST_ASSIGN_OR_RETURN(imalog::Entry img, named_digest_entry("ctrust:image", c->image, 10));
    first.push_back(std::move(img));
    if (c->policy) {
      CTRUST_ASSIGN_OR_RETURN(
          imalog::Entry pol,
          named_digest_entry("ctrust:policy:" + c->policy->name, c->policy->digest, 10));
      first.push_back(std::move(pol));
    }
    CTRUST_TRY(c->log->append(first));
    c->guard = std::make_unique<ExecGuard>(c->policy ? &*c->policy->compiled : nullptr, c->mode,
                                           c->log.get(), c->rootfs);
    CTRUST_TRY(host_record("ctrust:container-created",
                           {{"event", "container-created"},
                            {"container", c->id},
                            {"image", "sha256:" + c->image.hex()},
                            {"policy", c->policy ? "sha256:" + c->policy->digest.hex() : ""},
                            {"mode", policy::mode_name(c->mode)},
                            {"vtpm_ak_name", c->vtpm.ak_name},
                            {"vtpm_ek_name", c->vtpm.ek_name},
                            {"time", c->created}}));
    // Registered before marking, so that the first event finds its container.
    {
      std::unique_lock lock(containers_mutex_);
      containers_[c->id] = c;
      by_number_[c->number] = c;
      if (c->mnt_ns != 0) by_mnt_ns_[c->mnt_ns] = c;
    }
    CTRUST_TRY(mark_container(*c, config, false));
    register_marks(c);
    if (config_.bpf) {
      if (auto g = gate(*c); !g) return std::move(g).error().with_context("the exec gate");
    }
    CTRUST_TRY(write_file_atomic(dir + "/container.json",
                                 as_bytes(container_json(*c).dump(2) + "\n"), 0600));
    CTRUST_TRY(write_file_atomic(dir + "/status", as_bytes(std::string("running")), 0600));
    return ok_result();
  }();
  if (!prepared) {
    {
      std::unique_lock lock(containers_mutex_);
      containers_.erase(c->id);
      by_number_.erase(c->number);
      if (c->mnt_ns != 0) by_mnt_ns_.erase(c->mnt_ns);
      for (const auto& m : c->marks) {
        if (!m.filesystem) by_mount_.erase(m.mnt_id);
      }
    }
    unmark_container(*c);
    ungate(*c);
    undo_vtpm();
    return std::move(prepared).error();
  }
  spdlog::info("{}: registered, mode {}, image sha256:{}, policy {}, {} marks", c->id,
               policy::mode_name(c->mode), c->image.hex(), c->policy ? c->policy->name : "none",
               c->marks.size());
  return json{{"ok", true}, {"container", container_json(*c)}};
}

Result<json> AgentImpl::remove(const std::string& id) {
  std::lock_guard create_lock(create_mutex_);
  std::shared_ptr<Container> c;
  {
    std::unique_lock lock(containers_mutex_);
    auto it = containers_.find(id);
    if (it == containers_.end()) {
      lock.unlock();
      return remove_orphan(id);
    }
    c = it->second;
    containers_.erase(it);
    by_number_.erase(c->number);
    if (c->mnt_ns != 0) by_mnt_ns_.erase(c->mnt_ns);
    for (const auto& m : c->marks) {
      if (!m.filesystem) by_mount_.erase(m.mnt_id);
    }
  }
  unmark_container(*c);
  ungate(*c);
  cache_->drop_owner(c->number);
  json final = container_json(*c);
  auto recorded =
      host_record("ctrust:container-stopped", {{"event", "container-stopped"},
                                               {"container", c->id},
                                               {"measurements", final["counts"]["measurements"]},
                                               {"denials", final["counts"]["denials"]},
                                               {"violations", final["counts"]["violations"]},
                                               {"time", now_seconds()}});
  std::string dir = config_.containers_dir() + "/" + c->id;
  (void)write_file_atomic(dir + "/container.json", as_bytes(final.dump(2) + "\n"), 0600);
  (void)write_file_atomic(dir + "/status", as_bytes(std::string("stopped")), 0600);
  // The vTPM is stopped (and archived) after the answer: the runtime need not wait for it.
  // In-flight decisions hold the container and its log; they fail closed if they outlive it.
  schedule_teardown(c->id);
  if (!recorded) return std::move(recorded).error();
  spdlog::info("{}: stopped; log kept at {}", c->id, c->log_path);
  return json{{"ok", true}, {"container", final}};
}

// A container registered by an agent before a restart (status "orphaned"): its books are
// closed as for any other, without the counts the old agent took with it.
Result<json> AgentImpl::remove_orphan(const std::string& id) {
  if (!tpm::valid_container_id(id)) return Error(Errc::kInvalidArgument, "bad container id");
  std::string dir = config_.containers_dir() + "/" + id;
  auto status = read_file(dir + "/status", 64);
  if (!status || std::string(status->begin(), status->end()) != "orphaned") {
    return Error(Errc::kNotFound, "container " + printable(id) + " is not registered");
  }
  auto recorded = host_record("ctrust:container-stopped", {{"event", "container-stopped"},
                                                           {"container", id},
                                                           {"orphaned", true},
                                                           {"time", now_seconds()}});
  (void)write_file_atomic(dir + "/status", as_bytes(std::string("stopped")), 0600);
  auto destroyed = vtpms_->destroy(id);
  if (!recorded) return std::move(recorded).error();
  if (!destroyed) return std::move(destroyed).error();
  spdlog::info("{}: stopped (registered before the agent restarted)", id);
  return json{{"ok", true}, {"container", {{"id", id}, {"orphaned", true}}}};
}

void AgentImpl::schedule_teardown(const std::string& id) {
  {
    std::lock_guard lock(teardown_mutex_);
    teardowns_.push_back(id);
    tearing_down_.insert(id);
  }
  teardown_cv_.notify_all();
}

void AgentImpl::wait_teardown(const std::string& id) {
  std::unique_lock lock(teardown_mutex_);
  teardown_cv_.wait(lock, [&] { return !tearing_down_.contains(id); });
}

void AgentImpl::teardown_loop() {
  std::unique_lock lock(teardown_mutex_);
  for (;;) {
    teardown_cv_.wait(lock, [&] { return stopping_ || !teardowns_.empty(); });
    if (teardowns_.empty()) return;  // stopping, and nothing left to do
    std::string id = teardowns_.front();
    teardowns_.pop_front();
    lock.unlock();
    if (auto r = vtpms_->destroy(id); !r) {
      spdlog::error("{}: destroying its vTPM: {}", id, r.error().message());
    }
    lock.lock();
    tearing_down_.erase(id);
    teardown_cv_.notify_all();
  }
}

Result<json> AgentImpl::policy_load(const json& request) {
  if (!request.contains("path") || !request["path"].is_string()) {
    return Error(Errc::kInvalidArgument, "policy_load needs \"path\"");
  }
  std::string path = request["path"].get<std::string>();
  CTRUST_ASSIGN_OR_RETURN(auto loaded, read_policy(path));
  // Kept in the policy directory so that a restarted agent loads it again.
  std::string kept = config_.policies() + "/" + loaded->name + ".json";
  CTRUST_ASSIGN_OR_RETURN(Bytes bytes, read_file(path, policy::kMaxPolicyBytes));
  {
    std::lock_guard lock(policies_mutex_);
    if (auto old = policies_.find(loaded->name); old != policies_.end()) {
      if (loaded->policy.serial < old->second->policy.serial) {
        return Error(Errc::kInvalidArgument,
                     "policy " + loaded->name + " serial " + std::to_string(loaded->policy.serial) +
                         " is older than the loaded serial " +
                         std::to_string(old->second->policy.serial) + " (rollback refused)");
      }
    }
    CTRUST_TRY(write_file_atomic(kept, bytes, 0600));
    loaded->path = kept;
    policies_[loaded->name] = loaded;
  }
  CTRUST_ASSIGN_OR_RETURN(imalog::Entry e, named_digest_entry("ctrust-policy:" + loaded->name,
                                                              loaded->digest, config_.host_pcr));
  {
    std::lock_guard lock(host_mutex_);
    CTRUST_TRY(host_log_->append(e));
  }
  spdlog::info("policy {} loaded (serial {}, {} entries)", loaded->name, loaded->policy.serial,
               loaded->compiled->size());
  return json{{"ok", true},
              {"policy",
               {{"name", loaded->name},
                {"digest", "sha256:" + loaded->digest.hex()},
                {"serial", loaded->policy.serial},
                {"entries", loaded->compiled->size()},
                {"mode", policy::mode_name(loaded->policy.mode)},
                {"signer", loaded->signer}}}};
}

json AgentImpl::ps() {
  json list = json::array();
  std::shared_lock lock(containers_mutex_);
  for (const auto& [id, c] : containers_) list.push_back(container_json(*c));
  auto stats = cache_->stats();
  return {{"ok", true},
          {"containers", list},
          {"unmanaged", unmanaged()},
          {"unvouched_execs", unvouched_.load()},
          {"unattributed_events", unattributed_.load()},
          {"host_log", config_.host_dir() + "/measurements.bin"},
          {"host_pcr", config_.host_pcr},
          {"cache",
           {{"hits", stats.hits},
            {"misses", stats.misses},
            {"entries", stats.entries},
            {"broken", stats.broken},
            {"writers", stats.writers},
            {"kernel", stats.kernel},
            {"evicted", stats.evicted}}}};
}

json AgentImpl::handle(const json& request) {
  auto answer = [&]() -> Result<json> {
    if (!request.is_object() || !request.contains("op") || !request["op"].is_string()) {
      return Error(Errc::kInvalidArgument, "a request is an object with \"op\"");
    }
    std::string op = request["op"].get<std::string>();
    if (op == "create") return create(request);
    if (op == "delete") {
      if (!request.contains("id") || !request["id"].is_string()) {
        return Error(Errc::kInvalidArgument, "delete needs \"id\"");
      }
      return remove(request["id"].get<std::string>());
    }
    if (op == "ps") return ps();
    if (op == "policy_load") return policy_load(request);
    if (op == "log") {
      if (!request.contains("id") || !request["id"].is_string()) {
        return Error(Errc::kInvalidArgument, "log needs \"id\"");
      }
      std::string id = request["id"].get<std::string>();
      if (id == "host") {
        return json{{"ok", true}, {"path", config_.host_dir() + "/measurements.bin"}};
      }
      if (!tpm::valid_container_id(id)) return Error(Errc::kInvalidArgument, "bad container id");
      std::string path = config_.containers_dir() + "/" + id + "/measurements.bin";
      if (!fs::exists(path)) return Error(Errc::kNotFound, "no log for container " + id);
      return json{{"ok", true}, {"path", path}};
    }
    if (op == "status") {
      return json{{"ok", true}, {"state_dir", config_.state_dir}, {"pid", ::getpid()}};
    }
    return Error(Errc::kInvalidArgument, "unknown op " + printable(op));
  }();
  if (!answer) {
    // A refused start or policy is a decision the node's operator must be able to find in
    // the agent's log, not only in the runtime's output.
    std::string op = request.is_object() && request.contains("op") && request["op"].is_string()
                         ? request["op"].get<std::string>()
                         : "";
    if (op == "create") spdlog::warn("container start refused: {}", answer.error().message());
    if (op == "policy_load") spdlog::warn("policy refused: {}", answer.error().message());
    return {{"ok", false}, {"error", answer.error().message()}};
  }
  return std::move(*answer);
}

// --- control socket -----------------------------------------------------------------------

void AgentImpl::serve_connection(UniqueFd fd) {
  auto done = [&] {
    std::lock_guard lock(connections_mutex_);
    --connections_;
    connections_cv_.notify_all();
  };
  auto uid = peer_uid(fd.get());
  auto reply = [&](const json& doc) {
    std::string text = doc.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
    (void)write_all(fd.get(), as_bytes(text));
  };
  if (!uid || *uid != 0) {
    reply({{"ok", false}, {"error", "only root may talk to ctrustd"}});
    done();
    return;
  }
  auto line = read_line(fd.get(), kMaxRequest, 10000);
  if (!line) {
    reply({{"ok", false}, {"error", line.error().message()}});
    done();
    return;
  }
  auto request = parse_json_strict(*line, 64);
  if (!request) {
    reply({{"ok", false}, {"error", "malformed request: " + request.error().message()}});
    done();
    return;
  }
  // Untrusted: "op" may be anything (value() would throw on a non-string).
  auto op = request->is_object() ? request->find("op") : request->end();
  if (op != request->end() && op->is_string() && op->get_ref<const std::string&>() == "events") {
    reply({{"ok", true}});
    std::lock_guard lock(subscribers_mutex_);
    subscribers_.push_back(std::move(fd));
    done();
    return;
  }
  reply(handle(*request));
  done();
}

Result<void> AgentImpl::serve() {
  CTRUST_ASSIGN_OR_RETURN(UniqueFd listener, listen_control(config_.socket));
  spdlog::info("listening on {}", config_.socket);
  while (!stopping_) {
    pollfd fds[2] = {{listener.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
    int ready = ::poll(fds, 2, 1000);
    if (ready <= 0) continue;
    if ((fds[0].revents & POLLIN) == 0) continue;
    UniqueFd conn(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!conn) continue;
    {
      std::lock_guard lock(connections_mutex_);
      if (connections_ >= 64) continue;  // closes it: a flood does not take the agent down
      ++connections_;
    }
    std::thread([this, c = std::move(conn)]() mutable { serve_connection(std::move(c)); }).detach();
  }
  ::unlink(config_.socket.c_str());
  return ok_result();
}

void AgentImpl::shutdown() {
  stopping_ = true;
  api_.reset();  // no challenge touches containers or TPMs from here on
  if (wake_) {
    std::uint64_t one = 1;
    (void)!::write(wake_.get(), &one, sizeof(one));
  }
  {
    std::unique_lock lock(connections_mutex_);
    connections_cv_.wait_for(lock, std::chrono::seconds(10), [&] { return connections_ == 0; });
  }
  if (jobs_) jobs_->stop();
  for (auto& w : workers_) {
    if (w.joinable()) w.join();
  }
  if (fanotify_thread_.joinable()) fanotify_thread_.join();
  if (bpf_thread_.joinable()) bpf_thread_.join();
  teardown_cv_.notify_all();
  if (teardown_thread_.joinable()) teardown_thread_.join();  // finishes what is queued
  // Queued events are answered with the fail verdict as their PendingEvents die; closing
  // the group then releases anything else pending.
  if (jobs_) jobs_->clear();
  monitor_.reset();
  {
    std::unique_lock lock(containers_mutex_);
    by_mount_.clear();
    by_mnt_ns_.clear();
    by_number_.clear();
  }
  // Containers stay registered on disk (status running): the next agent records the gap.
  containers_.clear();
  cache_.reset();
  vtpms_.reset();
  spdlog::info("ctrustd stopped");
}

}  // namespace

Result<std::unique_ptr<Agent>> Agent::start(const AgentConfig& config,
                                            const std::string& config_bytes) {
  auto agent = std::make_unique<AgentImpl>(config);
  CTRUST_TRY(agent->init(config_bytes));
  return std::unique_ptr<Agent>(std::move(agent));
}

}  // namespace ctrust::agent
