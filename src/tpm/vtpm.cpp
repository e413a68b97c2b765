#include "tpm/vtpm.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "tpm/swtpm.h"
#include "tpm/tpm.h"
#include "util/file.h"
#include "util/json.h"

namespace ctrust::tpm {
namespace {

namespace fs = std::filesystem;

constexpr mode_t kPrivateDir = 0700;
constexpr std::size_t kMaxMetaSize = 64 << 10;
constexpr const char* kMetaFile = "vtpm.json";
constexpr const char* kSocketName = "tpm.sock";

std::int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Result<std::string> new_uuid() {
  std::uint8_t bytes[16];
  if (::getrandom(bytes, sizeof(bytes), 0) != static_cast<ssize_t>(sizeof(bytes))) {
    return errno_error("getrandom", errno);
  }
  return to_hex(ByteView(bytes, sizeof(bytes)));
}

Result<void> make_private_dir(const std::string& path) {
  if (::mkdir(path.c_str(), kPrivateDir) != 0 && errno != EEXIST) {
    return errno_error("creating " + path, errno);
  }
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return errno_error("checking " + path, errno);
  if (!S_ISDIR(st.st_mode)) return Error(Errc::kInvalidArgument, path + " is not a directory");
  if ((st.st_mode & 077) != 0 && ::chmod(path.c_str(), kPrivateDir) != 0) {
    return errno_error("restricting " + path + " to mode 0700", errno);
  }
  return ok_result();
}

// Runs a tool with its output in `log`; an error quoting the log's last line on failure. It
// runs at the calling thread's CPU priority (LowPriority).
Result<void> run_tool(const std::vector<std::string>& args, const std::string& log) {
  std::vector<std::string> copy = args;
  CTRUST_ASSIGN_OR_RETURN(copy[0], find_executable(args[0]));
  UniqueFd log_fd(::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!log_fd) return errno_error("creating " + log, errno);
  std::vector<char*> argv;
  argv.reserve(copy.size() + 1);
  for (auto& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  CTRUST_ASSIGN_OR_RETURN(pid_t pid, spawn_child(argv.data(), log_fd.get()));
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return errno_error("waiting for " + args[0], errno);
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return ok_result();
  std::string last = log_last_line(log);
  return Error(Errc::kIo, args[0] + " failed" + (last.empty() ? "" : ": " + last));
}

// The calling thread at the lowest CPU priority (nice 19; on Linux nice is per thread) while
// it lives, and what it starts too: making a pool vTPM (swtpm_setup's key generation, most
// of a second of CPU) then does not slow down the container starts it overlaps. Back to the
// thread's own priority at the end (the agent runs with CAP_SYS_NICE; without it the thread
// stays low, which only slows later refills).
class LowPriority {
 public:
  explicit LowPriority(bool on) : tid_(static_cast<id_t>(::gettid())) {
    if (!on) return;
    errno = 0;
    int old = ::getpriority(PRIO_PROCESS, tid_);
    if (errno == 0 && ::setpriority(PRIO_PROCESS, tid_, 19) == 0) {
      old_ = old;
      lowered_ = true;
    }
  }
  ~LowPriority() {
    if (lowered_) (void)::setpriority(PRIO_PROCESS, tid_, old_);
  }
  LowPriority(const LowPriority&) = delete;
  LowPriority& operator=(const LowPriority&) = delete;

 private:
  id_t tid_;
  int old_ = 0;
  bool lowered_ = false;
};

nlohmann::json meta_json(const VtpmInfo& info, bool suspended) {
  return {{"uuid", info.uuid},
          {"created", info.created},
          {"ek_name", info.ek_name},
          {"ak_name", info.ak_name},
          {"suspended", suspended}};
}

Result<void> write_meta(const std::string& dir, const VtpmInfo& info, bool suspended) {
  std::string text = meta_json(info, suspended).dump(2) + "\n";
  return write_file_atomic(dir + "/" + kMetaFile, as_bytes(text), 0600);
}

// Our vTPM directories are named by 32 lowercase hex digits; anything else found through a
// container link (say "..") is refused before it becomes part of a path we delete.
bool valid_uuid(const std::string& uuid) {
  if (uuid.size() != 32) return false;
  for (char c : uuid) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// An exclusive flock on `path` (created if missing), or an error; EWOULDBLOCK means
// another process holds it.
Result<UniqueFd> lock_file(const std::string& path, bool wait) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd) return errno_error("opening " + path, errno);
  if (::flock(fd.get(), LOCK_EX | (wait ? 0 : LOCK_NB)) != 0) {
    return errno_error("locking " + path, errno);
  }
  return fd;
}

// True while another process manufactures the vTPM in `dir`.
bool being_manufactured(const std::string& dir) {
  std::string path = dir + "/manufacture.lock";
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd) return false;
  return ::flock(fd.get(), LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
}

}  // namespace

std::string_view vtpm_status_name(VtpmStatus status) {
  switch (status) {
    case VtpmStatus::kRunning:
      return "running";
    case VtpmStatus::kSuspended:
      return "suspended";
    case VtpmStatus::kDead:
      return "dead";
  }
  return "unknown";
}

bool valid_container_id(const std::string& id) {
  if (id.empty() || id.size() > 128 || id[0] == '.') return false;
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-';
    if (!ok) return false;
  }
  return true;
}

