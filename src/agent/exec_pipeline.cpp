#include "agent/exec_pipeline.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <thread>

#include "agent/proc_maps.h"
#include "image/manifest.h"
#include "util/file.h"
#include "util/text.h"

namespace ctrust::agent {
namespace {

using nlohmann::json;

// The fields every container event has (docs/cli/events.md).
json container_event(const Container& c, const char* kind, bool exec, const std::string& path,
                     pid_t pid, const std::string& reason) {
  json ev = {{"time", now_seconds()},
             {"container", c.id},
             {"kind", kind},
             {"exec", exec},
             {"path", path},
             {"mode", policy::mode_name(c.mode)},
             {"pid", pid}};
  if (!reason.empty()) ev["reason"] = reason;
  return ev;
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
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.is_directory(ec)) cgroup_pids(entry.path().string(), out, depth + 1);
  }
}

// Whether process `pid` maps one of `files` (device, inode) executable.
bool maps_executable(pid_t pid, const std::vector<std::pair<dev_t, ino_t>>& files) {
  auto maps = read_maps(pid);
  if (!maps) return false;  // gone
  auto listed = [&](dev_t d, std::uint64_t i) {
    return std::any_of(files.begin(), files.end(),
                       [&](const auto& f) { return f.first == d && f.second == i; });
  };
  const std::string map_files = "/proc/" + std::to_string(pid) + "/map_files/";
  for (const auto& m : *maps) {
    if (!m.exec) continue;
    if (listed(::makedev(m.major, m.minor), m.ino)) return true;
    // Before Linux 6.7 /proc/PID/maps names an overlayfs file by its real (upper or lower)
    // inode, which no descriptor the agent holds shows; the mapping's map_files link still
    // reaches the overlay file the container mapped (docs/EXEC_PATH.md, row 13).
    if (m.ino == 0) continue;  // anonymous
    struct stat st {};
    if (::stat((map_files + m.range).c_str(), &st) == 0 && listed(st.st_dev, st.st_ino)) {
      return true;
    }
  }
  return false;
}

}  // namespace

// --- ProcEnvironment ----------------------------------------------------------------------

void ProcEnvironment::kill(pid_t pid, ino_t mnt_ns) {
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd) return;  // gone
  // Checked after the pidfd is open: the pid cannot be recycled under it from here on.
  if (mnt_ns != 0 && mount_ns(pid) != mnt_ns) return;
  (void)::syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0);
}

void ProcEnvironment::resume(pid_t pid) {
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd) return;  // gone
  (void)::syscall(SYS_pidfd_send_signal, pidfd.get(), SIGCONT, nullptr, 0);
}

