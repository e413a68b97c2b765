// The BPF programs: every exec on the host and every attempt to create or enter
// namespaces, seen by BPF programs (bpf/observer.bpf.c) and read from one ring buffer, and
// the exec gate. fanotify (fanotify.h) asks the agent before a file is opened or executed;
// the gate makes sure, inside the kernel, that nothing a container runs or maps executable
// escaped that question: the agent names the containers' cgroups (gate_container()) and
// every file it vouched for (gate_allow()), and an exec or executable mapping of anything
// else is reported (kExec with unvouched, kMap) and, in enforce, killed with SIGKILL before
// it runs an instruction (docs/EXEC_PATH.md). The agent measures the BPF object it loaded
// (object_digests()).
//
// Works with tp_btf and syscall tracepoints only (no LSM, fentry or kprobe programs), so
// it runs on kernels where those are unavailable (PLATFORM_NOTES.md). Needs root, or
// CAP_BPF + CAP_PERFMON, and a tracefs (mounted on demand, see BpfObserverOptions).
//
// Ownership: BpfObserver owns the loaded programs, their links and the ring buffer;
// destroying it detaches everything. Events from the caller's own process are not
// filtered out.
//
// Thread safety: one thread polls; lost(), malformed() and object_digests() may be called
// from any.
#pragma once

#include <sys/types.h>
#include <ctime>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "util/hex.h"
#include "util/result.h"

namespace ctrust::events {

struct BpfObserverOptions {
  bool exec = true;        // tp_btf/sched_process_exec
  bool namespaces = true;  // unshare, setns, clone, clone3 at syscall entry
  // The gate on executable mappings: mmap, mprotect, pkey_mprotect and shmat at syscall
  // entry. The gate on execs is part of `exec`.
  bool gate = true;
  // A power of two and a multiple of the page size. Records are 344 (exec) and 56
  // (namespace) bytes plus an 8-byte ring header; 1 MiB holds about 3000 execs.
  std::uint32_t ring_buffer_bytes = std::uint32_t{1} << 20;
  // The syscall tracepoints are found through tracefs. When none is mounted (it is not on
  // minimal hosts), mount one at /sys/kernel/tracing in the caller's mount namespace.
  bool mount_tracefs = true;
  // The BPF-LSM gate (enforcement.backend "bpf-lsm"): programs on bprm_check_security,
  // mmap_file, file_mprotect and shm_shmat refuse with EPERM, in enforce, what the gate's
  // maps do not vouch for; the tracepoint gate then only observes. Needs a kernel with
  // CONFIG_BPF_LSM and "bpf" among its active LSMs (lsm_available()); open() fails where
  // the programs cannot load or attach, it never falls back by itself.
  bool lsm = false;
  // Discovery: the inode number of the host's mount namespace (as stat("/proc/1/ns/mnt")).
  // With it, an exec in a cgroup below a discovery root (discover_root()) that is not gated,
  // by a task in another mount namespace, stops the task (SIGSTOP, before its first
  // instruction) and is reported with `held`. 0: no discovery.
  std::uint64_t host_mnt_ns = 0;
};

// Whether "bpf" is among the kernel's active LSMs (/sys/kernel/security/lsm; false where
// securityfs is not mounted). A hint for messages only: open() with `lsm` is the proof.
bool lsm_available();

enum class ObservedKind : std::uint8_t { kExec, kNamespace, kMap };
enum class MapSyscall : std::uint8_t { kMmap, kMprotect, kShmat };
// What the gate does in a container (bpf/observer_events.h, enum ctrust_gate_mode).
enum class GateMode : std::uint8_t { kMeasure = 1, kAudit = 2, kEnforce = 3 };
enum class NamespaceSyscall : std::uint8_t { kUnshare, kSetns, kClone, kClone3 };

// CLONE_NEW* values (linux/sched.h), for ObservedEvent::ns_flags.
inline constexpr std::uint64_t kCloneNewNs = 0x00020000;
inline constexpr std::uint64_t kCloneNewCgroup = 0x02000000;
inline constexpr std::uint64_t kCloneNewUts = 0x04000000;
inline constexpr std::uint64_t kCloneNewIpc = 0x08000000;
inline constexpr std::uint64_t kCloneNewUser = 0x10000000;
inline constexpr std::uint64_t kCloneNewPid = 0x20000000;
inline constexpr std::uint64_t kCloneNewNet = 0x40000000;

struct ObservedEvent {
  ObservedKind kind = ObservedKind::kExec;
  std::uint64_t ktime_ns = 0;  // CLOCK_BOOTTIME when the program ran
  pid_t pid = 0;               // thread group id (what getpid() returns)
  pid_t tid = 0;
  std::uint64_t mnt_ns = 0;     // the task's mount namespace, as stat("/proc/PID/ns/mnt").st_ino
  std::uint64_t cgroup_id = 0;  // cgroup v2 id (the cgroup2 directory's inode number)

  // kExec: written once the new image is in place, so the exec has succeeded. For a
  // script, dev/ino/mnt_id describe the interpreter the kernel runs it with, while
  // `filename` names the script (the kernel has swapped the file by then).
  pid_t ppid = 0;
  dev_t dev = 0;  // the file's device, in userspace encoding (comparable with st_dev)
  std::uint64_t ino = 0;
  std::uint32_t mnt_id = 0;         // as in /proc/PID/mountinfo (statx STATX_MNT_ID)
  std::uint64_t mnt_id_unique = 0;  // statx STATX_MNT_ID_UNIQUE (kernel 6.8+; else 0)
  std::uint64_t sb_magic = 0;       // statfs f_type of the file's filesystem
  std::uint32_t nlink = 0;
  // The path as passed to execve (relative paths stay relative); for execveat with
  // AT_EMPTY_PATH the kernel makes it "/dev/fd/N".
  std::string filename;
  bool filename_truncated = false;  // filled the kernel's 255-byte buffer: may be cut
  bool memfd_name = false;          // the file's name starts with "memfd:"
  bool unlinked = false;            // no links: memfd, O_TMPFILE, or deleted after open
  bool internal_mount = false;      // the file's mount is in no mount namespace
  bool read_failed = false;         // a kernel read failed; some fields are zero
  // An exec of a file no path on any mounted filesystem leads to.
  bool fileless() const { return memfd_name || unlinked || internal_mount; }

