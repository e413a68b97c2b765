#include "agent/cgroup.h"

#include <fcntl.h>
#include <mntent.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <memory>

#include "util/file.h"
#include "util/text.h"

namespace ctrust::agent {

Result<std::string> parse_proc_cgroup_v2(std::string_view text) {
  while (!text.empty()) {
    std::string_view line = next_line(text);
    if (line.substr(0, 3) != "0::") continue;
    std::string_view path = line.substr(3);
    if (path.empty() || path[0] != '/') {
      return Error(Errc::kFormat, "cgroup v2 path is not absolute");
    }
    // " (deleted)" follows the path of a cgroup removed while the task was in it.
    if (path.find('\0') != std::string_view::npos || path.find("/../") != std::string_view::npos ||
        path.ends_with("/..")) {
      return Error(Errc::kFormat, "cgroup v2 path is malformed");
    }
    return std::string(path);
  }
  return Error(Errc::kNotFound, "no cgroup v2 line (0::) in /proc/PID/cgroup");
}

Result<std::string> cgroup2_mount() {
  std::unique_ptr<FILE, int (*)(FILE*)> mounts(::setmntent("/proc/self/mounts", "re"), ::endmntent);
  if (!mounts) return errno_error("reading /proc/self/mounts", errno);
  while (mntent* m = ::getmntent(mounts.get())) {
    if (std::string_view(m->mnt_type) == "cgroup2") return std::string(m->mnt_dir);
  }
  return Error(Errc::kUnsupported,
               "no cgroup v2 hierarchy is mounted: the exec gate tells containers apart by it "
               "(mount -t cgroup2 none /sys/fs/cgroup/unified)");
}

Result<bool> join_host_cgroup_namespace() {
  struct stat self {};
  struct stat init {};
  if (::stat("/proc/self/ns/cgroup", &self) != 0) {
    return errno_error("stat /proc/self/ns/cgroup", errno);
  }
  if (::stat("/proc/1/ns/cgroup", &init) != 0) {
    // PID 1 belongs to an outer user namespace (a sandbox the host itself runs in): not
    // ours to compare with or join; the agent's namespace is taken as the host's.
    if (errno == EACCES || errno == EPERM) return false;
    return errno_error("stat /proc/1/ns/cgroup", errno);
  }
  if (self.st_dev == init.st_dev && self.st_ino == init.st_ino) return false;
  UniqueFd ns(::open("/proc/1/ns/cgroup", O_RDONLY | O_CLOEXEC));
  if (!ns) return errno_error("opening /proc/1/ns/cgroup", errno);
  if (::setns(ns.get(), CLONE_NEWCGROUP) != 0) {
    return errno_error(
        "joining the host's cgroup namespace (the agent runs in a cgroup namespace of its own, "
        "where container cgroups have no host path; run it privileged, with the host's PID "
        "namespace)",
        errno);
  }
  return true;
}

namespace {

Result<std::uint64_t> cgroup_id(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return errno_error("stat " + path, errno);
  if (!S_ISDIR(st.st_mode)) return Error(Errc::kFormat, path + " is not a cgroup directory");
  return static_cast<std::uint64_t>(st.st_ino);
}

}  // namespace

Result<ContainerCgroup> container_cgroup(pid_t pid, const std::string& id) {
  CTRUST_ASSIGN_OR_RETURN(std::string mount, cgroup2_mount());
  std::string proc = "/proc/" + std::to_string(pid) + "/cgroup";
  CTRUST_ASSIGN_OR_RETURN(Bytes bytes, read_file(proc, 1 << 16));
  CTRUST_ASSIGN_OR_RETURN(std::string rel,
                          parse_proc_cgroup_v2(std::string_view(
                              reinterpret_cast<const char*>(bytes.data()), bytes.size())));
  ContainerCgroup cg;
  if (rel != "/") {
    cg.path = mount + rel;
    cg.created = rel.starts_with("/ctrust/");  // made by an agent before a restart
    CTRUST_ASSIGN_OR_RETURN(cg.id, cgroup_id(cg.path));
    return cg;
  }
  // In the root with every other process of the host: give it one of its own.
  std::string parent = mount + "/ctrust";
  if (::mkdir(parent.c_str(), 0755) != 0 && errno != EEXIST) {
    return errno_error("making " + parent, errno);
  }
  cg.path = parent + "/" + id;
  if (::mkdir(cg.path.c_str(), 0755) != 0 && errno != EEXIST) {
    return errno_error("making " + cg.path, errno);
  }
  cg.created = true;
  std::string procs = cg.path + "/cgroup.procs";
  std::string text = std::to_string(pid);
  UniqueFd fd(::open(procs.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd || ::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    int err = errno;
    release_cgroup(cg);
    return errno_error("moving process " + text + " into " + cg.path, err);
  }
  auto got = cgroup_id(cg.path);
  if (!got) {
    release_cgroup(cg);
    return std::move(got).error();
  }
  cg.id = *got;
  return cg;
}

void release_cgroup(const ContainerCgroup& cgroup) {
  if (cgroup.created && !cgroup.path.empty()) (void)::rmdir(cgroup.path.c_str());
}

Result<bool> parse_cgroup_populated(std::string_view text) {
  while (!text.empty()) {
    std::string_view line = next_line(text);
    if (!line.starts_with("populated ")) continue;
    std::string_view value = line.substr(10);
    if (value == "0") return false;
    if (value == "1") return true;
    return Error(Errc::kFormat, "cgroup.events: populated is neither 0 nor 1");
  }
  return Error(Errc::kFormat, "cgroup.events has no populated key");
}

Result<bool> cgroup_populated(int fd) {
  char buf[512];
  ssize_t n;
  do {
    n = ::pread(fd, buf, sizeof(buf), 0);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return errno_error("reading cgroup.events", errno);
  return parse_cgroup_populated(std::string_view(buf, static_cast<std::size_t>(n)));
}

}  // namespace ctrust::agent
