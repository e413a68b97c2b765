// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The node agent's BPF programs: every exec on the host (tp_btf/sched_process_exec), every
 * attempt to create or enter namespaces (syscall-entry tracepoints of unshare, setns, clone
 * and clone3), and the exec gate.
 *
 * The gate (docs/EXEC_PATH.md): the agent puts each container's cgroup in gate_containers
 * and every file it vouched for (through fanotify, before answering allow) in gate_allowed.
 * An exec, or a call asking for executable memory backed by a file (mmap, mprotect,
 * pkey_mprotect, shmat with SHM_EXEC), in a gated container of a file not vouched for is
 * reported, and in enforce the task is sent SIGKILL from inside the kernel: it never runs
 * an instruction of that file, however it got there (a new mount namespace, a mount made
 * after the start, a memfd, /proc/self/fd).
 *
 * Records go to one ring buffer (layout in observer_events.h). A record that does not fit
 * is counted in `lost`, per CPU, so that userspace can report the gap instead of hiding it.
 *
 * Kernel structures are read with BPF_CORE_READ, so that the object built against this
 * machine's vmlinux.h relocates to other kernels' layouts at load time (CO-RE).
 */
#include "vmlinux.h"

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "observer_events.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* uapi/linux/sched.h; vmlinux.h has no macros. */
#define CLONE_NEWTIME 0x00000080ULL
#define CLONE_NEWNS 0x00020000ULL
#define CLONE_NEWCGROUP 0x02000000ULL
#define CLONE_NEWUTS 0x04000000ULL
#define CLONE_NEWIPC 0x08000000ULL
#define CLONE_NEWUSER 0x10000000ULL
#define CLONE_NEWPID 0x20000000ULL
#define CLONE_NEWNET 0x40000000ULL

/* Every namespace flag. clone()'s low byte is the exit signal, so CLONE_NEWTIME (0x80)
 * only means a time namespace for unshare() and clone3(). */
#define NS_FLAGS_CLONE                                                                          \
  (CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | \
   CLONE_NEWNET)
#define NS_FLAGS_ALL (NS_FLAGS_CLONE | CLONE_NEWTIME)

/* include/linux/err.h: MNT_NS_INTERNAL is ERR_PTR(-EINVAL) on kernel-internal mounts. */
#define MAX_ERRNO 4095
#define EPERM 1

/* Set by userspace before load (BpfObserverOptions::lsm): the BPF-LSM programs decide, and
 * refuse with EPERM what enforce does not allow; the tracepoint gate then only observes. */
const volatile __u32 lsm_gate = 0;
/* Set by userspace before load (BpfObserverOptions::host_mnt_ns): the host's mount
 * namespace. Discovery holds only tasks in another one (a container's first program runs
 * after pivot_root; the runtime's own execs, runc's re-exec of itself among them, do not). */
const volatile __u32 host_mnt_ns = 0;

/* The size is set by userspace before load (BpfObserverOptions::ring_buffer_bytes). */
struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 1 << 20);
} events SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
} lost SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 4096);
  __type(key, __u64); /* cgroup v2 id */
  __type(value, struct ctrust_gate_container);
} gate_containers SEC(".maps");

/* Discovery (docs/AGENT.md, "Containers found without a hook"): cgroup v2 ids under which
 * every new cgroup is a container to be. An exec in a cgroup below one of them (not the
 * root itself) that is in neither gate_containers nor discover_skip is held (SIGSTOP) and
 * reported; the agent registers the container and lets the task go on, or kills it. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 64);
  __type(key, __u64);
  __type(value, __u32);
} discover_roots SEC(".maps");

/* Cgroups under a discovery root that the agent found are no container of a runtime it
 * knows: not held again. LRU, so that it can never fill up; cgroup ids are not reused. */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 4096);
  __type(key, __u64);
  __type(value, __u32);
} discover_skip SEC(".maps");

/* Not preallocated: sized by userspace for the busiest node, paid for as used. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1 << 18);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, struct ctrust_gate_key);
  __type(value, struct ctrust_gate_value);
} gate_allowed SEC(".maps");

/* struct mount gained a 64-bit id in 6.8; older vmlinux.h files lack the field, so name it
 * through a local flavour that CO-RE matches against "struct mount". */