Result<RunningFile> ProcEnvironment::open_running(const events::ObservedEvent& e) {
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

Result<RunningFile> ProcEnvironment::open_named(const events::ObservedEvent& e) {
  if (e.filename.empty() || e.filename_truncated) {
    return Error(Errc::kNotFound, "the exec's file name is not known whole");
  }
  const bool absolute = e.filename[0] == '/';
  std::string base = "/proc/" + std::to_string(e.pid) + (absolute ? "/root" : "/cwd");
  UniqueFd dir(::open(base.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return errno_error("opening " + base, errno);
  std::string rel = e.filename;
  while (!rel.empty() && rel[0] == '/') rel.erase(0, 1);
  if (rel.empty()) return Error(Errc::kNotFound, "the exec's file name is a directory");
  open_how how{};
  how.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  long fd = ::syscall(SYS_openat2, dir.get(), rel.c_str(), &how, sizeof(how));
  if (fd < 0) return errno_error("opening " + e.filename + " in the process's root", errno);
  RunningFile f;
  f.fd.reset(static_cast<int>(fd));
  f.path = e.filename;
  return f;
}

std::vector<pid_t> ProcEnvironment::mapping_executable(
    const std::string& cgroup, const std::vector<std::pair<dev_t, ino_t>>& files) {
  std::vector<pid_t> pids;
  cgroup_pids(cgroup, pids);
  std::vector<pid_t> mapping;
  for (pid_t pid : pids) {
    if (maps_executable(pid, files)) mapping.push_back(pid);
  }
  return mapping;
}

ino_t ProcEnvironment::pid_namespace(pid_t pid) {
  struct stat st {};
  std::string path = "/proc/" + std::to_string(pid) + "/ns/pid";
  return ::stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

// --- ExecPipeline -------------------------------------------------------------------------

ExecPipeline::ExecPipeline(ExecPipelineOptions options, ContainerRegistry& containers,
                           DigestCache& cache, ExecEnvironment& environment)
    : options_(options),
      containers_(containers),
      cache_(cache),
      env_(environment),
      jobs_(options.per_container) {}

ExecPipeline::~ExecPipeline() {
  stop();
  clear();
}

void ExecPipeline::start() {
  for (unsigned i = 0; i < options_.threads; ++i) {
    workers_.emplace_back([this] { worker_loop(); });
  }
}

void ExecPipeline::stop() {
  jobs_.stop();
  for (auto& w : workers_) {
    if (w.joinable()) w.join();
  }
  workers_.clear();
}

void ExecPipeline::clear() { jobs_.clear(); }

void ExecPipeline::ask(std::unique_ptr<Question> question) {
  const auto& e = question->event();
  if (e.pid == options_.self) {
    (void)question->answer(events::Verdict::kAllow);  // our own reads: never wait on ourselves
    return;
  }
  auto id = file_id(e.fd);
  if (!id) return;  // destroyed unanswered: the fail verdict (deny)
  std::shared_ptr<Container> container = containers_.attribute(id->mnt_id, id->dev, e.pid);
  if (!container) {
    // Not a container's file (a filesystem mark also sees the host's accesses).
    ++unattributed_;
    (void)question->answer(events::Verdict::kAllow);
    return;
  }
  if (!S_ISREG(id->mode) || container->mode == policy::Mode::kOff) {
    (void)question->answer(events::Verdict::kAllow);
    return;
  }
  if (!e.exec) {
    // An open: only ELF objects (shared libraries, ld.so's input) and scripts matter.
    std::uint8_t head[4] = {};
    auto n = pread_full(e.fd, head, 0);
    if (!n) return;  // deny: unreadable
    if (image::content_kind(ByteView(head, *n)) == image::ContentKind::kData) {
      (void)question->answer(events::Verdict::kAllow);
      // Asked once per inode: the gate, not this question, stops a data file rewritten
      // into code (docs/EXEC_PATH.md, "Cost").
      if (container->gated) {
        if (auto r = env_.ignore_data_opens(e.fd); !r) spdlog::debug("{}", r.error().message());
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
  std::uint64_t owner = container->number;
  Job job{std::move(container),
          std::move(question),
          FileKey{owner, dev, id->ino},
          id->mnt_id,
          std::nullopt,
          false,
          false,
          id->ctime,
          id->size};
  const auto& je = job.question->event();
  // The cache is asked here and the event file's lease taken here, before the job waits
  // in the queue: the sooner the lease, the fewer writers can slip in before the hash.
  if (auto cached = cache_.find(job.key)) {
    job.cached = *cached;
  } else if (!je.exec && cache_.recently_broken(job.key)) {
    // A writer is at this file (its open may be this one): judged, not leased or cached.
    // Without a lease no break will say when it is written, so whether it is open for
    // writing now is asked here, and process() looks for its executable mappers at once.
    if (auto w = DigestCache::has_writers(je.fd)) {
      job.writers = *w;
    } else {
      spdlog::debug("{}: {}", je.path, w.error().message());
      job.writers = true;  // unknown: look for mappers rather than miss a writer
    }
  } else {
    auto lease = cache_.begin(je.fd);
    if (lease) {
      job.leased = *lease == DigestCache::Lease::kHeld;
      job.writers = *lease == DigestCache::Lease::kWriters;
    } else {
      spdlog::debug("no lease on {}: {}", je.path, lease.error().message());
    }
  }
  jobs_.push(owner, std::move(job));
}

void ExecPipeline::worker_loop() {
  while (auto job = jobs_.pop()) {
    process(std::move(job->second));
    jobs_.done(job->first);
  }
}

void ExecPipeline::process(Job job) {
  Container& c = *job.container;
  const auto& e = job.question->event();
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
  if (!job.cached && job.leased) {
    // No upper file: not copied up, and a lower file cannot be written in place.
    if (auto real = upper_file(c, mark, e.path)) {
      auto lease = cache_.begin(real->get());
      if (lease && *lease == DigestCache::Lease::kWriters) job.writers = true;
      if (lease && *lease == DigestCache::Lease::kHeld) upper.push_back(std::move(*real));
      if (!lease) leased = false;
    }
  }
  if (job.cached) {
    measured = Measured{*job.cached, false};
  } else if (job.size > options_.max_file_bytes) {
    measured = Error(Errc::kInvalidArgument,
                     "file of " + std::to_string(job.size) +
                         " bytes is larger than enforcement.max_file_bytes (" +
                         std::to_string(options_.max_file_bytes) + "): not hashed");
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
  // Code open for writing (this open may be the writer's, which waits for this answer):
  // a process of the container that maps it executable would run whatever is written next.
  // The lease break says so for a cached file; a file without a lease is caught here.
  if (job.writers && !e.exec && c.gated) {
    std::vector<int> fds{e.fd};
    auto real = upper_file(c, mark, e.path);
    if (real) fds.push_back(real->get());
    end_mappers(c, fds);
  }
  if (auto r = job.question->answer(d.verdict); !r) spdlog::error("{}", r.error().message());
  if (job.leased) {
    if (leased && measured) {
      std::vector<UniqueFd> fds;
      fds.push_back(job.question->take_fd());
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
      if (cache_.finish(job.key, std::move(fds), measured->digest, kernel) && c.gated &&
          d.verdict == events::Verdict::kAllow) {
        (void)vouch(c, job.key, job.ctime, true);
      }
    } else {
      cache_.abandon(e.fd);
    }
  }
  for (const auto& u : upper) {
    if (u) cache_.abandon(u.get());
  }
  bool denied = d.verdict == events::Verdict::kDeny;
  if (denied || d.violation || !d.error.empty()) {
    json ev = container_event(c, denied ? "denied" : (d.violation ? "violation" : "error"), e.exec,
                              d.path, e.pid, d.error);
    ev["judged"] = policy::verdict_name(d.judged);
    if (!d.digest.is_zero()) ev["digest"] = "sha256:" + d.digest.hex();
    if (denied) {
      spdlog::warn("{}: denied {} ({}{})", c.id, printable(d.path, 256),
                   policy::verdict_name(d.judged), d.error.empty() ? "" : ": " + d.error);
    } else {
      spdlog::warn("{}: {} {}", c.id, d.violation ? "violation at" : "error at", d.error);
    }
    env_.publish(ev);
  }
}

bool ExecPipeline::vouch(const Container& c, const FileKey& key, const struct timespec& ctime,
                         bool pinned) {
  if (!c.gated) return false;
  if (auto r = env_.vouch(c.number, key.dev, key.ino, ctime, pinned); !r) {
    spdlog::error("{}: {}", c.id, r.error().message());
    return false;
  }
  return true;
}

void ExecPipeline::violation(const Container& c, const std::string& name) {
  if (auto r = c.guard->record_violation(name); !r) {
    spdlog::error("{}: logging a violation: {}", c.id, r.error().message());
  }
}

void ExecPipeline::violation_everywhere(const std::string& name, const std::string& reason) {
  for (const auto& c : containers_.all()) {
    if (c->mode == policy::Mode::kOff) continue;
    violation(*c, name);
    json ev = {{"time", now_seconds()}, {"container", c->id},
               {"kind", "violation"},   {"mode", policy::mode_name(c->mode)},
               {"path", name},          {"reason", reason}};
    env_.publish(ev);
  }
}

Result<UniqueFd> ExecPipeline::upper_file(const Container& c, const Mark* mark,
                                          const std::string& path) {
  if (mark == nullptr || !mark->upper) return Error(Errc::kNotFound, "not on an overlay");
  std::string rel = c.guard->container_path(path);
  bool inside = mark->dest == "/" || rel.compare(0, mark->dest.size(), mark->dest) == 0;
  if (!inside) return Error(Errc::kNotFound, "outside the mount");
  if (mark->dest != "/") rel = rel.substr(mark->dest.size());
  return open_beneath(mark->upper.get(), rel.empty() ? "." : rel.substr(rel[0] == '/' ? 1 : 0),
                      O_RDONLY | O_NONBLOCK | O_NOCTTY | O_NOFOLLOW);
}

void ExecPipeline::written_while_cached(const FileKey& key, const std::vector<int>& fds) {
  std::shared_ptr<Container> c = containers_.by_number(key.owner);
  if (c && c->gated) end_mappers(*c, fds);
}

void ExecPipeline::end_mappers(Container& c, const std::vector<int>& fds) {
  if (c.mode == policy::Mode::kOff) return;
  std::vector<std::pair<dev_t, ino_t>> files;
  std::string path;
  for (int fd : fds) {
    struct stat st {};
    if (::fstat(fd, &st) == 0) files.emplace_back(st.st_dev, st.st_ino);
    if (path.empty()) path = read_link("/proc/self/fd/" + std::to_string(fd));
  }
  if (!path.empty()) path = c.guard->container_path(path);
  std::vector<pid_t> mapping = env_.mapping_executable(c.cgroup_v2.path, files);
  if (mapping.empty()) return;
  bool end_them = c.mode == policy::Mode::kEnforce;
  if (end_them) {
    for (pid_t pid : mapping) env_.kill(pid, 0);
  }
  std::string name = path.empty() ? "(unnamed)" : path;
  violation(c, name);
  std::string reason = "opened for writing while " + std::to_string(mapping.size()) +
                       " process(es) of the container had it mapped executable" +
                       (end_them ? "; they were killed before the write" : "");
  spdlog::warn("{}: {}: {}", c.id, printable(name, 256), reason);
  env_.publish(
      container_event(c, end_them ? "denied" : "violation", false, name, mapping.front(), reason));
}

// The gate saw a container's task run, or map executable, a file the agent never vouched
// for (it came through no marked mount, or changed since). In enforce the kernel has killed
// the task already; elsewhere the file ran, and is measured now if it can still be found.
void ExecPipeline::gate_report(const std::shared_ptr<Container>& c,
                               const events::ObservedEvent& e) {
  if (c->mode == policy::Mode::kOff) return;
  ++unvouched_;
  const bool exec = e.kind == events::ObservedKind::kExec;
  std::string how = exec ? std::string("exec") : std::string(map_call(e.map_syscall));
  std::string name = exec ? e.filename : e.name;
  if (e.memfd_name || e.unlinked) how += " of a file on no filesystem (memfd or deleted)";
  if (e.unresolved) how += " of memory the gate could not trace to a file";
  if (name.empty()) name = "(unnamed)";
  auto report = [&](const std::string& reason, const char* kind) {
    violation(*c, name);
    spdlog::warn("{}: pid {}: {} {}: {}", c->id, e.pid, how, printable(name, 256), reason);
    env_.publish(container_event(*c, kind, exec, name, e.pid, how + ": " + reason));
  };
  if (e.killed) {
    report(e.lsm ? "not vouched for; refused (EPERM) by the BPF-LSM gate before it ran"
                 : "not vouched for; killed by the exec gate before it ran",
           "denied");
    return;
  }
  auto file = env_.open_running(e);
  // The BPF-LSM gate reports before the call it judged completes: the agent may read the
  // report before the exec has replaced the process's program, or before the mapping
  // exists. While the process lives, it is asked again for a short while (bounded: the
  // hashing worker waits meanwhile).
  for (int i = 0; !file && e.lsm && i < 25 && env_.pid_namespace(e.pid) != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    file = env_.open_running(e);
  }
  pid_t from = e.pid;
  if (!file) {
    // Gone (a payload that forks and exits at once), or it runs something else now: any
    // other process of the container that still maps the file executable (its forked child
    // does) is measured instead, so that forking does not turn a measurement into a mere
    // record of a name.
    for (pid_t other : env_.mapping_executable(c->cgroup_v2.path, {{e.dev, e.ino}})) {
      if (other == e.pid) continue;
      events::ObservedEvent alt = e;
      alt.pid = other;
      if (auto f = env_.open_running(alt)) {
        file = std::move(f);
        from = other;
        break;
      }
    }
  }
  if (!file) {
    report("not vouched for, and gone before it could be measured (" + file.error().message() + ")",
           "violation");
    return;
  }
  if (!file->path.empty()) name = file->path;
  auto digest = crypto::digest_fd(crypto::HashAlg::kSha256, file->fd.get());
  if (!digest) {
    report("not vouched for, and unreadable: " + digest.error().message(), "violation");
    return;
  }
  ExecDecision d = c->guard->judge(name, Measured{*digest, false});
  // Keyed as the kernel reported it (e.dev is the superblock's device).
  auto id = file_id(file->fd.get());
  if (id) (void)vouch(*c, FileKey{c->number, e.dev, id->ino}, id->ctime);
  std::string source = from == e.pid
                           ? std::string("the running process")
                           : "process " + std::to_string(from) + ", which maps it too (process " +
                                 std::to_string(e.pid) + " was gone)";
  spdlog::warn("{}: pid {}: {} {} was seen only by the exec gate; measured from {} ({})", c->id,
               e.pid, how, printable(name, 256), source, policy::verdict_name(d.judged));
  json ev = container_event(*c, "unvouched", exec, name, e.pid,
                            how + " seen only by the exec gate; measured from " + source);
  ev["judged"] = policy::verdict_name(d.judged);
  ev["digest"] = "sha256:" + digest->hex();
  env_.publish(ev);
}

// An exec that succeeded, or the gate's report. In a gated container the gate has checked
// it against what fanotify vouched for; otherwise fanotify asked about it if the file came
// through one of the container's marked mounts (or a marked filesystem).
bool ExecPipeline::held_exec(const std::shared_ptr<Container>& c, const events::ObservedEvent& e) {
  if (c->mode == policy::Mode::kOff) {
    env_.resume(e.pid);
    return true;
  }
  const bool enforce = c->mode == policy::Mode::kEnforce;
  // Stopped: it cannot exit, exec again or change what it runs until it gets a signal.
  // What runs: the process's program, and, for a script (or a binfmt_misc file), the file
  // the exec named, which the kernel handed to that interpreter. Both are judged, as the
  // fanotify path judges both opens.
  struct Judged {
    std::string name;
    UniqueFd fd;
    std::optional<crypto::Digest> digest;
  };
  std::vector<Judged> files;
  std::string why;
  auto running = env_.open_running(e);
  if (!running) {
    why = "unreadable: " + running.error().message();
  } else {
    struct stat exe {};
    (void)::fstat(running->fd.get(), &exe);
    files.push_back(
        {running->path.empty() ? e.filename : running->path, std::move(running->fd), std::nullopt});
    auto named = env_.open_named(e);
    struct stat st {};
    if (named && ::fstat(named->fd.get(), &st) == 0 &&
        (st.st_dev != exe.st_dev || st.st_ino != exe.st_ino)) {
      // The script first, as the kernel opened it first.
      files.insert(files.begin(), Judged{e.filename, std::move(named->fd), std::nullopt});
    } else if (!named && !e.fileless()) {
      // A name that does not lead to a file (a /dev/fd path, a cwd gone): whether it was a
      // script is not known, so what the interpreter reads cannot be judged.
      why = "the file " + printable(e.filename, 256) +
            " the exec named cannot be opened to judge: " + named.error().message();
    }
  }
  for (auto& f : files) {
    if (!why.empty()) break;
    auto d = crypto::digest_fd(crypto::HashAlg::kSha256, f.fd.get());
    if (d) {
      f.digest = *d;
    } else {
      why = printable(f.name, 256) + " unreadable: " + d.error().message();
    }
  }
  std::string name =
      files.empty() ? (e.filename.empty() ? "(unnamed)" : e.filename) : files.front().name;
  if (!why.empty()) {
    violation(*c, name);
    spdlog::warn("{}: pid {}: exec of {} held by discovery, {}; {}", c->id, e.pid,
                 printable(name, 256), why, enforce ? "killed" : "let go");
    env_.publish(container_event(*c, enforce ? "denied" : "violation", true, name, e.pid,
                                 "held by discovery, " + why));
    if (enforce) {
      env_.kill(e.pid, 0);
      return false;
    }
    env_.resume(e.pid);
    return true;
  }
  bool go_on = true;
  json judged = json::array();
  for (auto& f : files) {
    ExecDecision d = c->guard->judge(f.name, Measured{*f.digest, false});
    judged.push_back({{"path", f.name},
                      {"judged", policy::verdict_name(d.judged)},
                      {"digest", "sha256:" + f.digest->hex()}});
    if (d.verdict != events::Verdict::kAllow) {
      go_on = false;
      name = f.name;
      break;
    }
  }
  if (go_on) {
    // The gate lets the container run the program again without asking; where it cannot
    // say so, the next exec of it is asked about again (fanotify), never let through.
    auto id = file_id(files.back().fd.get());
    if (id) (void)vouch(*c, FileKey{c->number, e.dev, id->ino}, id->ctime);
    env_.resume(e.pid);
  } else {
    env_.kill(e.pid, 0);
  }
  spdlog::info("{}: pid {}: exec of {} held by discovery until registered: {}", c->id, e.pid,
               printable(name, 256), go_on ? "went on" : "killed");
  json ev = container_event(*c, go_on ? "allowed" : "denied", true, name, e.pid,
                            "held by discovery until the container was registered");
  ev["judged"] = judged.back()["judged"];
  ev["digest"] = judged.back()["digest"];
  if (judged.size() > 1) ev["files"] = judged;
  env_.publish(ev);
  return go_on;
}

void ExecPipeline::observed(const events::ObservedEvent& e) {
  if (e.kind == events::ObservedKind::kNamespace || e.pid == options_.self) return;
  if (e.held) return;  // the agent's discovery registers the container, then held_exec()
  if (e.container != 0) {
    if (auto gc = containers_.by_number(e.container); gc && e.unvouched) gate_report(gc, e);
    return;
  }
  if (e.kind != events::ObservedKind::kExec) return;
  unwatched_exec(e);
}

void ExecPipeline::unwatched_exec(const events::ObservedEvent& e) {
  bool marked = false;
  std::shared_ptr<Container> c =
      containers_.in_mount_namespace(static_cast<ino_t>(e.mnt_ns), e.mnt_id, e.dev, &marked);
  if (!c) {
    // An exec in a pid and mount namespace of their own that no container of ours has: a
    // container started without the hook (or while the agent was down). Said once.
    if (e.mnt_ns == options_.host_mnt_ns) return;
    ino_t pidns = env_.pid_namespace(e.pid);
    if (pidns == 0 || pidns == options_.host_pid_ns) return;
    {
      std::lock_guard lock(unmanaged_mutex_);
      if (alerted_.size() > 4096) alerted_.clear();
      if (!alerted_.insert(static_cast<ino_t>(e.mnt_ns)).second) return;
    }
    spdlog::warn("unmanaged container: pid {} ran {} in mount namespace {} without the hook", e.pid,
                 printable(e.filename, 256), e.mnt_ns);
    env_.publish({{"time", now_seconds()},
                  {"kind", "unmanaged"},
                  {"pid", e.pid},
                  {"mnt_ns", e.mnt_ns},
                  {"path", e.filename}});
    return;
  }
  // A gated container's tasks are judged by the gate; this one is in its mount namespace
  // but not its cgroup (a host process entering it, such as the runtime's own helpers).
  if (c->gated) return;
  bool seen = !e.fileless() && marked;
  if (seen || c->mode == policy::Mode::kOff) return;
  ++unvouched_;
  bool end_it = c->mode == policy::Mode::kEnforce && options_.kill_unvouched;
  std::string what = e.fileless() ? "a file on no filesystem (memfd or deleted)"
                                  : "a file on a mount the agent does not watch";
  // The kernel already ran it: the log must say so, and enforce ends the process.
  if (end_it) env_.kill(e.pid, c->mnt_ns);
  std::string name = e.filename.empty() ? "(unnamed)" : e.filename;
  violation(*c, name);
  spdlog::warn("{}: pid {} ran {} ({}), unseen by the enforcement path{}", c->id, e.pid,
               printable(name, 256), what, end_it ? ": killed" : "");
  env_.publish(container_event(*c, "violation", true, name, e.pid,
                               "exec of " + what + (end_it ? "; the process was killed" : "")));
}

}  // namespace ctrust::agent
