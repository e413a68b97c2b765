#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "agent/agent_impl.h"
#include "agent/cgroup.h"
#include "agent/image_files.h"
#include "image/manifest.h"
#include "imalog/entry.h"
#include "util/file.h"
#include "util/json.h"
#include "util/text.h"

namespace ctrust::agent {

namespace fs = std::filesystem;
using nlohmann::json;

Result<json> AgentImpl::create(const json& request, bool defer) {
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
  // Where a start's time goes, for the debug log (docs/PERFORMANCE.md, container start).
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::pair<const char*, double>> took;
  auto lap = [&, last = t0](const char* what) mutable {
    auto now = std::chrono::steady_clock::now();
    took.emplace_back(what, std::chrono::duration<double, std::milli>(now - last).count());
    last = now;
  };
  if (auto old = containers_.find(state.id)) {
    // A container of this name whose last process exited a moment ago, before exits_loop()
    // closed its books, is closed now; one that still runs keeps its name.
    if (still_running(old->number)) {
      return Error(Errc::kInvalidArgument, "container " + state.id + " is already registered");
    }
    if (auto closed = close_books(old); !closed) {
      spdlog::error("{}: closing the books of the stopped container: {}", old->id,
                    closed.error().message());
    }
  }
  CTRUST_ASSIGN_OR_RETURN(OciConfig config, read_bundle_config(state.bundle));
  auto annotations = config.annotations;
  for (const auto& [k, v] : state.annotations) annotations[k] = v;
  CTRUST_ASSIGN_OR_RETURN(ContainerSettings settings, settings_from_annotations(annotations));

  auto c = std::make_shared<Container>();
  c->number = containers_.next_number();
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
  // Its files' fs-verity digests come from the image cache where they can be vouched for.
  image::ManifestOptions mo;
  mo.threads = 0;
  std::string mountinfo;
  if (auto text = read_file("/proc/self/mountinfo", std::size_t{16} << 20)) {
    mountinfo.assign(reinterpret_cast<const char*>(text->data()), text->size());
  }
  ImageFiles files = ImageFiles::open(c->rootfs, mountinfo, &*cache_);
  mo.fsverity_of = [&files](int fd, const std::string& path, const struct stat& st) {
    return files.fsverity(fd, path, st);
  };
  auto manifest = image::manifest_from_directory(c->rootfs, mo);
  if (!manifest) return std::move(manifest).error().with_context("image digest of " + c->rootfs);
  CTRUST_ASSIGN_OR_RETURN(c->image, manifest->digest());
  lap("image digest");
  spdlog::debug("{}: image files: {} cached, {} hashed and cached, {} hashed uncached{}", c->id,
                files.hits(), files.hashed(), files.uncached(),
                files.why().empty() ? "" : " (" + files.why() + ")");
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
  std::unique_ptr<tpm::Tpm> connection;  // a pool vTPM's, still open
  CTRUST_ASSIGN_OR_RETURN(c->vtpm, vtpms_->create(c->id, &connection));
  lap("vTPM");
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
    lap("log dir");
    if (!connection) {
      CTRUST_ASSIGN_OR_RETURN(tpm::Tpm opened, tpm::Tpm::open(c->vtpm.tcti));
      connection = std::make_unique<tpm::Tpm>(std::move(opened));
    }
    lap("vTPM connection");
    // A new directory and a vTPM made for this container alone: nothing to reconcile.
    CTRUST_ASSIGN_OR_RETURN(ContainerLog log,
                            ContainerLog::create_fresh(c->log_path, std::move(*connection)));
    c->log = std::make_unique<ContainerLog>(std::move(log));
    if (defer) c->log->defer();
    lap("log open");
    std::vector<imalog::Entry> first;
    CTRUST_ASSIGN_OR_RETURN(imalog::Entry ba,
                            boot_aggregate_entry(boot_aggregate_, crypto::HashAlg::kSha1));
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
    lap("first entries");
    c->guard = std::make_unique<ExecGuard>(c->policy ? &*c->policy->compiled : nullptr, c->mode,
                                           c->log.get(), c->rootfs);
    json created = {{"event", "container-created"},
                    {"container", c->id},
                    {"image", "sha256:" + c->image.hex()},
                    {"policy", c->policy ? "sha256:" + c->policy->digest.hex() : ""},
                    {"mode", policy::mode_name(c->mode)},
                    {"vtpm_ak_name", c->vtpm.ak_name},
                    {"vtpm_ek_name", c->vtpm.ek_name},
                    {"time", c->created}};
    if (defer) {
      c->unrecorded = std::move(created);
    } else {
      CTRUST_TRY(host_record("ctrust:container-created", created));
    }
    lap("host record");
    // Registered before marking, so that the first event finds its container.
    if (!containers_.add(c)) {
      return Error(Errc::kInvalidArgument, "container " + c->id + " is already registered");
    }
    // After the runtime's create (ctrust-runtime): the container's root is its process's.
    bool after_create = request.contains("after_create") && request["after_create"] == true;
    CTRUST_TRY(mark_container(*c, config, after_create));
    register_marks(c);
    lap("marks");
    // Its cgroup v2: the exec gate tells it apart by it, and its books are closed when the
    // cgroup has no process left (a poststop hook is not needed).
    auto cgroup = container_cgroup(c->pid, c->id);
    if (cgroup) {
      c->cgroup_v2 = std::move(*cgroup);
      CTRUST_TRY(watch_exit(c->number, c->id, c->cgroup_v2.path, false));
    } else if (config_.bpf) {
      return std::move(cgroup).error().with_context("the container's cgroup v2");
    } else {
      spdlog::warn("{}: no cgroup v2 ({}): its books are closed only by a poststop hook", c->id,
                   cgroup.error().message());
    }
    if (config_.bpf) {
      if (auto g = gate(*c); !g) return std::move(g).error().with_context("the exec gate");
    }
    lap("gate");
    // The agent's bookkeeping (what `ctrust ps` and a restarted agent read): whole or not
    // at all, not synced. A reboot ends the container with the machine, and the durable
    // records of it are the logs. This keeps a start to its log appends' syncs.
    CTRUST_TRY(write_file_atomic(dir + "/container.json",
                                 as_bytes(container_json(*c).dump(2) + "\n"), 0600,
                                 Durability::kWhole));
    CTRUST_TRY(write_file_atomic(dir + "/status", as_bytes(std::string("running")), 0600,
                                 Durability::kWhole));
    lap("files");
    return ok_result();
  }();
  if (!prepared) {
    if (containers_.find(c->id) == c) (void)containers_.remove(c->id);
    unwatch_exit(c->number);
    unmark_container(*c);
    ungate(*c);
    release_cgroup(c->cgroup_v2);
    undo_vtpm();
    return std::move(prepared).error();
  }
  spdlog::info("{}: registered, mode {}, image sha256:{}, policy {}, {} marks", c->id,
               policy::mode_name(c->mode), c->image.hex(), c->policy ? c->policy->name : "none",
               c->marks.size());
  if (spdlog::should_log(spdlog::level::debug)) {
    std::string parts;
    for (const auto& [what, ms] : took) parts += fmt::format(", {} {:.2f}", what, ms);
    spdlog::debug(
        "{}: registered in {:.2f} ms{}", c->id,
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count(),
        parts);
  }
  return json{{"ok", true}, {"container", container_json(*c)}};
}

