/* The records the BPF observers (observer.bpf.c) write to their ring buffer, shared by the
 * BPF programs and userspace (src/events/bpf_observer.cpp). Plain C, fixed-size fields,
 * explicit padding, so both sides agree on every offset without BTF.
 *
 * Every record starts with struct ctrust_bpf_header; `kind` says which record follows and
 * `size` is the record's full size in bytes. Userspace checks both before it reads more.
 * Changing a record means bumping CTRUST_BPF_ABI_VERSION: the observer refuses records
 * of another version rather than misreading them.
 */
#ifndef CTRUST_BPF_OBSERVER_EVENTS_H
#define CTRUST_BPF_OBSERVER_EVENTS_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define CTRUST_BPF_ABI_VERSION 3

/* bprm->filename is copied up to this many bytes, NUL included (longer names are cut). */
#define CTRUST_BPF_FILENAME_MAX 256

enum ctrust_bpf_event_kind {
  CTRUST_BPF_EVENT_EXEC = 1,
  CTRUST_BPF_EVENT_NAMESPACE = 2,
  CTRUST_BPF_EVENT_MAP = 3,
};

/* ctrust_bpf_exec_event.flags */
enum ctrust_bpf_exec_flags {
  /* The exec'd file's dentry name starts with "memfd:" (memfd_create). */
  CTRUST_BPF_EXEC_MEMFD_NAME = 1u << 0,
  /* The exec'd inode has no links: a memfd, an O_TMPFILE or a file deleted since open. */
  CTRUST_BPF_EXEC_UNLINKED = 1u << 1,
  /* The file's mount is in no mount namespace (a kernel-internal mount such as shm_mnt). */
  CTRUST_BPF_EXEC_INTERNAL_MOUNT = 1u << 2,
  /* bprm->filename did not fit and was cut to CTRUST_BPF_FILENAME_MAX - 1 bytes. */
  CTRUST_BPF_EXEC_FILENAME_TRUNCATED = 1u << 3,
  /* A kernel read failed; the fields it would have filled are zero. */
  CTRUST_BPF_EXEC_READ_FAILED = 1u << 4,
  /* The task is in a gated container and the file was not vouched for (gate_allowed). */
  CTRUST_BPF_EXEC_UNVOUCHED = 1u << 5,
  /* ... and the container is in enforce: SIGKILL was sent before the first instruction. */
  CTRUST_BPF_EXEC_KILLED = 1u << 6,
  /* Written by lsm/bprm_check_security (the BPF-LSM backend): before the exec; with
   * KILLED, the exec was refused with EPERM instead (the task goes on, the file never ran). */
  CTRUST_BPF_EXEC_LSM = 1u << 7,
  /* Discovery: the task is in a cgroup under one of discover_roots that is neither gated
   * nor skipped, in a mount namespace other than the host's; SIGSTOP was sent before the
   * first instruction, and the task stays stopped until the agent has registered its
   * container and judged the file (SIGCONT) or refused it (SIGKILL). */
  CTRUST_BPF_EXEC_HELD = 1u << 8,
};

/* The exec gate (observer.bpf.c): the agent says which cgroups are containers and which
 * files each container may run; the kernel checks every exec and executable mapping of a
 * gated container against that and kills what was not vouched for, synchronously. */

/* gate_containers: cgroup v2 id -> this. A task belongs to the container of the nearest
 * ancestor cgroup (itself included) found in the map, up to CTRUST_GATE_MAX_DEPTH levels,
 * so sub-cgroups made inside a container stay in it. */
#define CTRUST_GATE_MAX_DEPTH 16
enum ctrust_gate_mode {
  CTRUST_GATE_MEASURE = 1, /* report what was not vouched for */
  CTRUST_GATE_AUDIT = 2,   /* the same */
  CTRUST_GATE_ENFORCE = 3, /* and kill the task (SIGKILL) before it returns to user space */
};
struct ctrust_gate_container {
  __u64 number; /* the agent's container number: the owner in gate keys */
  __u32 mode;   /* enum ctrust_gate_mode */
  __u32 pad;
};

/* gate_allowed: what a container's files were when the agent vouched for them. An entry
 * counts only while the inode's ctime is what it was then: any write, truncate, chmod or
 * rename of the inode changes its ctime and so retires the entry in the kernel itself. */
struct ctrust_gate_key {
  __u64 container; /* ctrust_gate_container.number */
  __u64 ino;       /* i_ino of the file the task holds (the overlay inode on overlayfs) */
  __u32 dev;       /* its superblock's s_dev, kernel encoding: inode numbers are per device */
  __u32 pad;
};
/* ctrust_gate_value.flags */
enum ctrust_gate_value_flags {
  /* The agent holds a lease on the file: nobody has opened it for writing since it was
   * judged, so its content is what was judged whatever its ctime says (chmod, touch and an
   * overlay copy-up change ctime but not content). Cleared before the lease is released. */
  CTRUST_GATE_PINNED = 1u << 0,
};
struct ctrust_gate_value {
  __s64 ctime_sec;
  __u32 ctime_nsec;
  __u32 flags; /* enum ctrust_gate_value_flags */
};