struct mount___with_unique_id {
  u64 mnt_id_unique;
} __attribute__((preserve_access_index));

static __always_inline void count_lost(void) {
  __u32 key = 0;
  __u64* n = bpf_map_lookup_elem(&lost, &key);
  if (n) *n += 1; /* per CPU: no other writer */
}

static __always_inline void fill_header(struct ctrust_bpf_header* h, __u16 kind, __u32 size) {
  h->kind = kind;
  h->version = CTRUST_BPF_ABI_VERSION;
  h->size = size;
  h->ktime_ns = bpf_ktime_get_boot_ns();
}

/* The inode's ctime moved from a timespec64 (to 6.5) to __i_ctime (6.6-6.10) to two fields
 * (6.11+). Local flavours let CO-RE pick whichever the running kernel has. */
struct inode___ctime_split {
  time64_t i_ctime_sec;
  u32 i_ctime_nsec;
} __attribute__((preserve_access_index));
struct inode___ctime_dunder {
  struct timespec64 __i_ctime;
} __attribute__((preserve_access_index));
struct inode___ctime_plain {
  struct timespec64 i_ctime;
} __attribute__((preserve_access_index));

/* Multigrain timestamps (6.13+) keep a "queried" flag in the top bits of the nanoseconds. */
#define CTIME_NSEC_MASK 0x3fffffffu

static __always_inline void inode_ctime(struct inode* inode, __s64* sec, __u32* nsec) {
  struct inode___ctime_split* a = (void*)inode;
  struct inode___ctime_dunder* b = (void*)inode;
  struct inode___ctime_plain* c = (void*)inode;
  if (bpf_core_field_exists(a->i_ctime_sec)) {
    *sec = BPF_CORE_READ(a, i_ctime_sec);
    *nsec = BPF_CORE_READ(a, i_ctime_nsec) & CTIME_NSEC_MASK;
  } else if (bpf_core_field_exists(b->__i_ctime)) {
    *sec = BPF_CORE_READ(b, __i_ctime.tv_sec);
    *nsec = (__u32)BPF_CORE_READ(b, __i_ctime.tv_nsec);
  } else {
    *sec = BPF_CORE_READ(c, i_ctime.tv_sec);
    *nsec = (__u32)BPF_CORE_READ(c, i_ctime.tv_nsec);
  }
}

/* The gated container of `task`: its cgroup or the nearest ancestor in gate_containers. */
static __always_inline struct ctrust_gate_container* gate_container(struct task_struct* task) {
  struct cgroup* cg = BPF_CORE_READ(task, cgroups, dfl_cgrp);
  for (int i = 0; i < CTRUST_GATE_MAX_DEPTH; i++) {
    if (!cg) return NULL;
    __u64 id = BPF_CORE_READ(cg, kn, id);
    struct ctrust_gate_container* c = bpf_map_lookup_elem(&gate_containers, &id);
    if (c) return c;
    /* struct cgroup starts with its cgroup_subsys_state `self`; parent points at that. */
    struct cgroup_subsys_state* parent = BPF_CORE_READ(cg, self.parent);
    if (!parent) return NULL;
    cg = (struct cgroup*)((void*)parent - bpf_core_field_offset(struct cgroup, self));
  }
  return NULL;
}

/* Whether the container vouched for this inode as it is now. */
static __always_inline int gate_vouched(__u64 container, struct inode* inode) {
  if (!inode) return 0;
  struct ctrust_gate_key key = {.container = container,
                                .ino = BPF_CORE_READ(inode, i_ino),
                                .dev = BPF_CORE_READ(inode, i_sb, s_dev),
                                .pad = 0};
  struct ctrust_gate_value* v = bpf_map_lookup_elem(&gate_allowed, &key);
  if (!v) return 0;
  if (v->flags & CTRUST_GATE_PINNED) return 1;
  __s64 sec = 0;
  __u32 nsec = 0;
  inode_ctime(inode, &sec, &nsec);
  return v->ctime_sec == sec && v->ctime_nsec == nsec;
}