  // kExec and kMap: the gate's container number (0: the task is in no gated container),
  // whether the file was not vouched for, and whether the task was killed for it (with
  // `lsm`: the BPF-LSM gate decided before the call, and `killed` means it was refused
  // with EPERM instead; nothing of the file ran).
  std::uint64_t container = 0;
  bool unvouched = false;
  bool killed = false;
  bool lsm = false;
  // kExec: discovery stopped the task (SIGSTOP) before the file's first instruction; it
  // stays stopped until someone sends SIGCONT or SIGKILL. `container` is 0.
  bool held = false;
  // kMap (always unvouched): the call, its fd (mmap; else -1), the file's dentry name, and
  // whether the file could not be found (then dev/ino are 0).
  MapSyscall map_syscall = MapSyscall::kMmap;
  int map_fd = -1;
  std::string name;
  bool unresolved = false;

  // kNamespace: written at syscall entry, so an attempt that may still fail; mnt_ns is the
  // caller's namespace before the call.
  NamespaceSyscall syscall = NamespaceSyscall::kUnshare;
  std::uint64_t ns_flags = 0;  // CLONE_NEW* flags; for setns the nstype argument (0: any)
  int setns_fd = -1;           // setns: the fd argument
  bool flags_unknown = false;  // clone3: clone_args was not readable from the BPF program
};

// Decodes one ring-buffer record, checking its kind, version and size before reading
// more, and bounding the filename by both the record and its NUL. Exposed for tests and
// fuzzing; BpfObserver::poll() uses it for every record.
Result<ObservedEvent> decode_observer_record(ByteView record);

class BpfObserver {
 public:
  using Callback = std::function<void(const ObservedEvent&)>;

  // Loads and attaches the programs. EPERM (no CAP_BPF/CAP_PERFMON) and missing kernel
  // features come back as an Error that says what is needed.
  static Result<std::unique_ptr<BpfObserver>> open(const BpfObserverOptions& options = {});

  virtual ~BpfObserver() = default;
  BpfObserver(const BpfObserver&) = delete;
  BpfObserver& operator=(const BpfObserver&) = delete;
  BpfObserver(BpfObserver&&) = delete;
  BpfObserver& operator=(BpfObserver&&) = delete;

  // Waits up to `timeout_ms` (-1: forever; 0: no wait) for records, hands every decoded
  // event to `on_event` and returns how many. A record that does not decode is counted in
  // malformed() and skipped. An exception from `on_event` stops the drain and is rethrown
  // here, after libbpf has returned; the records after it stay in the ring.
  virtual Result<std::size_t> poll(int timeout_ms, const Callback& on_event) = 0;
  // The ring buffer's epoll fd, readable when records are waiting, for the caller's loop.
  virtual int fd() const = 0;
  // Records the kernel dropped because the ring buffer was full (summed over CPUs).
  // UINT64_MAX if the counter map cannot be read (which means the count is unknown).
  virtual std::uint64_t lost() const = 0;
  // Records that failed decode_observer_record().
  virtual std::uint64_t malformed() const = 0;
  // What was loaded: object name -> "sha256:HEX" of the BPF object's bytes.
  virtual std::vector<std::pair<std::string, std::string>> object_digests() const = 0;

  // The gate. Tasks in cgroup `cgroup_id` (or below it) belong to container `number`
  // (non-zero, unique per agent run) from now on.
  virtual Result<void> gate_container(std::uint64_t cgroup_id, std::uint64_t number,
                                      GateMode mode) = 0;
  // Forgets the cgroup and every file vouched for in container `number`.
  virtual Result<void> gate_release(std::uint64_t cgroup_id, std::uint64_t number) = 0;
  // Container `number` may run or map inode `ino` of `dev` while its ctime is `ctime`, or, while
  // `pinned` (the caller holds a lease: the content cannot have changed), whatever its
  // ctime. Fails when the map is full: the caller must then not allow what it could not
  // vouch for.
  // `dev` is the device of the file's superblock (as stat() reports it for the mount's root
  // directory; on overlayfs a regular file may report a lower layer's device).
  virtual Result<void> gate_allow(std::uint64_t number, dev_t dev, std::uint64_t ino,
                                  const struct timespec& ctime, bool pinned = false) = 0;
  // The entry counts only while its ctime holds again (the lease is about to go).
  virtual Result<void> gate_unpin(std::uint64_t number, dev_t dev, std::uint64_t ino) = 0;
  // Files vouched for, over all containers (a walk of the map: for ps and tests).
  virtual std::size_t gate_entries() const = 0;

  // Discovery (needs BpfObserverOptions::host_mnt_ns): cgroups below `cgroup_id` are
  // containers to be; their first exec is held (ObservedEvent::held).
  virtual Result<void> discover_root(std::uint64_t cgroup_id) = 0;
  // Cgroup `cgroup_id` is no container: its execs are not held (until the map's least
  // recently used entries make room: then it is held and found again).
  virtual Result<void> discover_skip(std::uint64_t cgroup_id) = 0;

 protected:
  BpfObserver() = default;
};

}  // namespace ctrust::events
