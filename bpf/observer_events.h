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

#define CTRUST_BPF_ABI_VERSION 1

/* bprm->filename is copied up to this many bytes, NUL included (longer names are cut). */
#define CTRUST_BPF_FILENAME_MAX 256

enum ctrust_bpf_event_kind {
  CTRUST_BPF_EVENT_EXEC = 1,
  CTRUST_BPF_EVENT_NAMESPACE = 2,
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
  char filename[CTRUST_BPF_FILENAME_MAX];
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