/* Whether `task` is to be held for discovery: its cgroup is strictly below a discovery root
 * (and not skipped) and its mount namespace is not the host's. The caller has checked that
 * the cgroup is not gated. */
static __always_inline int discover_hold(struct task_struct* task) {
  if (host_mnt_ns == 0) return 0;
  if (BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum) == host_mnt_ns) return 0;
  struct cgroup* cg = BPF_CORE_READ(task, cgroups, dfl_cgrp);
  if (!cg) return 0;
  __u64 own = BPF_CORE_READ(cg, kn, id);
  if (bpf_map_lookup_elem(&discover_skip, &own)) return 0;
  for (int i = 0; i < CTRUST_GATE_MAX_DEPTH; i++) {
    struct cgroup_subsys_state* parent = BPF_CORE_READ(cg, self.parent);
    if (!parent) return 0;
    cg = (struct cgroup*)((void*)parent - bpf_core_field_offset(struct cgroup, self));
    __u64 id = BPF_CORE_READ(cg, kn, id);
    if (bpf_map_lookup_elem(&discover_roots, &id)) return 1;
  }
  return 0;
}

static __always_inline __u32 current_mnt_ns(void) {
  struct task_struct* task = (struct task_struct*)bpf_get_current_task();
  return BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
}

/* An exec record: `bprm` is the exec about to happen (LSM) or done (tracepoint). */
static __always_inline void emit_exec(struct task_struct* task, struct linux_binprm* bprm,
                                      __u32 flags, __u64 container) {
  struct file* file = BPF_CORE_READ(bprm, file);
  struct inode* inode = BPF_CORE_READ(file, f_inode);
  struct ctrust_bpf_exec_event* e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
  if (!e) {
    count_lost();
    return;
  }
  fill_header(&e->hdr, CTRUST_BPF_EVENT_EXEC, sizeof(*e));
  __u64 pid_tgid = bpf_get_current_pid_tgid();
  e->pid = (__u32)(pid_tgid >> 32);
  e->tid = (__u32)pid_tgid;
  e->ppid = BPF_CORE_READ(task, real_parent, tgid);
  e->mnt_ns = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
  e->cgroup_id = bpf_get_current_cgroup_id();
  e->flags = flags;
  e->pad = 0;
  e->container = container;

  e->dev = BPF_CORE_READ(inode, i_sb, s_dev);
  e->sb_magic = BPF_CORE_READ(inode, i_sb, s_magic);
  e->ino = BPF_CORE_READ(inode, i_ino);
  e->nlink = BPF_CORE_READ(inode, i_nlink);
  if (!inode) e->flags |= CTRUST_BPF_EXEC_READ_FAILED;
  if (inode && e->nlink == 0) e->flags |= CTRUST_BPF_EXEC_UNLINKED;

  /* real_mount(): struct vfsmount is embedded in struct mount. The offset is relocated
   * (bpf_core_field_offset) rather than the compile-time offsetof of container_of(). */
  struct vfsmount* vfsmnt = BPF_CORE_READ(file, f_path.mnt);
  struct mount* mnt = (struct mount*)((void*)vfsmnt - bpf_core_field_offset(struct mount, mnt));
  e->mnt_id = 0;
  e->mnt_id_unique = 0;
  if (vfsmnt) {
    e->mnt_id = (__u32)BPF_CORE_READ(mnt, mnt_id);
    struct mount___with_unique_id* m2 = (void*)mnt;
    if (bpf_core_field_exists(m2->mnt_id_unique))
      e->mnt_id_unique = BPF_CORE_READ(m2, mnt_id_unique);
    unsigned long ns = (unsigned long)BPF_CORE_READ(mnt, mnt_ns);
    if (ns == 0 || ns >= (unsigned long)-MAX_ERRNO) e->flags |= CTRUST_BPF_EXEC_INTERNAL_MOUNT;
  }

  /* memfd_create() names its file "memfd:NAME". */
  char prefix[8] = {};
  const unsigned char* dname = BPF_CORE_READ(file, f_path.dentry, d_name.name);
  if (dname && bpf_probe_read_kernel(prefix, 6, dname) == 0 && prefix[0] == 'm' &&
      prefix[1] == 'e' && prefix[2] == 'm' && prefix[3] == 'f' && prefix[4] == 'd' &&
      prefix[5] == ':') {
    e->flags |= CTRUST_BPF_EXEC_MEMFD_NAME;
  }

  const char* filename = BPF_CORE_READ(bprm, filename);
  long n = bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), filename);
  if (n <= 0) {
    e->filename[0] = '\0';
    e->filename_len = 0;
    e->flags |= CTRUST_BPF_EXEC_READ_FAILED;
  } else {
    e->filename_len = (__u32)(n - 1);
    /* A full buffer may mean the name was longer: say so rather than guess. */
    if (n == sizeof(e->filename)) e->flags |= CTRUST_BPF_EXEC_FILENAME_TRUNCATED;
  }
  bpf_ringbuf_submit(e, 0);
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(ctrust_exec, struct task_struct* task, pid_t old_pid, struct linux_binprm* bprm) {
  struct inode* inode = BPF_CORE_READ(bprm, file, f_inode);
  /* The gate first, so that the kill does not wait for the record. The signal is delivered
   * before the new image's first instruction: the task is on its way back to user space.
   * A vouched exec in a gated container is the common case and needs no record. With the
   * BPF-LSM gate, bprm_check_security has decided and reported already: a gated
   * container's exec needs nothing more here (without this, every exec of a gated container
   * would cost a record, and one in a new mount namespace would look unmanaged). */
  struct ctrust_gate_container* gc = gate_container(task);
  if (gc && lsm_gate) return 0;
  __u32 gate_flags = 0;
  if (gc) {
    if (gate_vouched(gc->number, inode)) return 0;
    gate_flags = CTRUST_BPF_EXEC_UNVOUCHED;
    if (gc->mode == CTRUST_GATE_ENFORCE) {
      bpf_send_signal(9 /* SIGKILL */);
      gate_flags |= CTRUST_BPF_EXEC_KILLED;
    }
  } else if (discover_hold(task)) {
    /* Stopped on its way back to user space, before the new program's first instruction,
     * like the kill above; SIGSTOP cannot be caught, blocked or ignored. */
    bpf_send_signal(19 /* SIGSTOP */);
    gate_flags = CTRUST_BPF_EXEC_HELD;
  }
  emit_exec(task, bprm, gate_flags, gc ? gc->number : 0);
  return 0;
}

