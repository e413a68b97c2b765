#include "events/fanotify.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/fanotify.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

namespace ctrust::events {
namespace {

// Large enough for many events per read; events are variable-length records.
constexpr std::size_t kBufferSize = std::size_t{64} * 1024;

std::string fd_path(int fd) {
  std::array<char, 4096> buf{};
  std::string link = "/proc/self/fd/" + std::to_string(fd);
  ssize_t n = ::readlink(link.c_str(), buf.data(), buf.size() - 1);
  return n > 0 ? std::string(buf.data(), static_cast<std::size_t>(n)) : std::string();
}

}  // namespace

Result<FanotifyMonitor> FanotifyMonitor::create(const MonitorOptions& options) {
  if (!options.exec && !options.open) {
    return Error(Errc::kInvalidArgument, "a monitor must ask about execs, opens or both");
  }
  int fd = ::fanotify_init(FAN_CLASS_CONTENT | FAN_CLOEXEC | FAN_NONBLOCK,
                           O_RDONLY | O_LARGEFILE | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    return errno_error(
        err == EPERM ? "fanotify_init (needs CAP_SYS_ADMIN: run as root)" : "fanotify_init", err);
  }
  return FanotifyMonitor(UniqueFd(fd), options);
}

std::uint64_t FanotifyMonitor::mask() const {
  std::uint64_t m = 0;
  if (options_.exec) m |= FAN_OPEN_EXEC_PERM;
  if (options_.open) m |= FAN_OPEN_PERM;
  return m;
}

Result<void> FanotifyMonitor::mark_filesystem(const std::string& path) {
  if (::fanotify_mark(fd_.get(), FAN_MARK_ADD | FAN_MARK_FILESYSTEM, mask(), AT_FDCWD,
                      path.c_str()) != 0) {
    return errno_error("marking the filesystem of " + path, errno);
  }
  return ok_result();
}

Result<void> FanotifyMonitor::mark_mount(const std::string& path) {
  if (::fanotify_mark(fd_.get(), FAN_MARK_ADD | FAN_MARK_MOUNT, mask(), AT_FDCWD, path.c_str()) !=
      0) {
    return errno_error("marking the mount at " + path, errno);
  }
  return ok_result();
}

Result<std::size_t> FanotifyMonitor::poll_once(const Decide& decide, int timeout_ms) {
  pollfd p{fd_.get(), POLLIN, 0};
  int ready = ::poll(&p, 1, timeout_ms);
  if (ready < 0) {
    if (errno == EINTR) return std::size_t{0};
    return errno_error("poll on fanotify", errno);
  }
  if (ready == 0) return std::size_t{0};
  alignas(fanotify_event_metadata) std::array<char, kBufferSize> buffer;
  ssize_t len = ::read(fd_.get(), buffer.data(), buffer.size());
  if (len < 0) {
    if (errno == EAGAIN || errno == EINTR) return std::size_t{0};
    return errno_error("reading fanotify events", errno);
  }
  std::size_t answered = 0;
  Result<void> first_error = ok_result();
  auto* meta = reinterpret_cast<fanotify_event_metadata*>(buffer.data());
  for (; FAN_EVENT_OK(meta, len); meta = FAN_EVENT_NEXT(meta, len)) {
    if (meta->vers != FANOTIFY_METADATA_VERSION) {
      return Error(Errc::kUnsupported,
                   "fanotify metadata version " + std::to_string(meta->vers) + " is not supported");
    }
    UniqueFd file(meta->fd);     // closed after the answer
    if (meta->fd < 0) continue;  // an overflow notice carries no file
    bool permission = (meta->mask & (FAN_OPEN_EXEC_PERM | FAN_OPEN_PERM)) != 0;
    if (!permission) continue;
    PermissionEvent event;
    event.exec = (meta->mask & FAN_OPEN_EXEC_PERM) != 0;
    event.pid = meta->pid;
    event.fd = meta->fd;
    event.path = fd_path(meta->fd);
    Verdict verdict = decide ? decide(event) : options_.on_error;
    fanotify_response response{};
    response.fd = meta->fd;
    response.response = verdict == Verdict::kAllow ? FAN_ALLOW : FAN_DENY;
    if (::write(fd_.get(), &response, sizeof(response)) != sizeof(response)) {
      // The asker stays blocked if this fails; report it (closing the monitor frees it).
      if (first_error) first_error = errno_error("answering a fanotify event", errno);
      continue;
    }
    ++answered;
  }
  if (!first_error) return std::move(first_error).error();
  return answered;
}

}  // namespace ctrust::events