/* ctrust_bpf_map_event.syscall */
enum ctrust_bpf_map_syscall {
  CTRUST_BPF_MAP_MMAP = 1,
  CTRUST_BPF_MAP_MPROTECT = 2, /* also pkey_mprotect */
  CTRUST_BPF_MAP_SHMAT = 3,    /* SHM_EXEC: SysV shared memory made executable */
};
/* ctrust_bpf_map_event.flags */
enum ctrust_bpf_map_flags {
  CTRUST_BPF_MAP_KILLED = 1u << 0,      /* enforce: SIGKILL sent before the call returned */
  CTRUST_BPF_MAP_UNRESOLVED = 1u << 1,  /* the file could not be found (range too wide, ...) */
  CTRUST_BPF_MAP_MEMFD_NAME = 1u << 2,  /* the file's name starts with "memfd:" */
  CTRUST_BPF_MAP_UNLINKED = 1u << 3,    /* the inode has no links */
  /* Written by lsm/mmap_file, lsm/file_mprotect or lsm/shm_shmat (the BPF-LSM backend); with
   * KILLED, the call was refused with EPERM instead of the task being killed. */
  CTRUST_BPF_MAP_LSM = 1u << 4,
};

/* ctrust_bpf_namespace_event.syscall */
enum ctrust_bpf_ns_syscall {
  CTRUST_BPF_NS_UNSHARE = 1,
  CTRUST_BPF_NS_SETNS = 2,
  CTRUST_BPF_NS_CLONE = 3,
  CTRUST_BPF_NS_CLONE3 = 4,
};

struct ctrust_bpf_header {
  __u16 kind;     /* enum ctrust_bpf_event_kind */
  __u16 version;  /* CTRUST_BPF_ABI_VERSION */
  __u32 size;     /* sizeof the whole record */
  __u64 ktime_ns; /* bpf_ktime_get_boot_ns(): CLOCK_BOOTTIME */
};

/* Written by tp_btf/sched_process_exec: after the new image is in place, so the exec has
 * succeeded. For a script, the file fields describe the interpreter that runs it (the
 * kernel has swapped bprm->file by then) while `filename` is the script's name. */
struct ctrust_bpf_exec_event {
  struct ctrust_bpf_header hdr;
  __u32 pid; /* tgid */
  __u32 tid;
  __u32 ppid;          /* real_parent's tgid */
  __u32 mnt_ns;        /* inode number of the task's mount namespace (as /proc/PID/ns/mnt) */
  __u64 cgroup_id;     /* cgroup v2 id (the cgroup directory's inode number) */
  __u32 dev;           /* s_dev of the file's superblock, kernel encoding: major << 20 | minor */
  __u32 mnt_id;        /* mount id (as /proc/PID/mountinfo and statx STATX_MNT_ID) */
  __u64 ino;           /* the file's inode number */
  __u64 mnt_id_unique; /* 64-bit never-reused mount id (kernel 6.8+; 0 before) */
  __u64 sb_magic;      /* the file system's magic (TMPFS_MAGIC, OVERLAYFS_SUPER_MAGIC, ...) */
  __u32 nlink;
  __u32 flags;        /* enum ctrust_bpf_exec_flags */
  __u32 filename_len; /* bytes in filename, NUL excluded */
  __u32 pad;
  __u64 container; /* the gate's container number, 0 when the task is in none */
  char filename[CTRUST_BPF_FILENAME_MAX];
};

/* Written by the gate at the entry of mmap/mprotect/pkey_mprotect/shmat asking for
 * executable memory backed by a file the container's entry in gate_allowed does not vouch
 * for. Only such calls are reported: a vouched mapping costs a map lookup and no record. */
#define CTRUST_BPF_NAME_MAX 64
struct ctrust_bpf_map_event {
  struct ctrust_bpf_header hdr;
  __u32 pid; /* tgid */
  __u32 tid;
  __u64 cgroup_id;
  __u64 container; /* the gate's container number */
  __u64 ino;
  __u32 dev;     /* kernel encoding, as in the exec record */
  __u32 syscall; /* enum ctrust_bpf_map_syscall */
  __s32 fd;      /* mmap: the fd argument; -1 otherwise */
  __u32 flags;   /* enum ctrust_bpf_map_flags */
  __u32 nlink;
  __u32 pad;
  char name[CTRUST_BPF_NAME_MAX]; /* the file's last path component (dentry name), cut */
};

/* Written at syscall entry, so it records an attempt: the call may still fail. */
struct ctrust_bpf_namespace_event {
  struct ctrust_bpf_header hdr;
  __u32 pid; /* tgid */
  __u32 tid;
  __u32 mnt_ns;  /* the caller's mount namespace before the call */
  __u32 syscall; /* enum ctrust_bpf_ns_syscall */
  __u64 flags;   /* clone/unshare flags; for setns the nstype argument */
  __u64 cgroup_id;
  __s32 setns_fd;    /* setns only: the fd argument; -1 otherwise */
  __u32 read_failed; /* clone3 only: 1 when clone_args could not be read (flags unknown) */
};

#endif /* CTRUST_BPF_OBSERVER_EVENTS_H */