VtpmManager::VtpmManager(VtpmConfig config) : config_(std::move(config)) {}

VtpmManager::~VtpmManager() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  refill_cv_.notify_all();
  if (refill_thread_.joinable()) refill_thread_.join();
}

std::string VtpmManager::tpm_dir(const std::string& uuid) const {
  return config_.root + "/tpms/" + uuid;
}

std::string VtpmManager::link_path(const std::string& container) const {
  return config_.root + "/containers/" + container;
}

std::vector<std::string> VtpmManager::ca_certificates() const {
  return {config_.root + "/ca/swtpm-localca-rootca-cert.pem", config_.root + "/ca/issuercert.pem"};
}

Result<std::unique_ptr<VtpmManager>> VtpmManager::open(const VtpmConfig& config) {
  if (config.root.empty() || config.root[0] != '/') {
    return Error(Errc::kInvalidArgument, "vTPM root must be an absolute path");
  }
  // swtpm's socket path: root + /tpms/ + 32 + /tpm.sock.ctrl must fit sockaddr_un.
  if (config.root.size() > 50) {
    return Error(Errc::kInvalidArgument,
                 "vTPM root " + config.root + " is too long for UNIX socket paths (max 50 bytes)");
  }
  std::unique_ptr<VtpmManager> manager(new VtpmManager(config));
  CTRUST_TRY(manager->init());
  return manager;
}

