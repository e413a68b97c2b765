#include "events/bpf_observer.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sys/mount.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <exception>
#include <limits>
#include <mutex>

#include "crypto/digest.h"
#include "observer.skel.h"
#include "observer_events.h"
#include "util/unique_handle.h"

namespace ctrust::events {
namespace {

// The layout the BPF side writes; a change there without a version bump fails here.
static_assert(sizeof(ctrust_bpf_header) == 16);
static_assert(sizeof(ctrust_bpf_exec_event) == 352);
static_assert(sizeof(ctrust_bpf_namespace_event) == 56);
static_assert(sizeof(ctrust_bpf_map_event) == 136);
static_assert(sizeof(ctrust_gate_key) == 24 && sizeof(ctrust_gate_value) == 16);

constexpr const char* kObjectName = "observer.bpf.o";
constexpr const char* kTracefs = "/sys/kernel/tracing";
// libbpf prefers the tracefs under debugfs when that path exists.
constexpr const char* kDebugfsTracing = "/sys/kernel/debug/tracing";
constexpr std::size_t kMaxLibbpfMessage = 300;

using Skeleton = UniquePtr<ctrust_observer, ctrust_observer__destroy>;
using RingBuffer = UniquePtr<ring_buffer, ring_buffer__free>;

// libbpf reports details (verifier messages, missing kernel features) only through its
// process-wide print callback. While open() runs, the first warning on the opening thread
// is kept for the Error; everything from other threads goes to the previous callback.
std::mutex g_open_mutex;
libbpf_print_fn_t g_previous_print = nullptr;
thread_local std::string* t_first_warning = nullptr;

__attribute__((format(printf, 2, 0))) int capture_print(enum libbpf_print_level level,
                                                        const char* format, va_list args) {
  if (t_first_warning == nullptr) {
    return g_previous_print != nullptr ? g_previous_print(level, format, args) : 0;
  }
  if (level != LIBBPF_WARN || !t_first_warning->empty()) return 0;
  char buf[kMaxLibbpfMessage];
  int n = std::vsnprintf(buf, sizeof(buf), format, args);
  if (n > 0) {
    std::string text(buf, std::min(static_cast<std::size_t>(n), sizeof(buf) - 1));
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    // Said whenever setrlimit is not allowed, and beside the point on kernels that charge
    // BPF memory to the cgroup (5.11+): the next warning says what actually failed.
    if (text.find("RLIMIT_MEMLOCK") == std::string::npos) *t_first_warning = std::move(text);
  }
  return 0;
}

class LibbpfMessages {
 public:
  LibbpfMessages() : lock_(g_open_mutex) {
    g_previous_print = libbpf_set_print(capture_print);
    t_first_warning = &first_;
  }
  ~LibbpfMessages() {
    t_first_warning = nullptr;
    libbpf_set_print(g_previous_print);
  }
  LibbpfMessages(const LibbpfMessages&) = delete;
  LibbpfMessages& operator=(const LibbpfMessages&) = delete;

  // " (libbpf: ...)" or nothing.
  std::string detail() const { return first_.empty() ? std::string() : " (" + first_ + ")"; }