Result<void> AgentImpl::settle_start(Container& c) {
  std::lock_guard lock(c.settle_mutex);
  auto settled = [&]() -> Result<void> {
    // Under the guard's lock: in order with the decisions' own appends.
    CTRUST_TRY(c.guard->with_log(
        [&](ContainerLog*) -> Result<void> { return c.log ? c.log->settle() : ok_result(); }));
    if (c.unrecorded) {
      CTRUST_TRY(host_record("ctrust:container-created", *c.unrecorded));
      c.unrecorded.reset();
    }
    return ok_result();
  }();
  if (!settled) {
    // The container runs; what it ran is in its log, which its vTPM does not vouch for yet.
    // Every later append and every quote tries again, and fails closed while it cannot.
    spdlog::error(
        "{}: its start's log entries or host record could not be made durable and "
        "extended: {}",
        c.id, settled.error().message());
    publish({{"time", now_seconds()},
             {"kind", "error"},
             {"container", c.id},
             {"reason", "start not settled: " + settled.error().message()}});
  }
  return settled;
}

Result<json> AgentImpl::remove(const std::string& id) {
  std::lock_guard create_lock(create_mutex_);
  std::shared_ptr<Container> c = containers_.find(id);
  if (!c) return remove_orphan(id);
  return close_books(c);
}

