// A container's cgroup v2, which the exec gate (events/bpf_observer.h) uses to tell which
// container a task belongs to: unlike a mount namespace, a task cannot leave it by
// unshare(), and every task it forks is born in it.
//
// On a host whose container runtime puts containers in a cgroup v2 of their own (cgroup v2
// hosts, and runc on hybrid hosts) that cgroup is used as it is. A container left in the
// root of the v2 hierarchy (a hybrid host whose runtime only manages v1) is moved into a
// cgroup the agent makes for it, CGROUP2/ctrust/ID, before its first instruction; no
// controller is enabled there, so the runtime's v1 limits are untouched.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "util/result.h"

namespace ctrust::agent {

struct ContainerCgroup {
  std::uint64_t id = 0;  // the cgroup directory's inode number: the kernel's cgroup id
  std::string path;      // host path of the directory
  bool created = false;  // made by the agent (removed again by release_cgroup())
};

// The v2 path ("/a/b") in the text of /proc/PID/cgroup: its "0::" line. Errors when there
// is none (a v1-only host) or the text is malformed.
Result<std::string> parse_proc_cgroup_v2(std::string_view text);

// Where the cgroup v2 hierarchy is mounted in the caller's mount namespace.
Result<std::string> cgroup2_mount();

// Joins the cgroup namespace of PID 1 (the host's, when the agent runs in the host's PID
// namespace) if the agent's own is another one, as a Kubernetes pod's is on cgroup v2:
// /proc/PID/cgroup names paths relative to the reader's namespace, and the agent needs the
// host's. Only the calling thread moves: call it before any thread starts. Returns whether
// it joined; false also when PID 1's namespace is out of reach (EACCES: PID 1 belongs to an
// outer user namespace); an error when the namespaces differ and it cannot join.
Result<bool> join_host_cgroup_namespace();

// The cgroup of process `pid` (the container's first process), moved as said above when
// it is in the root. `id` names the cgroup the agent makes.
Result<ContainerCgroup> container_cgroup(pid_t pid, const std::string& id);

// Removes a cgroup the agent made (once its processes are gone); nothing otherwise.
void release_cgroup(const ContainerCgroup& cgroup);

// Whether a cgroup still has processes (in it or beneath it): the "populated" key of the
// text of its cgroup.events file. An error when the key is missing or not 0 or 1.
Result<bool> parse_cgroup_populated(std::string_view text);
// The same, read through `fd` (open on cgroup.events) from the file's start. The kernel
// wakes poll/epoll on that file (POLLPRI) when the value changes: that is how the agent
// learns that a container's last process exited without a poststop hook.
Result<bool> cgroup_populated(int fd);

}  // namespace ctrust::agent
