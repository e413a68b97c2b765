#include <fcntl.h>
#include <linux/openat2.h>
#include <spdlog/fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <filesystem>

#include "agent/agent_impl.h"
#include "agent/cgroup.h"
#include "agent/mountinfo.h"
#include "imalog/entry.h"
#include "util/file.h"
#include "util/json.h"

namespace ctrust::agent {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// The cgroup v2 a container registered before a restart was in (its container.json), or "".
// Written by the agent itself into its own state directory; checked anyway, since it names
// a file the agent opens.
std::string orphan_cgroup(const std::string& dir) {
  auto bytes = read_file(dir + "/container.json", kMaxOciDocument);
  if (!bytes) return {};
  auto doc = parse_json_strict(
      std::string_view(reinterpret_cast<const char*>(bytes->data()), bytes->size()), 16);
  if (!doc || !doc->is_object()) return {};
  auto gate = doc->find("gate");
  if (gate == doc->end() || !gate->is_object()) return {};
  auto path = gate->find("cgroup");
  if (path == gate->end() || !path->is_string()) return {};
  std::string p = path->get<std::string>();
  if (!p.starts_with("/") || p.find("/..") != std::string::npos) return {};
  return p;
}

}  // namespace

Result<void> make_dir(const std::string& path) {
  if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
    return errno_error("creating " + path, errno);
  }
  if (::chmod(path.c_str(), 0700) != 0) return errno_error("chmod 0700 " + path, errno);
  return ok_result();
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