static __always_inline void emit_namespace(__u32 syscall, __u64 flags, __s32 setns_fd,
                                           __u32 read_failed) {
  struct ctrust_bpf_namespace_event* e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
  if (!e) {
    count_lost();
    return;
  }
  fill_header(&e->hdr, CTRUST_BPF_EVENT_NAMESPACE, sizeof(*e));
  __u64 pid_tgid = bpf_get_current_pid_tgid();
  e->pid = (__u32)(pid_tgid >> 32);
  e->tid = (__u32)pid_tgid;
  e->mnt_ns = current_mnt_ns();
  e->syscall = syscall;
  e->flags = flags;
  e->cgroup_id = bpf_get_current_cgroup_id();
  e->setns_fd = setns_fd;
  e->read_failed = read_failed;
  bpf_ringbuf_submit(e, 0);
}

/* The syscall tracepoints' context: common fields, the syscall number, then the
 * arguments as 8-byte slots, which is the layout of trace_event_raw_sys_enter. */
SEC("tracepoint/syscalls/sys_enter_unshare")
int ctrust_unshare(struct trace_event_raw_sys_enter* ctx) {
  __u64 flags = ctx->args[0];
  if (flags & NS_FLAGS_ALL) emit_namespace(CTRUST_BPF_NS_UNSHARE, flags, -1, 0);
  return 0;
}

SEC("tracepoint/syscalls/sys_enter_setns")
int ctrust_setns(struct trace_event_raw_sys_enter* ctx) {
  /* nstype 0 means "whatever the fd is": every setns enters some namespace. */
  emit_namespace(CTRUST_BPF_NS_SETNS, ctx->args[1], (__s32)ctx->args[0], 0);
  return 0;
}