Result<void> VtpmManager::init() {
  CTRUST_TRY(make_private_dir(config_.root));
  for (const char* sub : {"/ca", "/tpms", "/containers", "/archive"}) {
    CTRUST_TRY(make_private_dir(config_.root + sub));
  }
  std::string ca = config_.root + "/ca";
  std::string localca_conf = "statedir = " + ca + "\nsigningkey = " + ca +
                             "/signkey.pem\nissuercert = " + ca +
                             "/issuercert.pem\ncertserial = " + ca + "/certserial\n";
  std::string localca_options =
      "--platform-manufacturer ctrust\n--platform-version 1\n--platform-model vtpm\n";
  std::string setup_conf = "create_certs_tool = " + config_.swtpm_localca +
                           "\ncreate_certs_tool_config = " + config_.root +
                           "/swtpm-localca.conf\ncreate_certs_tool_options = " + config_.root +
                           "/swtpm-localca.options\n";
  CTRUST_TRY(write_file_atomic(config_.root + "/swtpm-localca.conf", as_bytes(localca_conf), 0600));
  CTRUST_TRY(
      write_file_atomic(config_.root + "/swtpm-localca.options", as_bytes(localca_options), 0600));
  CTRUST_TRY(write_file_atomic(config_.root + "/swtpm_setup.conf", as_bytes(setup_conf), 0600));
  if (config_.manage_pool) {
    auto lock = lock_file(config_.root + "/pool.lock", false);
    if (!lock) {
      return Error(Errc::kInvalidArgument,
                   "another process manages the vTPM pool of " + config_.root +
                       " (is ctrustd already running?): " + lock.error().message());
    }
    pool_lock_ = std::move(*lock);
  }

  // Which vTPMs are attached, by uuid.
  std::map<std::string, std::string> attached;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(config_.root + "/containers", ec)) {
    std::error_code lec;
    fs::path target = fs::read_symlink(entry.path(), lec);
    if (lec) continue;
    attached[target.filename().string()] = entry.path().filename().string();
  }
  for (const auto& entry : fs::directory_iterator(config_.root + "/tpms", ec)) {
    std::string uuid = entry.path().filename().string();
    if (!valid_uuid(uuid)) continue;  // not ours: left alone
    auto info = load_info(uuid);
    auto it = attached.find(uuid);
    if (it == attached.end()) {
      // A pool vTPM (or one another manager is still making): only the pool's manager
      // adopts it when it runs and discards it when dead (nobody depends on it).
      if (!config_.manage_pool || being_manufactured(tpm_dir(uuid))) continue;
      if (info && info->status == VtpmStatus::kRunning) {
        pool_.push_back(*info);
      } else {
        if (info) (void)stop_swtpm(info->pid, info->state_dir + "/" + kSocketName);
        remove_vtpm_files(uuid, "");
      }
      continue;
    }
    ++attached_;
    if (config_.resume_suspended && info && info->status == VtpmStatus::kSuspended) {
      info->container = it->second;
      (void)resume(*info);  // a failure leaves it reported as dead by list()
    }
  }
  if (config_.manage_pool && config_.pool_size > 0) {
    refill_thread_ = std::thread([this] { refill_loop(); });
  }
  return ok_result();
}

Result<VtpmInfo> VtpmManager::load_info(const std::string& uuid) {
  std::string dir = tpm_dir(uuid);
  VtpmInfo info;
  info.uuid = uuid;
  info.state_dir = dir;
  info.tcti = std::string("swtpm:path=") + dir + "/" + kSocketName;
  CTRUST_ASSIGN_OR_RETURN(Bytes bytes, read_file(dir + "/" + kMetaFile, kMaxMetaSize));
  auto doc = parse_json_strict(
      std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()), 8);
  if (!doc) return std::move(doc).error().with_context(dir + "/" + kMetaFile);
  bool suspended = false;
  try {
    info.created = doc->at("created").get<std::int64_t>();
    info.ek_name = doc->at("ek_name").get<std::string>();
    info.ak_name = doc->at("ak_name").get<std::string>();
    suspended = doc->at("suspended").get<bool>();
  } catch (const nlohmann::json::exception& e) {
    return Error(Errc::kFormat, dir + "/" + kMetaFile + ": " + e.what());
  }
  auto pid = read_pid_file(dir + "/swtpm.pid");
  info.pid = pid ? *pid : -1;
  if (pid && swtpm_alive(*pid, dir + "/" + kSocketName)) {
    info.status = VtpmStatus::kRunning;
  } else if (suspended) {
    info.status = VtpmStatus::kSuspended;
    info.pid = -1;
  } else {
    info.status = VtpmStatus::kDead;
    std::string tail = log_last_line(dir + "/swtpm.log");
    info.detail = "swtpm (pid " + std::to_string(info.pid) + ") is gone and its PCRs with it" +
                  (tail.empty() ? "" : "; its log: " + tail);
  }
  return info;
}

Result<void> VtpmManager::resume(VtpmInfo& info) {
  SwtpmOptions options;
  options.state_dir = info.state_dir;
  options.socket = info.state_dir + "/" + kSocketName;
  options.startup = SwtpmStartup::kState;
  options.detached = true;
  options.binary = config_.swtpm;
  CTRUST_ASSIGN_OR_RETURN(Swtpm swtpm, Swtpm::start(options));
  info.pid = swtpm.release();
  info.status = VtpmStatus::kRunning;
  return write_meta(info.state_dir, info, false);
}