 private:
  std::lock_guard<std::mutex> lock_;
  std::string first_;
};

Error bpf_error(const std::string& what, int err, const LibbpfMessages& messages) {
  if (err == EPERM || err == EACCES) {
    return Error(
        Errc::kIo,
        what + ": permission denied: needs root, or CAP_BPF and CAP_PERFMON" + messages.detail(),
        err);
  }
  return Error(Errc::kIo, what + ": " + std::strerror(err) + messages.detail(), err);
}

bool exists(const char* path) { return ::access(path, F_OK) == 0; }

// The syscall tracepoints are attached through their ids under tracefs.
Result<void> ensure_tracefs(bool may_mount) {
  if (exists(kDebugfsTracing) || exists("/sys/kernel/tracing/events")) return ok_result();
  if (!may_mount) {
    return Error(
        Errc::kUnsupported,
        "the syscall tracepoints need tracefs: mount -t tracefs nodev /sys/kernel/tracing");
  }
  if (::mount("tracefs", kTracefs, "tracefs", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0 &&
      errno != EBUSY) {
    int err = errno;
    return errno_error(std::string("mounting tracefs at ") + kTracefs +
                           " (the syscall tracepoints need it" +
                           (err == EPERM ? "; run as root or mount it beforehand)" : ")"),
                       err);
  }
  return ok_result();
}

Result<void> check_ring_size(std::uint32_t bytes) {
  long page = ::sysconf(_SC_PAGESIZE);
  bool power_of_two = bytes != 0 && (bytes & (bytes - 1)) == 0;
  if (!power_of_two || page <= 0 || bytes % static_cast<std::uint32_t>(page) != 0) {
    return Error(Errc::kInvalidArgument, "ring_buffer_bytes " + std::to_string(bytes) +
                                             " is not a power of two multiple of the page size");
  }
  return ok_result();
}

std::uint32_t to_kernel_dev(dev_t dev) {
  return static_cast<std::uint32_t>((::major(dev) << 20) | (::minor(dev) & 0xfffffU));
}

dev_t userspace_dev(std::uint32_t kernel_dev) {
  // The kernel's internal dev_t is major << 20 | minor (include/linux/kdev_t.h).
  return makedev(kernel_dev >> 20, kernel_dev & 0xfffffU);
}

template <typename T>
Result<T> read_record(ByteView record, const ctrust_bpf_header& header, const char* what) {
  if (header.size != sizeof(T) || record.size() != sizeof(T)) {
    return Error(Errc::kFormat, std::string(what) + " record of " + std::to_string(record.size()) +
                                    " bytes (header says " + std::to_string(header.size) +
                                    "), expected " + std::to_string(sizeof(T)));
  }
  T raw;
  std::memcpy(&raw, record.data(), sizeof(T));
  return raw;
}

Result<ObservedEvent> decode_exec(ByteView record, const ctrust_bpf_header& header) {
  CTRUST_ASSIGN_OR_RETURN(auto raw, read_record<ctrust_bpf_exec_event>(record, header, "exec"));
  ObservedEvent e;
  e.kind = ObservedKind::kExec;
  e.ktime_ns = header.ktime_ns;
  e.pid = static_cast<pid_t>(raw.pid);
  e.tid = static_cast<pid_t>(raw.tid);
  e.ppid = static_cast<pid_t>(raw.ppid);
  e.mnt_ns = raw.mnt_ns;
  e.cgroup_id = raw.cgroup_id;
  e.dev = userspace_dev(raw.dev);
  e.ino = raw.ino;
  e.mnt_id = raw.mnt_id;
  e.mnt_id_unique = raw.mnt_id_unique;
  e.sb_magic = raw.sb_magic;
  e.nlink = raw.nlink;
  // Never past the buffer, the stated length or the first NUL, whichever comes first.
  std::size_t len = ::strnlen(raw.filename, sizeof(raw.filename));
  len = std::min<std::size_t>(len, raw.filename_len);
  e.filename.assign(raw.filename, len);
  e.filename_truncated = (raw.flags & CTRUST_BPF_EXEC_FILENAME_TRUNCATED) != 0;
  e.memfd_name = (raw.flags & CTRUST_BPF_EXEC_MEMFD_NAME) != 0;
  e.unlinked = (raw.flags & CTRUST_BPF_EXEC_UNLINKED) != 0;
  e.internal_mount = (raw.flags & CTRUST_BPF_EXEC_INTERNAL_MOUNT) != 0;
  e.read_failed = (raw.flags & CTRUST_BPF_EXEC_READ_FAILED) != 0;
  e.container = raw.container;
  e.unvouched = (raw.flags & CTRUST_BPF_EXEC_UNVOUCHED) != 0;
  e.killed = (raw.flags & CTRUST_BPF_EXEC_KILLED) != 0;
  e.lsm = (raw.flags & CTRUST_BPF_EXEC_LSM) != 0;
  e.held = (raw.flags & CTRUST_BPF_EXEC_HELD) != 0;
  if (e.held && (e.unvouched || e.container != 0)) {
    return Error(Errc::kFormat, "exec record held but in a gated container");
  }
  if (e.killed && !e.unvouched) return Error(Errc::kFormat, "exec record killed but vouched");
  return e;
}

Result<ObservedEvent> decode_map(ByteView record, const ctrust_bpf_header& header) {
  CTRUST_ASSIGN_OR_RETURN(auto raw, read_record<ctrust_bpf_map_event>(record, header, "map"));
  ObservedEvent e;
  e.kind = ObservedKind::kMap;
  switch (raw.syscall) {
    case CTRUST_BPF_MAP_MMAP:
      e.map_syscall = MapSyscall::kMmap;
      break;
    case CTRUST_BPF_MAP_MPROTECT:
      e.map_syscall = MapSyscall::kMprotect;
      break;
    case CTRUST_BPF_MAP_SHMAT:
      e.map_syscall = MapSyscall::kShmat;
      break;
    default:
      return Error(Errc::kFormat, "map record with unknown syscall " + std::to_string(raw.syscall));
  }
  e.ktime_ns = header.ktime_ns;
  e.pid = static_cast<pid_t>(raw.pid);
  e.tid = static_cast<pid_t>(raw.tid);
  e.cgroup_id = raw.cgroup_id;
  e.container = raw.container;
  e.dev = userspace_dev(raw.dev);
  e.ino = raw.ino;
  e.nlink = raw.nlink;
  e.map_fd = raw.fd;
  e.name.assign(raw.name, ::strnlen(raw.name, sizeof(raw.name)));
  e.unvouched = true;
  e.killed = (raw.flags & CTRUST_BPF_MAP_KILLED) != 0;
  e.lsm = (raw.flags & CTRUST_BPF_MAP_LSM) != 0;
  e.unresolved = (raw.flags & CTRUST_BPF_MAP_UNRESOLVED) != 0;
  e.memfd_name = (raw.flags & CTRUST_BPF_MAP_MEMFD_NAME) != 0;
  e.unlinked = (raw.flags & CTRUST_BPF_MAP_UNLINKED) != 0;
  return e;
}

Result<ObservedEvent> decode_namespace(ByteView record, const ctrust_bpf_header& header) {
  CTRUST_ASSIGN_OR_RETURN(auto raw,
                          read_record<ctrust_bpf_namespace_event>(record, header, "namespace"));
  ObservedEvent e;
  e.kind = ObservedKind::kNamespace;
  switch (raw.syscall) {
    case CTRUST_BPF_NS_UNSHARE:
      e.syscall = NamespaceSyscall::kUnshare;
      break;
    case CTRUST_BPF_NS_SETNS:
      e.syscall = NamespaceSyscall::kSetns;
      break;
    case CTRUST_BPF_NS_CLONE:
      e.syscall = NamespaceSyscall::kClone;
      break;
    case CTRUST_BPF_NS_CLONE3:
      e.syscall = NamespaceSyscall::kClone3;
      break;
    default:
      return Error(Errc::kFormat,
                   "namespace record with unknown syscall " + std::to_string(raw.syscall));
  }
  e.ktime_ns = header.ktime_ns;
  e.pid = static_cast<pid_t>(raw.pid);
  e.tid = static_cast<pid_t>(raw.tid);
  e.mnt_ns = raw.mnt_ns;
  e.cgroup_id = raw.cgroup_id;
  e.ns_flags = raw.flags;
  e.setns_fd = raw.setns_fd;
  e.flags_unknown = raw.read_failed != 0;
  return e;
}

class LoadedObserver final : public BpfObserver {
 public:
  static Result<std::unique_ptr<BpfObserver>> open(const BpfObserverOptions& options);

  Result<std::size_t> poll(int timeout_ms, const Callback& on_event) override;
  int fd() const override { return ring_buffer__epoll_fd(ring_.get()); }
  std::uint64_t lost() const override;
  std::uint64_t malformed() const override { return malformed_.load(); }
  std::vector<std::pair<std::string, std::string>> object_digests() const override {
    return digests_;
  }
  Result<void> gate_container(std::uint64_t cgroup_id, std::uint64_t number,
                              GateMode mode) override;
  Result<void> gate_release(std::uint64_t cgroup_id, std::uint64_t number) override;
  Result<void> gate_allow(std::uint64_t number, dev_t dev, std::uint64_t ino,
                          const struct timespec& ctime, bool pinned) override;
  Result<void> gate_unpin(std::uint64_t number, dev_t dev, std::uint64_t ino) override;
  std::size_t gate_entries() const override;
  Result<void> discover_root(std::uint64_t cgroup_id) override;
  Result<void> discover_skip(std::uint64_t cgroup_id) override;
  // Every key of gate_allowed (a walk of the map).
  std::vector<ctrust_gate_key> gate_keys() const;

 private:
  LoadedObserver() = default;
  static int on_record(void* ctx, void* data, std::size_t size);

  Skeleton skel_;
  RingBuffer ring_;  // after skel_: freed before the maps it reads
  std::vector<std::pair<std::string, std::string>> digests_;
  // Set during poll() only.
  const Callback* callback_ = nullptr;
  std::size_t delivered_ = 0;
  std::exception_ptr exception_;
  std::atomic<std::uint64_t> malformed_{0};  // read from any thread
};

Result<std::unique_ptr<BpfObserver>> LoadedObserver::open(const BpfObserverOptions& options) {
  if (!options.exec && !options.namespaces) {
    return Error(Errc::kInvalidArgument, "a BPF observer must watch execs, namespaces or both");
  }
  if (options.lsm && !options.exec) {
    return Error(Errc::kInvalidArgument, "the BPF-LSM gate needs the exec observer");
  }
  CTRUST_TRY(check_ring_size(options.ring_buffer_bytes));

  std::unique_ptr<LoadedObserver> self(new LoadedObserver());
  // What is loaded is what the skeleton embeds: hash exactly those bytes.
  std::size_t object_size = 0;
  const void* object = ctrust_observer__elf_bytes(&object_size);
  CTRUST_ASSIGN_OR_RETURN(
      auto digest,
      crypto::digest_bytes(crypto::HashAlg::kSha256,
                           ByteView(static_cast<const std::uint8_t*>(object), object_size)));
  self->digests_.emplace_back(kObjectName, "sha256:" + digest.hex());

  LibbpfMessages messages;
  self->skel_.reset(ctrust_observer__open());
  if (!self->skel_) return bpf_error("opening the BPF observer object", errno, messages);
  ctrust_observer* skel = self->skel_.get();

  int err = bpf_map__set_max_entries(skel->maps.events, options.ring_buffer_bytes);
  if (err != 0) return bpf_error("sizing the BPF ring buffer", -err, messages);
  struct Program {
    bpf_program* prog;
    bpf_link** link;
    bool wanted;
  };
  const Program programs[] = {
      {skel->progs.ctrust_exec, &skel->links.ctrust_exec, options.exec},
      {skel->progs.ctrust_unshare, &skel->links.ctrust_unshare, options.namespaces},
      {skel->progs.ctrust_setns, &skel->links.ctrust_setns, options.namespaces},
      {skel->progs.ctrust_clone, &skel->links.ctrust_clone, options.namespaces},
      {skel->progs.ctrust_clone3, &skel->links.ctrust_clone3, options.namespaces},
      {skel->progs.ctrust_gate_mmap, &skel->links.ctrust_gate_mmap, options.gate},
      {skel->progs.ctrust_gate_mprotect, &skel->links.ctrust_gate_mprotect, options.gate},
      {skel->progs.ctrust_gate_pkey_mprotect, &skel->links.ctrust_gate_pkey_mprotect, options.gate},
      {skel->progs.ctrust_gate_shmat, &skel->links.ctrust_gate_shmat, options.gate},
      {skel->progs.ctrust_lsm_bprm, &skel->links.ctrust_lsm_bprm, options.lsm},
      {skel->progs.ctrust_lsm_mmap, &skel->links.ctrust_lsm_mmap, options.lsm},
      {skel->progs.ctrust_lsm_mprotect, &skel->links.ctrust_lsm_mprotect, options.lsm},
      {skel->progs.ctrust_lsm_shmat, &skel->links.ctrust_lsm_shmat, options.lsm},
  };
  skel->rodata->lsm_gate = options.lsm ? 1 : 0;
  if (options.host_mnt_ns > std::numeric_limits<std::uint32_t>::max()) {
    return Error(Errc::kInvalidArgument, "a mount namespace inode number over 32 bits");
  }
  skel->rodata->host_mnt_ns = static_cast<std::uint32_t>(options.host_mnt_ns);
  for (const auto& p : programs) {
    err = bpf_program__set_autoload(p.prog, p.wanted);
    if (err != 0) return bpf_error("selecting the BPF programs", -err, messages);
  }

  err = ctrust_observer__load(skel);
  if (err != 0 && options.lsm) {
    // Root with every capability still gets EPERM where the kernel does not run BPF LSM
    // programs (bpf not among the active LSMs, or lockdown).
    return bpf_error("loading the BPF-LSM programs (does this kernel run BPF LSM programs? " +
                         std::string(lsm_available() ? "\"bpf\" is among its active LSMs"
                                                     : "\"bpf\" is not among its active LSMs") +
                         ")",
                     -err, messages);
  }
  if (err != 0) return bpf_error("loading the BPF observer programs", -err, messages);

  // Only now: without privileges, the load above has already said so more clearly.
  if (options.namespaces || options.gate) CTRUST_TRY(ensure_tracefs(options.mount_tracefs));
  // One program at a time, so that the error names the hook that failed.
  for (const auto& p : programs) {
    if (!p.wanted) continue;
    *p.link = bpf_program__attach(p.prog);
    if (*p.link == nullptr) {
      int attach_err = errno;
      std::string section = bpf_program__section_name(p.prog);
      std::string hint = attach_err == ENOENT && section.starts_with("tracepoint/syscalls/")
                             ? " (no syscall tracepoints: a kernel without CONFIG_FTRACE_SYSCALLS?)"
                             : "";
      std::string what = "attaching BPF program ";
      what += section;
      what += hint;
      return bpf_error(what, attach_err, messages);
    }
  }

  self->ring_.reset(ring_buffer__new(bpf_map__fd(skel->maps.events), &LoadedObserver::on_record,
                                     self.get(), nullptr));
  if (!self->ring_) return bpf_error("opening the BPF ring buffer", errno, messages);
  return std::unique_ptr<BpfObserver>(std::move(self));
}

int LoadedObserver::on_record(void* ctx, void* data, std::size_t size) {
  auto* self = static_cast<LoadedObserver*>(ctx);
  auto decoded = decode_observer_record(ByteView(static_cast<const std::uint8_t*>(data), size));
  if (!decoded.ok()) {
    ++self->malformed_;
    return 0;
  }
  // No exception may unwind through libbpf's C frames: keep it, stop the drain.
  try {
    (*self->callback_)(*decoded);
  } catch (...) {
    self->exception_ = std::current_exception();
    return -ECANCELED;
  }
  ++self->delivered_;
  return 0;
}

Result<std::size_t> LoadedObserver::poll(int timeout_ms, const Callback& on_event) {
  callback_ = &on_event;
  delivered_ = 0;
  exception_ = nullptr;
  int n = ring_buffer__poll(ring_.get(), timeout_ms);
  callback_ = nullptr;
  if (exception_) std::rethrow_exception(std::exchange(exception_, nullptr));
  if (n < 0 && n != -EINTR) return errno_error("polling the BPF ring buffer", -n);
  return delivered_;
}

Result<void> LoadedObserver::gate_container(std::uint64_t cgroup_id, std::uint64_t number,
                                            GateMode mode) {
  if (number == 0) return Error(Errc::kInvalidArgument, "gate container number 0");
  ctrust_gate_container value{};
  value.number = number;
  value.mode = static_cast<std::uint32_t>(mode);
  if (bpf_map__update_elem(skel_.get()->maps.gate_containers, &cgroup_id, sizeof(cgroup_id), &value,
                           sizeof(value), BPF_ANY) != 0) {
    return errno_error("adding cgroup " + std::to_string(cgroup_id) + " to the exec gate", errno);
  }
  return ok_result();
}

Result<void> LoadedObserver::discover_root(std::uint64_t cgroup_id) {
  std::uint32_t one = 1;
  if (bpf_map__update_elem(skel_.get()->maps.discover_roots, &cgroup_id, sizeof(cgroup_id), &one,
                           sizeof(one), BPF_ANY) != 0) {
    return errno_error("adding cgroup " + std::to_string(cgroup_id) + " as a discovery root",
                       errno);
  }
  return ok_result();
}

Result<void> LoadedObserver::discover_skip(std::uint64_t cgroup_id) {
  std::uint32_t one = 1;
  if (bpf_map__update_elem(skel_.get()->maps.discover_skip, &cgroup_id, sizeof(cgroup_id), &one,
                           sizeof(one), BPF_ANY) != 0) {
    return errno_error("skipping cgroup " + std::to_string(cgroup_id) + " in discovery", errno);
  }
  return ok_result();
}

Result<void> LoadedObserver::gate_release(std::uint64_t cgroup_id, std::uint64_t number) {
  bpf_map* allowed = skel_.get()->maps.gate_allowed;
  (void)bpf_map__delete_elem(skel_.get()->maps.gate_containers, &cgroup_id, sizeof(cgroup_id), 0);
  // Collect first: deleting while walking may restart the walk.
  std::vector<ctrust_gate_key> mine;
  for (const auto& k : gate_keys()) {
    if (k.container == number) mine.push_back(k);
  }
  for (const auto& k : mine) (void)bpf_map__delete_elem(allowed, &k, sizeof(k), 0);
  return ok_result();
}

Result<void> LoadedObserver::gate_allow(std::uint64_t number, dev_t dev, std::uint64_t ino,
                                        const struct timespec& ctime, bool pinned) {
  ctrust_gate_key key{};
  key.container = number;
  key.ino = ino;
  key.dev = to_kernel_dev(dev);
  ctrust_gate_value value{};
  value.ctime_sec = ctime.tv_sec;
  value.ctime_nsec = static_cast<std::uint32_t>(ctime.tv_nsec);
  value.flags = pinned ? static_cast<std::uint32_t>(CTRUST_GATE_PINNED) : 0U;
  if (bpf_map__update_elem(skel_.get()->maps.gate_allowed, &key, sizeof(key), &value, sizeof(value),
                           BPF_ANY) != 0) {
    int err = errno;
    return errno_error(
        err == E2BIG ? "the exec gate's map is full" : "vouching for a file in the exec gate", err);
  }
  return ok_result();
}

Result<void> LoadedObserver::gate_unpin(std::uint64_t number, dev_t dev, std::uint64_t ino) {
  ctrust_gate_key key{};
  key.container = number;
  key.ino = ino;
  key.dev = to_kernel_dev(dev);
  ctrust_gate_value value{};
  bpf_map* allowed = skel_.get()->maps.gate_allowed;
  if (bpf_map__lookup_elem(allowed, &key, sizeof(key), &value, sizeof(value), 0) != 0) {
    return ok_result();  // not there: nothing is pinned
  }
  value.flags &= ~static_cast<std::uint32_t>(CTRUST_GATE_PINNED);
  if (bpf_map__update_elem(allowed, &key, sizeof(key), &value, sizeof(value), BPF_EXIST) != 0 &&
      errno != ENOENT) {
    int err = errno;
    // Still pinned: the verdict would outlive the lease. Drop it instead.
    if (bpf_map__delete_elem(allowed, &key, sizeof(key), 0) != 0 && errno != ENOENT) {
      return errno_error("unpinning a file in the exec gate", err);
    }
  }
  return ok_result();
}

std::size_t LoadedObserver::gate_entries() const { return gate_keys().size(); }

std::vector<ctrust_gate_key> LoadedObserver::gate_keys() const {
  std::vector<ctrust_gate_key> keys;
  ctrust_gate_key key{};
  ctrust_gate_key next{};
  const void* prev = nullptr;
  while (bpf_map__get_next_key(skel_.get()->maps.gate_allowed, prev, &next, sizeof(next)) == 0) {
    keys.push_back(next);
    key = next;
    prev = &key;
  }
  return keys;
}

std::uint64_t LoadedObserver::lost() const {
  int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) return std::numeric_limits<std::uint64_t>::max();
  // Per-CPU values come as one 8-byte slot per possible CPU.
  std::vector<std::uint64_t> values(static_cast<std::size_t>(cpus));
  std::uint32_t key = 0;
  if (bpf_map__lookup_elem(skel_.get()->maps.lost, &key, sizeof(key), values.data(),
                           values.size() * sizeof(std::uint64_t), 0) != 0) {
    return std::numeric_limits<std::uint64_t>::max();
  }
  std::uint64_t sum = 0;
  for (std::uint64_t v : values) sum += v;
  return sum;
}

}  // namespace

Result<ObservedEvent> decode_observer_record(ByteView record) {
  ctrust_bpf_header header;
  if (record.size() < sizeof(header)) {
    return Error(Errc::kTruncated,
                 "BPF record of " + std::to_string(record.size()) + " bytes has no header");
  }
  std::memcpy(&header, record.data(), sizeof(header));
  if (header.version != CTRUST_BPF_ABI_VERSION) {
    return Error(Errc::kUnsupported, "BPF record version " + std::to_string(header.version) +
                                         ", expected " + std::to_string(CTRUST_BPF_ABI_VERSION));
  }
  switch (header.kind) {
    case CTRUST_BPF_EVENT_EXEC:
      return decode_exec(record, header);
    case CTRUST_BPF_EVENT_NAMESPACE:
      return decode_namespace(record, header);
    case CTRUST_BPF_EVENT_MAP:
      return decode_map(record, header);
    default:
      return Error(Errc::kUnsupported, "BPF record of unknown kind " + std::to_string(header.kind));
  }
}

Result<std::unique_ptr<BpfObserver>> BpfObserver::open(const BpfObserverOptions& options) {
  return LoadedObserver::open(options);
}

bool lsm_available() {
  constexpr const char* kLsm = "/sys/kernel/security/lsm";
  std::FILE* f = std::fopen(kLsm, "re");
  if (f == nullptr) return false;
  char buf[512] = {};
  std::size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
  std::fclose(f);
  std::string list = "," + std::string(buf, n) + ",";
  while (!list.empty() && (list.back() == '\n' || list.back() == ',')) list.pop_back();
  list += ",";
  return list.find(",bpf,") != std::string::npos;
}

}  // namespace ctrust::events