SEC("tracepoint/syscalls/sys_enter_clone")
int ctrust_clone(struct trace_event_raw_sys_enter* ctx) {
  __u64 flags = ctx->args[0];
  if (flags & NS_FLAGS_CLONE) emit_namespace(CTRUST_BPF_NS_CLONE, flags, -1, 0);
  return 0;
}

SEC("tracepoint/syscalls/sys_enter_clone3")
int ctrust_clone3(struct trace_event_raw_sys_enter* ctx) {
  const struct clone_args* uargs = (const struct clone_args*)ctx->args[0];
  __u64 flags = 0;
  /* The flags live in user memory, which this non-sleepable program cannot fault in: an
   * unreadable page is reported as such rather than passed over silently. */
  if (bpf_probe_read_user(&flags, sizeof(flags), &uargs->flags) != 0) {
    emit_namespace(CTRUST_BPF_NS_CLONE3, 0, -1, 1);
    return 0;
  }
  if (flags & NS_FLAGS_ALL) emit_namespace(CTRUST_BPF_NS_CLONE3, flags, -1, 0);
  return 0;
}

/* --- the gate on executable mappings --------------------------------------------------- */

/* uapi/asm-generic/mman-common.h, uapi/linux/shm.h */
#define PROT_EXEC 0x4
#define MAP_ANONYMOUS 0x20
#define SHM_EXEC 0100000

static __always_inline void gate_report(struct ctrust_gate_container* gc, __u32 syscall,
                                        struct file* file, __s32 fd, __u32 flags) {
  if (gc->mode == CTRUST_GATE_ENFORCE) {
    /* The LSM programs refuse the call instead (their caller returns EPERM). */
    if (!(flags & CTRUST_BPF_MAP_LSM)) bpf_send_signal(9 /* SIGKILL */);
    flags |= CTRUST_BPF_MAP_KILLED;
  }
  struct ctrust_bpf_map_event* e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
  if (!e) {
    count_lost();
    return;
  }
  fill_header(&e->hdr, CTRUST_BPF_EVENT_MAP, sizeof(*e));
  __u64 pid_tgid = bpf_get_current_pid_tgid();
  e->pid = (__u32)(pid_tgid >> 32);
  e->tid = (__u32)pid_tgid;
  e->cgroup_id = bpf_get_current_cgroup_id();
  e->container = gc->number;
  e->syscall = syscall;
  e->fd = fd;
  e->pad = 0;
  e->ino = 0;
  e->dev = 0;
  e->nlink = 0;
  e->name[0] = '\0';
  if (file) {
    struct inode* inode = BPF_CORE_READ(file, f_inode);
    e->ino = BPF_CORE_READ(inode, i_ino);
    e->dev = BPF_CORE_READ(inode, i_sb, s_dev);
    e->nlink = BPF_CORE_READ(inode, i_nlink);
    if (inode && e->nlink == 0) flags |= CTRUST_BPF_MAP_UNLINKED;
    const unsigned char* dname = BPF_CORE_READ(file, f_path.dentry, d_name.name);
    if (dname && bpf_probe_read_kernel_str(e->name, sizeof(e->name), dname) > 0 &&
        e->name[0] == 'm' && e->name[1] == 'e' && e->name[2] == 'm' && e->name[3] == 'f' &&
        e->name[4] == 'd' && e->name[5] == ':') {
      flags |= CTRUST_BPF_MAP_MEMFD_NAME;
    }
  }
  e->flags = flags;
  bpf_ringbuf_submit(e, 0);
}

/* mmap(addr, len, prot, flags, fd, off) of a file with PROT_EXEC. The fd is looked up in
 * the caller's table here, at entry; docs/EXEC_PATH.md says what is left of the race with
 * another thread replacing the fd before the call takes it. */