Result<VtpmManager::Manufactured> VtpmManager::manufacture(bool background) {
  CTRUST_ASSIGN_OR_RETURN(std::string uuid, new_uuid());
  std::string dir = tpm_dir(uuid);
  CTRUST_TRY(make_private_dir(dir));
  // Held until the vTPM is complete, so that no other manager discards it half-made.
  auto lock = lock_file(dir + "/manufacture.lock", true);
  if (!lock) {
    std::error_code ec;
    fs::remove_all(dir, ec);
    return std::move(lock).error();
  }
  std::unique_ptr<Tpm> connection;
  LowPriority low(background);
  auto made = [&]() -> Result<VtpmInfo> {
    std::vector<std::string> args = {config_.swtpm_setup, "--tpm2",
                                     "--tpmstate",        dir,
                                     "--create-ek-cert",  "--lock-nvram",
                                     "--pcr-banks",       "sha1,sha256",
                                     "--config",          config_.root + "/swtpm_setup.conf"};
    if (config_.swtpm != "swtpm") args.insert(args.end(), {"--tpm", config_.swtpm + " socket"});
    CTRUST_TRY(run_tool(args, dir + "/setup.log"));
    SwtpmOptions options;
    options.state_dir = dir;
    options.socket = dir + "/" + kSocketName;
    options.detached = true;
    options.binary = config_.swtpm;
    CTRUST_ASSIGN_OR_RETURN(Swtpm swtpm, Swtpm::start(options));
    // Its key generation below (the attestation key, the endorsement key) at the lowest
    // priority too (it inherits this thread's); back to normal once it is made, for the
    // container it will serve.
    VtpmInfo info;
    info.uuid = uuid;
    info.state_dir = dir;
    info.tcti = swtpm.tcti();
    info.created = now_seconds();
    {
      auto tpm = Tpm::open(info.tcti);
      if (!tpm) {
        swtpm.stop();
        return std::move(tpm).error();
      }
      connection = std::make_unique<Tpm>(std::move(*tpm));
      Tpm* open = connection.get();
      auto ak = open->attestation_key(config_.ak_alg);
      if (!ak) {
        swtpm.stop();
        return std::move(ak).error().with_context("creating the vTPM's attestation key");
      }
      info.ak_name = to_hex(ak->name());
      // Kept by the connection: the container's log asks for its banks when it opens,
      // and that round trip is then off the start path.
      if (auto banks = open->active_banks(); !banks) {
        swtpm.stop();
        return std::move(banks).error().with_context("reading the vTPM's PCR banks");
      }
      auto ek = open->endorsement_key(KeyAlg::kRsa2048);
      if (!ek) {
        swtpm.stop();
        return std::move(ek).error();
      }
      info.ek_name = to_hex(ek->name());
    }
    if (auto written = write_meta(dir, info, false); !written) {
      swtpm.stop();
      return std::move(written).error();
    }
    if (background && ::setpriority(PRIO_PROCESS, swtpm.pid(), 0) != 0) {
      // Without CAP_SYS_NICE a lowered priority cannot be raised again: a vTPM that would
      // answer its container slowly is not kept.
      int err = errno;
      swtpm.stop();
      return errno_error("restoring the vTPM's CPU priority", err);
    }
    info.pid = swtpm.release();
    return info;
  }();
  if (!made) {
    std::error_code ec;
    fs::remove_all(dir, ec);
    return std::move(made).error().with_context("manufacturing a vTPM");
  }
  return Manufactured{std::move(*made), std::move(*lock), std::move(connection)};
}