// A bundle's config.json, strictly parsed (untrusted: the container's author writes it).
Result<OciConfig> read_bundle_config(const std::string& bundle) {
  CTRUST_ASSIGN_OR_RETURN(Bytes bytes, read_file(bundle + "/config.json", kMaxOciDocument));
  auto config =
      parse_oci_config(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
  if (!config) return std::move(config).error().with_context(bundle + "/config.json");
  return config;
}

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

Result<void> AgentImpl::init(const std::string& config_bytes) {
  spdlog::info("ctrustd starting: state {}, socket {}", config_.state_dir, config_.socket);
  CTRUST_TRY(make_dir(config_.state_dir));
  CTRUST_TRY(make_dir(config_.containers_dir()));
  CTRUST_TRY(make_dir(config_.host_dir()));
  wake_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake_) return errno_error("eventfd", errno);

  // Every cached file holds a descriptor: what does not fit under RLIMIT_NOFILE (with room
  // for the containers, their logs and connections) is not cached, said once here.
  std::size_t image_entries = config_.image_cache_entries;
  if (rlimit nofile{};
      ::getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY) {
    std::size_t room =
        nofile.rlim_cur > config_.cache_entries + 2048
            ? static_cast<std::size_t>(nofile.rlim_cur) - config_.cache_entries - 2048
            : 0;
    if (room < image_entries) {
      spdlog::warn(
          "enforcement.image_cache_entries = {} does not fit the descriptor limit ({} with "
          "cache_entries = {}): {} image files are cached (raise LimitNOFILE)",
          image_entries, nofile.rlim_cur, config_.cache_entries, room);
      image_entries = room;
    }
  }
  CTRUST_ASSIGN_OR_RETURN(DigestCache cache,
                          DigestCache::create(config_.cache_entries, image_entries));
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
  cache_->set_break_hook([this](const FileKey& key, const std::vector<int>& fds) {
    exec_->written_while_cached(key, fds);
  });
#ifdef CTRUST_WITH_BPF
  cache_->set_erase_hook([this](const FileKey& key) {
    if (!bpf_) return;
    if (auto r = bpf_->gate_unpin(key.owner, key.dev, key.ino); !r) {
      spdlog::error("{}", r.error().message());
    }
  });
#endif
  {
    struct stat st {};
    if (::stat("/proc/self/ns/mnt", &st) == 0) host_mnt_ns_ = st.st_ino;
    if (::stat("/proc/self/ns/pid", &st) == 0) host_pid_ns_ = st.st_ino;
  }
  ExecPipelineOptions exec;
  exec.threads = config_.hash_threads;
  exec.per_container = config_.hash_threads_per_container != 0
                           ? config_.hash_threads_per_container
                           : std::max(1U, config_.hash_threads - 1);
  exec.max_file_bytes = config_.max_file_bytes;
  exec.kill_unvouched = config_.kill_unvouched;
  exec.self = ::getpid();
  exec.host_mnt_ns = host_mnt_ns_;
  exec.host_pid_ns = host_pid_ns_;
  exec_ = std::make_unique<ExecPipeline>(exec, containers_, *cache_,
                                         static_cast<ExecEnvironment&>(*this));
  exec_->start();
  // The event thread next: everything after this may touch marked files.
  fanotify_thread_ = std::thread([this] { fanotify_loop(); });
  teardown_thread_ = std::thread([this] { teardown_loop(); });
  exits_epoll_ = UniqueFd(::epoll_create1(EPOLL_CLOEXEC));
  if (!exits_epoll_) return errno_error("epoll_create1", errno);

  CTRUST_TRY(open_host_tpm());
  CTRUST_TRY(open_host_log());
  tpm::VtpmConfig vc;
  vc.root = config_.vtpm_root();
  vc.max = config_.vtpm_max;
  vc.pool_size = config_.vtpm_pool;
  vc.archive_on_destroy = config_.vtpm_archive;
  CTRUST_ASSIGN_OR_RETURN(vtpms_, tpm::VtpmManager::open(vc));
  CTRUST_TRY(load_policies());
#ifdef CTRUST_WITH_BPF
  if (config_.bpf) {
    // The backend (config.h, docs/EXEC_PATH.md "Backends"): BPF-LSM where asked for and
    // possible; never nothing.
    events::BpfObserverOptions observing;
    if (!config_.discover.empty()) {
      // The host's mount namespace: PID 1's (the agent may run in a pod of its own), or the
      // agent's own where PID 1 belongs to an outer user namespace (EACCES).
      struct stat st {};
      if (::stat("/proc/1/ns/mnt", &st) != 0) {
        int err = errno;
        if (err != EACCES || ::stat("/proc/self/ns/mnt", &st) != 0) {
          return errno_error("containers.discover: the host's mount namespace (/proc/1/ns/mnt)",
                             err);
        }
        spdlog::info(
            "discovery: PID 1's mount namespace is out of reach; the agent's own is taken as "
            "the host's");
      }
      observing.host_mnt_ns = st.st_ino;
    }
    if (config_.backend != "fanotify") {
      std::string problem;
      observing.lsm = true;
      auto lsm = events::BpfObserver::open(observing);
      if (lsm) {
        bpf_ = std::move(*lsm);
      } else {
        problem = lsm.error().message();
      }
      if (!bpf_ && config_.backend == "bpf-lsm") {
        return Error(Errc::kUnsupported, "enforcement.backend = \"bpf-lsm\": " + problem +
                                             " (set backend = \"auto\" to fall back to fanotify)");
      }
      if (!bpf_) spdlog::info("BPF-LSM is not available: {}", problem);
    }
    if (!bpf_) {
      observing.lsm = false;
      auto observer = events::BpfObserver::open(observing);
      if (!observer) {
        return std::move(observer).error().with_context(
            "the BPF observers (set enforcement.bpf = false to run without them)");
      }
      bpf_ = std::move(*observer);
    }
    backend_ = observing.lsm ? "bpf-lsm" : "fanotify";
    if (!config_.discover.empty()) {
      CTRUST_ASSIGN_OR_RETURN(std::string mount, cgroup2_mount());
      for (const auto& d : config_.discover) {
        struct stat st {};
        std::string dir = mount + (d == "/" ? std::string() : d);
        std::string what = "containers.discover: cgroup ";
        what += d;
        what += " (" + dir + ")";
        if (::stat(dir.c_str(), &st) != 0) return errno_error(what, errno);
        if (!S_ISDIR(st.st_mode)) return Error(Errc::kInvalidArgument, what + " is no directory");
        CTRUST_TRY(bpf_->discover_root(st.st_ino));
        spdlog::info("discovery: new cgroups below {} are containers (runtime state from {})", d,
                     fmt::format("{}", fmt::join(config_.runtime_roots, ", ")));
      }
      discovery_thread_ = std::thread([this] { discovery_loop(); });
    }
    bpf_thread_ = std::thread([this] { bpf_loop(); });
  } else {
    backend_ = "fanotify-only";
    spdlog::warn(
        "enforcement.bpf = false: no exec gate; what bypasses fanotify is noticed late or not "
        "at all (docs/EXEC_PATH.md)");
  }
  spdlog::info("enforcement backend: {}", backend_);
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
                                as_bytes(container_json(**adopted).dump(2) + "\n"), 0600,
                                Durability::kWhole);
        continue;
      }
      spdlog::warn(
          "container {} was registered when the agent stopped and cannot be watched again "
          "({}); its measurements from then on are not vouched for",
          id, adopted.error().message());
      record_gap(id, entry.path().string() + "/measurements.bin");
      (void)write_file_atomic(status, as_bytes(std::string("orphaned")), 0600, Durability::kWhole);
      // Its books are closed when its cgroup empties (now, if it has already), or by a
      // poststop hook where the cgroup is not known.
      std::string cgroup = orphan_cgroup(entry.path().string());
      if (cgroup.empty()) continue;
      if (auto w = watch_exit(containers_.next_number(), id, cgroup, true); !w) {
        std::lock_guard create_lock(create_mutex_);
        if (auto r = remove_orphan(id); !r) spdlog::error("{}: {}", id, r.error().message());
      }
    }
  }
  exits_thread_ = std::thread([this] { exits_loop(); });
  if (!config_.api_listen.empty()) CTRUST_TRY(start_attestation_api());
  spdlog::info("ctrustd ready");
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
  if (exec_) exec_->stop();
  if (fanotify_thread_.joinable()) fanotify_thread_.join();
  if (bpf_thread_.joinable()) bpf_thread_.join();
  held_cv_.notify_all();
  if (discovery_thread_.joinable()) discovery_thread_.join();
  {
    // Held, never judged: they do not run their first instruction unjudged.
    std::lock_guard lock(held_mutex_);
    for (const auto& e : held_) {
      spdlog::warn("discovery: pid {} was held when the agent stopped: killed", e.pid);
      kill(e.pid, 0);
    }
    held_.clear();
  }
  if (exits_thread_.joinable()) exits_thread_.join();
  teardown_cv_.notify_all();
  if (teardown_thread_.joinable()) teardown_thread_.join();  // finishes what is queued
  // Queued events are answered with the fail verdict as their PendingEvents die; closing
  // the group then releases anything else pending.
  if (exec_) exec_->clear();
  monitor_.reset();
  // Containers stay registered on disk (status running): the next agent records the gap.
  containers_.clear();
  exec_.reset();
  cache_.reset();
  vtpms_.reset();
  spdlog::info("ctrustd stopped");
}

void AgentImpl::stop() {
  stopping_ = true;
  std::uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof(one));
}

Result<std::unique_ptr<Agent>> Agent::start(const AgentConfig& config,
                                            const std::string& config_bytes) {
  auto agent = std::make_unique<AgentImpl>(config);
  CTRUST_TRY(agent->init(config_bytes));
  return std::unique_ptr<Agent>(std::move(agent));
}

}  // namespace ctrust::agent