SEC("tracepoint/syscalls/sys_enter_mmap")
int ctrust_gate_mmap(struct trace_event_raw_sys_enter* ctx) {
  if (lsm_gate) return 0; /* the LSM programs decide */
  if (!(ctx->args[2] & PROT_EXEC) || (ctx->args[3] & MAP_ANONYMOUS)) return 0;
  struct task_struct* task = (struct task_struct*)bpf_get_current_task();
  struct ctrust_gate_container* gc = gate_container(task);
  if (!gc) return 0;
  __s32 fd = (__s32)ctx->args[4];
  struct fdtable* fdt = BPF_CORE_READ(task, files, fdt);
  unsigned int max = BPF_CORE_READ(fdt, max_fds);
  if (fd < 0 || (unsigned int)fd >= max) return 0; /* EBADF: nothing gets mapped */
  struct file** table = BPF_CORE_READ(fdt, fd);
  struct file* file = NULL;
  if (bpf_probe_read_kernel(&file, sizeof(file), &table[fd]) != 0 || !file) {
    gate_report(gc, CTRUST_BPF_MAP_MMAP, NULL, fd, CTRUST_BPF_MAP_UNRESOLVED);
    return 0;
  }
  if (gate_vouched(gc->number, BPF_CORE_READ(file, f_inode))) return 0;
  gate_report(gc, CTRUST_BPF_MAP_MMAP, file, fd, 0);
  return 0;
}

/* mprotect(PROT_EXEC) of a range: every file-backed VMA in it must be vouched for. Anonymous
 * memory made executable (JITs) is not a file and not the gate's (docs/EXEC_PATH.md). */
struct vma_walk {
  __u64 container;
  __u64 next;          /* the end of the VMA just looked at */
  struct file* denied; /* the first file not vouched for */
  int found;
};

static long check_vma(struct task_struct* task, struct vm_area_struct* vma, void* data) {
  struct vma_walk* w = data;
  w->found = 1;
  w->next = BPF_CORE_READ(vma, vm_end);
  struct file* file = BPF_CORE_READ(vma, vm_file);
  if (file && !w->denied && !gate_vouched(w->container, BPF_CORE_READ(file, f_inode))) {
    w->denied = file;
  }
  return 0;
}

#define MPROTECT_MAX_VMAS 8

static __always_inline int gate_mprotect(struct trace_event_raw_sys_enter* ctx) {
  if (lsm_gate) return 0; /* the LSM programs decide */
  if (!(ctx->args[2] & PROT_EXEC)) return 0;
  struct task_struct* task = bpf_get_current_task_btf();
  struct ctrust_gate_container* gc = gate_container(task);
  if (!gc) return 0;
  __u64 start = ctx->args[0];
  __u64 end = start + ctx->args[1];
  struct vma_walk w = {.container = gc->number, .next = start, .denied = NULL, .found = 0};
  for (int i = 0; i < MPROTECT_MAX_VMAS && w.next < end; i++) {
    w.found = 0;
    if (bpf_find_vma(task, w.next, check_vma, &w, 0) != 0 || !w.found) break;
    if (w.denied) {
      gate_report(gc, CTRUST_BPF_MAP_MPROTECT, w.denied, -1, 0);
      return 0;
    }
  }
  /* More VMAs than looked at: not proven, so not allowed. */
  if (w.next < end && w.found) gate_report(gc, CTRUST_BPF_MAP_MPROTECT, NULL, -1,
                                           CTRUST_BPF_MAP_UNRESOLVED);
  return 0;
}

SEC("tracepoint/syscalls/sys_enter_mprotect")
int ctrust_gate_mprotect(struct trace_event_raw_sys_enter* ctx) { return gate_mprotect(ctx); }

SEC("tracepoint/syscalls/sys_enter_pkey_mprotect")
int ctrust_gate_pkey_mprotect(struct trace_event_raw_sys_enter* ctx) { return gate_mprotect(ctx); }

/* shmat(id, addr, SHM_EXEC): shared memory is no file anyone vouched for. */
SEC("tracepoint/syscalls/sys_enter_shmat")
int ctrust_gate_shmat(struct trace_event_raw_sys_enter* ctx) {
  if (lsm_gate) return 0; /* the LSM programs decide */
  if (!(ctx->args[2] & SHM_EXEC)) return 0;
  struct ctrust_gate_container* gc = gate_container((struct task_struct*)bpf_get_current_task());
  if (gc) gate_report(gc, CTRUST_BPF_MAP_SHMAT, NULL, -1, 0);
  return 0;
}