Result<VtpmInfo> VtpmManager::create(const std::string& container,
                                     std::unique_ptr<Tpm>* connection) {
  if (!valid_container_id(container)) {
    return Error(Errc::kInvalidArgument,
                 "bad container id '" + container + "' (1-128 of A-Z a-z 0-9 _ . -)");
  }
  std::string link = link_path(container);
  VtpmInfo info;
  {
    std::unique_lock lock(mutex_);
    struct stat st {};
    if (::lstat(link.c_str(), &st) == 0) {
      return Error(Errc::kInvalidArgument,
                   "container " + container + " already has a vTPM; destroy it first");
    }
    if (attached_ >= config_.max) {
      return Error(Errc::kLimit, "vTPM limit reached (" + std::to_string(config_.max) +
                                     "); destroy one or raise the maximum");
    }
    ++attached_;  // reserved; released below on failure
    // A pool vTPM whose swtpm died while it waited is discarded, never handed out.
    while (!pool_.empty()) {
      VtpmInfo candidate = std::move(pool_.front());
      pool_.pop_front();
      refill_cv_.notify_one();
      auto open = connections_.find(candidate.uuid);
      std::unique_ptr<Tpm> its;
      if (open != connections_.end()) {
        its = std::move(open->second);
        connections_.erase(open);
      }
      if (swtpm_alive(candidate.pid, candidate.state_dir + "/" + kSocketName)) {
        info = std::move(candidate);
        if (connection != nullptr) *connection = std::move(its);
        break;
      }
      remove_vtpm_files(candidate.uuid, "");
    }
  }
  UniqueFd manufacture_lock;  // held until the link exists
  if (info.uuid.empty()) {
    auto made = manufacture(false);  // a container waits for it
    if (!made) {
      std::lock_guard lock(mutex_);
      --attached_;
      return std::move(made).error();
    }
    info = std::move(made->info);
    manufacture_lock = std::move(made->lock);
    if (connection != nullptr) *connection = std::move(made->connection);
  }
  // The attach: one symlink, atomic; it fails if another caller won the race for the id.
  if (::symlink(("../tpms/" + info.uuid).c_str(), link.c_str()) != 0) {
    int err = errno;
    (void)stop_swtpm(info.pid, info.state_dir + "/" + kSocketName);
    remove_vtpm_files(info.uuid, "");
    std::lock_guard lock(mutex_);
    --attached_;
    if (err == EEXIST) {
      return Error(Errc::kInvalidArgument, "container " + container + " already has a vTPM");
    }
    return errno_error("attaching the vTPM of " + container, err);
  }
  info.container = container;
  return info;
}

void VtpmManager::remove_vtpm_files(const std::string& uuid, const std::string& container) {
  std::error_code ec;
  if (!container.empty()) fs::remove(link_path(container), ec);
  fs::remove_all(tpm_dir(uuid), ec);
}

Result<VtpmInfo> VtpmManager::get(const std::string& container) {
  if (!valid_container_id(container)) {
    return Error(Errc::kInvalidArgument, "bad container id '" + container + "'");
  }
  std::error_code ec;
  fs::path target = fs::read_symlink(link_path(container), ec);
  if (ec) return Error(Errc::kNotFound, "container " + container + " has no vTPM");
  std::string uuid = target.filename().string();
  if (!valid_uuid(uuid) || target.parent_path() != "../tpms") {
    return Error(Errc::kFormat, link_path(container) + " does not point to a vTPM (" +
                                    target.string() + "); remove it by hand");
  }
  CTRUST_ASSIGN_OR_RETURN(VtpmInfo info, load_info(uuid));
  info.container = container;
  return info;
}

Result<void> VtpmManager::destroy(const std::string& container) {
  CTRUST_ASSIGN_OR_RETURN(VtpmInfo info, get(container));
  if (info.status == VtpmStatus::kRunning) {
    CTRUST_TRY(stop_swtpm(info.pid, info.state_dir + "/" + kSocketName));
  }
  if (config_.archive_on_destroy) {
    std::error_code ec;
    fs::remove(info.state_dir + "/" + kSocketName, ec);
    fs::remove(info.state_dir + "/" + kSocketName + ".ctrl", ec);
    std::string dest = config_.root + "/archive/" + container + "-" + std::to_string(now_seconds());
    if (::rename(info.state_dir.c_str(), dest.c_str()) != 0) {
      return errno_error("archiving the vTPM of " + container, errno);
    }
    fs::remove(link_path(container), ec);
  } else {
    remove_vtpm_files(info.uuid, container);
  }
  std::lock_guard lock(mutex_);
  if (attached_ > 0) --attached_;
  refill_cv_.notify_one();
  return ok_result();
}

