// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The node agent's BPF observers: every exec on the host (tp_btf/sched_process_exec) and
 * every attempt to create or enter namespaces (syscall-entry tracepoints of unshare, setns,
 * clone and clone3). They only observe: enforcement is fanotify's job (src/events/).
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

static __always_inline __u32 current_mnt_ns(void) {
  struct task_struct* task = (struct task_struct*)bpf_get_current_task();
  return BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(ctrust_exec, struct task_struct* task, pid_t old_pid, struct linux_binprm* bprm) {
  struct ctrust_bpf_exec_event* e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
  if (!e) {
    count_lost();
    return 0;
  }
  fill_header(&e->hdr, CTRUST_BPF_EVENT_EXEC, sizeof(*e));
  __u64 pid_tgid = bpf_get_current_pid_tgid();
  e->pid = (__u32)(pid_tgid >> 32);
  e->tid = (__u32)pid_tgid;
  e->ppid = BPF_CORE_READ(task, real_parent, tgid);
  e->mnt_ns = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
  e->cgroup_id = bpf_get_current_cgroup_id();
  e->flags = 0;
  e->pad = 0;

  struct file* file = BPF_CORE_READ(bprm, file);
  struct inode* inode = BPF_CORE_READ(file, f_inode);
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