/* --- the BPF-LSM gate (enforcement.backend = "bpf-lsm") ------------------------------------
 * Where the kernel runs BPF LSM programs (CONFIG_BPF_LSM, "bpf" in the active LSMs), the
 * kernel asks these before an exec, an executable file mapping or SysV shm attached
 * executable, and a refusal is an EPERM from the call itself: nothing is killed, nothing of
 * the file runs. The verdict maps are the same as the tracepoint gate's. Loaded only when
 * userspace asks (BpfObserverOptions::lsm); the tracepoint gate then only observes. */

static __always_inline int lsm_verdict(struct ctrust_gate_container* gc) {
  return gc->mode == CTRUST_GATE_ENFORCE ? -EPERM : 0;
}

SEC("lsm/bprm_check_security")
int BPF_PROG(ctrust_lsm_bprm, struct linux_binprm* bprm, int ret) {
  if (ret != 0) return ret;
  struct task_struct* task = bpf_get_current_task_btf();
  struct ctrust_gate_container* gc = gate_container(task);
  if (!gc) return 0;
  /* Called for the file asked for and again for each interpreter (a script's, ld.so is
   * mapped instead): each must be vouched for. */
  if (gate_vouched(gc->number, BPF_CORE_READ(bprm, file, f_inode))) return 0;
  __u32 flags = CTRUST_BPF_EXEC_UNVOUCHED | CTRUST_BPF_EXEC_LSM;
  if (gc->mode == CTRUST_GATE_ENFORCE) flags |= CTRUST_BPF_EXEC_KILLED;
  emit_exec(task, bprm, flags, gc->number);
  return lsm_verdict(gc);
}

SEC("lsm/mmap_file")
int BPF_PROG(ctrust_lsm_mmap, struct file* file, unsigned long reqprot, unsigned long prot,
             unsigned long flags, int ret) {
  if (ret != 0) return ret;
  if (!(prot & PROT_EXEC) || !file) return 0; /* anonymous memory is no file */
  struct task_struct* task = bpf_get_current_task_btf();
  struct ctrust_gate_container* gc = gate_container(task);
  if (!gc) return 0;
  if (gate_vouched(gc->number, BPF_CORE_READ(file, f_inode))) return 0;
  /* The ELF loader mapping the program that bprm_check_security judged a moment ago: the
     new mm's exe_file, a struct file no descriptor of the task can reach (an open of
     /proc/self/exe or execveat makes another). Reported once, as the exec, not again as a
     mapping; the interpreter the loader maps is not exe_file and is still judged here. */
  if (file == BPF_CORE_READ(task, mm, exe_file)) return 0;
  gate_report(gc, CTRUST_BPF_MAP_MMAP, file, -1, CTRUST_BPF_MAP_LSM);
  return lsm_verdict(gc);
}

SEC("lsm/file_mprotect")
int BPF_PROG(ctrust_lsm_mprotect, struct vm_area_struct* vma, unsigned long reqprot,
             unsigned long prot, int ret) {
  if (ret != 0) return ret;
  if (!(prot & PROT_EXEC)) return 0;
  struct file* file = BPF_CORE_READ(vma, vm_file);
  if (!file) return 0; /* anonymous memory made executable (JITs): not the gate's */
  struct ctrust_gate_container* gc = gate_container(bpf_get_current_task_btf());
  if (!gc) return 0;
  if (gate_vouched(gc->number, BPF_CORE_READ(file, f_inode))) return 0;
  gate_report(gc, CTRUST_BPF_MAP_MPROTECT, file, -1, CTRUST_BPF_MAP_LSM);
  return lsm_verdict(gc);
}

SEC("lsm/shm_shmat")
int BPF_PROG(ctrust_lsm_shmat, struct kern_ipc_perm* perm, char* shmaddr, int shmflg, int ret) {
  if (ret != 0) return ret;
  if (!(shmflg & SHM_EXEC)) return 0;
  struct ctrust_gate_container* gc = gate_container(bpf_get_current_task_btf());
  if (!gc) return 0;
  gate_report(gc, CTRUST_BPF_MAP_SHMAT, NULL, -1, CTRUST_BPF_MAP_LSM);
  return lsm_verdict(gc);
}