Result<void> VtpmManager::suspend(const std::string& container) {
  CTRUST_ASSIGN_OR_RETURN(VtpmInfo info, get(container));
  if (info.status != VtpmStatus::kRunning) {
    return Error(Errc::kInvalidArgument,
                 "the vTPM of " + container + " is " + std::string(vtpm_status_name(info.status)));
  }
  {
    CTRUST_ASSIGN_OR_RETURN(Tpm tpm, Tpm::open(info.tcti));
    CTRUST_TRY(tpm.shutdown_state());
  }
  // Marked suspended before the process stops: a crash in between leaves a vTPM that
  // resumes from the state just saved, never one that claims state it lacks.
  CTRUST_TRY(write_meta(info.state_dir, info, true));
  return stop_swtpm(info.pid, info.state_dir + "/" + kSocketName);
}

Result<VtpmInfo> VtpmManager::resume(const std::string& container) {
  CTRUST_ASSIGN_OR_RETURN(VtpmInfo info, get(container));
  if (info.status != VtpmStatus::kSuspended) {
    return Error(Errc::kInvalidArgument, "the vTPM of " + container + " is " +
                                             std::string(vtpm_status_name(info.status)) +
                                             ", not suspended");
  }
  CTRUST_TRY(resume(info));
  return info;
}

std::vector<VtpmInfo> VtpmManager::list(bool include_pool) {
  std::vector<VtpmInfo> out;
  std::error_code ec;
  std::vector<fs::path> links;
  for (const auto& entry : fs::directory_iterator(config_.root + "/containers", ec)) {
    links.push_back(entry.path());
  }
  std::sort(links.begin(), links.end());
  for (const auto& link : links) {
    auto info = get(link.filename().string());
    if (info) {
      out.push_back(*info);
    } else {
      VtpmInfo broken;
      broken.container = link.filename().string();
      broken.status = VtpmStatus::kDead;
      broken.detail = info.error().message();
      out.push_back(broken);
    }
  }
  if (include_pool) {
    std::lock_guard lock(mutex_);
    for (const auto& p : pool_) out.push_back(p);
  }
  return out;
}

Result<void> VtpmManager::add_to_pool(std::unique_lock<std::mutex>& lock) {
  ++manufacturing_;
  lock.unlock();
  auto made = manufacture(true);  // nobody waits for a pool vTPM
  lock.lock();
  --manufacturing_;
  if (!made) return std::move(made).error();
  if (made->connection) connections_[made->info.uuid] = std::move(made->connection);
  pool_.push_back(std::move(made->info));  // ours now: only the pool's manager touches it
  refill_cv_.notify_all();
  return ok_result();
}

Result<void> VtpmManager::fill_pool() {
  std::unique_lock lock(mutex_);
  for (;;) {
    if (pool_.size() >= config_.pool_size) return ok_result();
    if (pool_.size() + manufacturing_ < config_.pool_size) {
      CTRUST_TRY(add_to_pool(lock));
      continue;
    }
    // The refill thread is making the rest; wait for it.
    refill_cv_.wait_for(lock, std::chrono::seconds(1));
  }
}

std::size_t VtpmManager::pool_ready() {
  std::lock_guard lock(mutex_);
  return pool_.size();
}

void VtpmManager::drain_pool() {
  std::deque<VtpmInfo> drained;
  {
    std::lock_guard lock(mutex_);
    drained.swap(pool_);
    connections_.clear();
  }
  for (const auto& info : drained) {
    (void)stop_swtpm(info.pid, info.state_dir + "/" + kSocketName);
    remove_vtpm_files(info.uuid, "");
  }
}

void VtpmManager::refill_loop() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    if (pool_.size() + manufacturing_ < config_.pool_size) {
      if (add_to_pool(lock)) continue;
      // Retry later rather than spin on a broken swtpm installation; create() still
      // works (cold) and reports the error itself.
      refill_cv_.wait_for(lock, std::chrono::seconds(5), [this] { return stopping_; });
      continue;
    }
    refill_cv_.wait(
        lock, [this] { return stopping_ || pool_.size() + manufacturing_ < config_.pool_size; });
  }
}

}  // namespace ctrust::tpm
