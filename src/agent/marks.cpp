#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include <sys/statfs.h>
#include "agent/agent_impl.h"

#include <set>

#include "agent/mountinfo.h"
#include "util/file.h"

namespace ctrust::agent {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {
constexpr decltype(statfs::f_type) kOverlayMagic = 0x794c7630;
constexpr decltype(statfs::f_type) kTmpfsMagic = 0x01021994;
}  // namespace

// --- containers ---------------------------------------------------------------------------

Result<void> AgentImpl::mark_container(Container& c, const OciConfig& config, bool started) {
  std::string proc_root = "/proc/" + std::to_string(c.pid) + "/root";
  UniqueFd host_root(::open(proc_root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!host_root) return errno_error("opening " + proc_root, errno);
  // The root filesystem as the container's mount namespace has it: under the runtime's
  // view at createRuntime (before pivot_root), or the process's root once it runs.
  CTRUST_ASSIGN_OR_RETURN(UniqueFd root, started ? open_in_root(host_root.get(), "/")
                                                 : open_in_root(host_root.get(), c.rootfs));
  auto add = [&](UniqueFd fd, const std::string& what, const std::string& dest) -> Result<void> {
    CTRUST_ASSIGN_OR_RETURN(FileId id, file_id(fd.get()));
    Mark m;
    m.what = what;
    m.dest = dest;
    m.dev = id.dev;
    m.mnt_id = id.mnt_id;
    if (std::string upper = overlay_upper(c.pid, id.mnt_id); !upper.empty()) {
      m.upper.reset(::open(upper.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
      if (!m.upper) {
        m.no_cache = true;
        spdlog::warn(
            "{}: overlay upper directory {} is out of reach: digests of files on {} "
            "are not cached, and writable mappings of them cannot be seen",
            c.id, upper, what);
      }
    }
    struct statfs fs_type {};
    bool tmpfs = ::fstatfs(fd.get(), &fs_type) == 0 && fs_type.f_type == kTmpfsMagic;
    if (id.mount_root && id.mnt_id != 0) {
      // A tmpfs is scratch space: opens there are not asked about (creating and reading
      // files costs nothing), execs are, and a library mapped from it is the exec gate's.
      m.exec_only = tmpfs && dest != "/";
      CTRUST_TRY(monitor_->mark_mount_fd(fd.get(), what, m.exec_only));
    } else {
      // Not a mount of its own (yet): the whole filesystem, events told apart by mount
      // namespace. This also sees the host's accesses to that filesystem.
      CTRUST_TRY(monitor_->mark_filesystem_fd(fd.get(), what));
      m.filesystem = true;
      spdlog::info("{}: {} is not a mount of its own; marked its whole filesystem", c.id, what);
    }
    struct statfs sfs {};
    if (!m.filesystem && !m.no_cache && ::fstatfs(fd.get(), &sfs) == 0 &&
        (sfs.f_type == kOverlayMagic || sfs.f_type == kTmpfsMagic)) {
      m.kernel_cache->store(true);
    }
    m.fd = std::move(fd);
    c.marks.push_back(std::move(m));
    return ok_result();
  };
  CTRUST_TRY(add(std::move(root), "the root filesystem " + c.rootfs, "/"));
  CTRUST_ASSIGN_OR_RETURN(UniqueFd root_again, started ? open_in_root(host_root.get(), "/")
                                                       : open_in_root(host_root.get(), c.rootfs));
  static const std::set<std::string> kNoExec = {"proc",   "sysfs",  "cgroup",     "cgroup2",
                                                "devpts", "mqueue", "securityfs", "debugfs"};
  for (const auto& m : config.mounts) {
    if (kNoExec.contains(m.type)) continue;
    if (std::find(m.options.begin(), m.options.end(), "noexec") != m.options.end()) continue;
    auto fd = open_in_root(root_again.get(), m.destination);
    if (!fd) {
      // The runtime mounts it later than this hook, or not at all: we cannot see it.
      return std::move(fd).error().with_context("mount " + m.destination);
    }
    auto id = file_id(fd->get());
    if (!id) return std::move(id).error();
    if (!id->mount_root) {
      if (m.type == "bind" || m.type == "tmpfs" ||
          std::find(m.options.begin(), m.options.end(), "bind") != m.options.end() ||
          std::find(m.options.begin(), m.options.end(), "rbind") != m.options.end()) {
        return Error(Errc::kNotFound,
                     "mount " + m.destination + " is not mounted in the container yet");
      }
      continue;
    }
    CTRUST_TRY(add(std::move(*fd), "the mount " + m.destination, m.destination));
    if (std::find(m.options.begin(), m.options.end(), "rbind") != m.options.end()) {
      CTRUST_TRY(mark_submounts(c, m.destination, started, root_again.get(), add));
    }
  }
  return ok_result();
}

// The mounts below an rbind volume come along with it, each a mount of its own that the
// volume's mark does not cover: each is marked too (the exec gate would otherwise stop
// even listed programs on them, having never been asked).
template <typename Add>
Result<void> AgentImpl::mark_submounts(Container& c, const std::string& destination, bool started,
                                       int root_fd, Add& add) {
  CTRUST_ASSIGN_OR_RETURN(Bytes bytes, read_file("/proc/" + std::to_string(c.pid) + "/mountinfo",
                                                 std::size_t{16} << 20));
  CTRUST_ASSIGN_OR_RETURN(
      std::vector<MountInfo> mounts,
      parse_mountinfo(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size())));
  // As the container's mount namespace names them: under the bundle's root before the
  // runtime's pivot_root (at createRuntime), under "/" once the container runs.
  std::string base = started ? std::string() : c.rootfs;
  while (!base.empty() && base.back() == '/') base.pop_back();
  std::string dest = destination;
  while (dest.size() > 1 && dest.back() == '/') dest.pop_back();
  std::string prefix = base + dest + "/";
  static const std::set<std::string> kNoExec = {"proc",   "sysfs",  "cgroup",     "cgroup2",
                                                "devpts", "mqueue", "securityfs", "debugfs"};
  for (const auto& mi : mounts) {
    if (mi.mount_point.compare(0, prefix.size(), prefix) != 0) continue;
    if (kNoExec.contains(mi.fstype)) continue;
    bool noexec = ("," + mi.options + ",").find(",noexec,") != std::string::npos;
    if (noexec) continue;
    std::string inside = mi.mount_point.substr(base.size());
    auto fd = open_in_root(root_fd, inside);
    if (!fd) return std::move(fd).error().with_context("submount " + inside);
    auto id = file_id(fd->get());
    if (!id) return std::move(id).error();
    if (!id->mount_root || id->mnt_id != mi.mnt_id) continue;  // not the mount listed: moved
    CTRUST_TRY(add(std::move(*fd), "the mount " + inside, inside));
  }
  return ok_result();
}

void AgentImpl::register_marks(const std::shared_ptr<Container>& c) {
  for (auto n : containers_.add_marks(c)) cache_->drop_owner(n);  // their ignore marks go
}

void AgentImpl::unmark_container(Container& c) {
  for (auto& m : c.marks) {
    // Another container may still need a filesystem mark.
    if (m.filesystem && !containers_.release_filesystem_mark(m.dev)) continue;
    // A mount mark goes with its mount; a filesystem mark must be removed.
    if (m.filesystem) {
      if (auto r = monitor_->unmark_filesystem_fd(m.fd.get(), m.what); !r) {
        spdlog::warn("{}: {}", c.id, r.error().message());
      }
    }
  }
}

}  // namespace ctrust::agent