Result<json> AgentImpl::close_books(const std::shared_ptr<Container>& c) {
  // A container that ended before its start settled (a quick /bin/true): its created
  // record before its stopped one, its log extended before its vTPM goes.
  (void)settle_start(*c);
  if (containers_.find(c->id) == c) (void)containers_.remove(c->id);
  unwatch_exit(c->number);
  unmark_container(*c);
  ungate(*c);
  release_cgroup(c->cgroup_v2);
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
  (void)write_file_atomic(dir + "/container.json", as_bytes(final.dump(2) + "\n"), 0600,
                          Durability::kWhole);
  (void)write_file_atomic(dir + "/status", as_bytes(std::string("stopped")), 0600,
                          Durability::kWhole);
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
  std::string said = status ? std::string(status->begin(), status->end()) : std::string();
  if (said == "stopped") {
    // Closed already, when its last process exited (a poststop hook comes after that).
    return json{{"ok", true}, {"container", {{"id", id}, {"stopped", true}}}};
  }
  if (said != "orphaned") {
    return Error(Errc::kNotFound, "container " + printable(id) + " is not registered");
  }
  {
    std::lock_guard lock(exits_mutex_);
    for (auto it = exit_watches_.begin(); it != exit_watches_.end(); ++it) {
      if (it->second.orphan && it->second.id == id) {
        (void)::epoll_ctl(exits_epoll_.get(), EPOLL_CTL_DEL, it->second.events.get(), nullptr);
        exit_watches_.erase(it);
        break;
      }
    }
  }
  auto recorded = host_record("ctrust:container-stopped", {{"event", "container-stopped"},
                                                           {"container", id},
                                                           {"orphaned", true},
                                                           {"time", now_seconds()}});
  (void)write_file_atomic(dir + "/status", as_bytes(std::string("stopped")), 0600,
                          Durability::kWhole);
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

Result<void> AgentImpl::watch_exit(std::uint64_t key, const std::string& id,
                                   const std::string& cgroup, bool orphan) {
  std::string path = cgroup + "/cgroup.events";
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return errno_error("opening " + path, errno);
  epoll_event ev{};
  ev.events = EPOLLPRI;
  ev.data.u64 = key;
  std::lock_guard lock(exits_mutex_);
  if (::epoll_ctl(exits_epoll_.get(), EPOLL_CTL_ADD, fd.get(), &ev) != 0) {
    return errno_error("watching " + path, errno);
  }
  // Read after it is watched: an exit from here on wakes exits_loop().
  auto populated = cgroup_populated(fd.get());
  if (!populated || !*populated) {
    (void)::epoll_ctl(exits_epoll_.get(), EPOLL_CTL_DEL, fd.get(), nullptr);
    if (!populated) return std::move(populated).error().with_context(path);
    return Error(Errc::kNotFound, "its cgroup " + cgroup + " has no process left");
  }
  exit_watches_[key] = ExitWatch{std::move(fd), id, orphan};
  return ok_result();
}

void AgentImpl::unwatch_exit(std::uint64_t key) {
  std::lock_guard lock(exits_mutex_);
  auto it = exit_watches_.find(key);
  if (it == exit_watches_.end()) return;
  (void)::epoll_ctl(exits_epoll_.get(), EPOLL_CTL_DEL, it->second.events.get(), nullptr);
  exit_watches_.erase(it);
}

bool AgentImpl::still_running(std::uint64_t key) {
  std::lock_guard lock(exits_mutex_);
  auto it = exit_watches_.find(key);
  if (it == exit_watches_.end()) return true;
  auto populated = cgroup_populated(it->second.events.get());
  return populated && *populated;  // unreadable: the cgroup was removed with its processes
}

void AgentImpl::exits_loop() {
  std::array<epoll_event, 32> ready{};
  auto swept = std::chrono::steady_clock::now();
  while (!stopping_) {
    // Once a minute: cached image files whose image was removed are let go, so their blocks
    // are freed.
    if (auto now = std::chrono::steady_clock::now(); now - swept >= std::chrono::seconds(60)) {
      swept = now;
      if (std::size_t n = cache_->drop_unlinked_images(); n != 0) {
        spdlog::debug("image cache: {} files of removed images let go", n);
      }
    }
    int n = ::epoll_wait(exits_epoll_.get(), ready.data(), static_cast<int>(ready.size()), 250);
    if (n < 0) {
      if (errno == EINTR) continue;
      spdlog::critical("watching containers' ends: {}; a poststop hook must close them now",
                       std::strerror(errno));
      return;
    }
    for (int i = 0; i < n && !stopping_; ++i) {
      std::uint64_t key = ready[static_cast<std::size_t>(i)].data.u64;
      std::string id;
      bool orphan = false;
      {
        std::lock_guard lock(exits_mutex_);
        auto it = exit_watches_.find(key);
        if (it == exit_watches_.end()) continue;
        auto populated = cgroup_populated(it->second.events.get());
        if (populated && *populated) continue;
        id = it->second.id;
        orphan = it->second.orphan;
      }
      std::lock_guard create_lock(create_mutex_);
      Result<json> closed = Error(Errc::kNotFound, "no longer registered");
      if (orphan) {
        closed = remove_orphan(id);
      } else if (auto c = containers_.by_number(key); c && c->id == id) {
        closed = close_books(c);
      }
      unwatch_exit(key);
      if (!closed && closed.error().code() != Errc::kNotFound) {
        spdlog::error("{}: its last process exited; closing its books: {}", id,
                      closed.error().message());
      }
    }
  }
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
  c->number = containers_.next_number();
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
  if (!containers_.add(c)) return Error(Errc::kInvalidArgument, "registered twice");
  auto marked = mark_container(*c, config, true);
  if (marked) {
    auto cgroup = container_cgroup(c->pid, c->id);
    if (cgroup) {
      c->cgroup_v2 = std::move(*cgroup);
      marked = watch_exit(c->number, c->id, c->cgroup_v2.path, false);
    } else if (config_.bpf) {
      marked = std::move(cgroup).error().with_context("the container's cgroup v2");
    }
  }
  if (marked && config_.bpf) {
    if (auto g = gate(*c); !g) marked = std::move(g).error().with_context("the exec gate");
  }
  if (!marked) {
    (void)containers_.remove(c->id);
    unwatch_exit(c->number);
    unmark_container(*c);
    ungate(*c);
    return std::move(marked).error();
  }
  register_marks(c);
  return c;
}

json AgentImpl::container_json(const Container& c) const {
  ExecCounters k = c.guard ? c.guard->counters() : ExecCounters{};
  return {{"id", c.id},
          {"bundle", c.bundle},
          {"pid", c.pid},
          {"mnt_ns", c.mnt_ns},
          {"rootfs", c.rootfs},
          {"cgroup", c.cgroup},
          {"gate",
           {{"on", c.gated},
            {"backend", c.gated ? backend_ : std::string("fanotify-only")},
            {"cgroup", c.cgroup_v2.path},
            {"cgroup_id", c.cgroup_v2.id}}},
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

// --- the exec gate ------------------------------------------------------------------------

Result<void> AgentImpl::gate(Container& c) {
#ifdef CTRUST_WITH_BPF
  if (!bpf_) {
    return Error(Errc::kUnsupported,
                 "the exec gate needs the BPF programs (enforcement.bpf = true)");
  }
  if (c.mode == policy::Mode::kOff) return ok_result();
  if (c.cgroup_v2.id == 0) return Error(Errc::kNotFound, "the container has no cgroup v2");
  events::GateMode mode = c.mode == policy::Mode::kEnforce ? events::GateMode::kEnforce
                          : c.mode == policy::Mode::kAudit ? events::GateMode::kAudit
                                                           : events::GateMode::kMeasure;
  // One container per cgroup: a second one there would share the first one's verdicts.
  if (auto other = containers_.gated_on(c.cgroup_v2.id, &c)) {
    return Error(Errc::kInvalidArgument, "container " + other->id + " has the same cgroup " +
                                             c.cgroup_v2.path +
                                             ": the exec gate needs one cgroup per container");
  }
  if (auto r = bpf_->gate_container(c.cgroup_v2.id, c.number, mode); !r) {
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
}

}  // namespace ctrust::agent
