#include "events/fanotify.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/fanotify.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>

#include "util/file.h"

namespace ctrust::events {
namespace {

// Large enough for many events per read; events are variable-length records.
constexpr std::size_t kBufferSize = std::size_t{64} * 1024;

}  // namespace

Result<FanotifyMonitor> FanotifyMonitor::create(const MonitorOptions& options) {
  if (!options.exec && !options.open) {
    return Error(Errc::kInvalidArgument, "a monitor must ask about execs, opens or both");
  }
  // FAN_UNLIMITED_QUEUE: the default queue holds 16,384 events, and past that the kernel
  // allows what it would have asked about (PLATFORM_NOTES.md). Never a silent allow.
  int fd = ::fanotify_init(FAN_CLASS_CONTENT | FAN_CLOEXEC | FAN_NONBLOCK | FAN_UNLIMITED_QUEUE,
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

Result<void> FanotifyMonitor::mark_fd(unsigned flags, int fd, const std::string& what,
                                      std::uint64_t mask) {
  // fanotify_mark(dirfd, NULL) refuses O_PATH descriptors; the magic link reaches the
  // very object the descriptor holds (its mount included), without resolving a path again.
  std::string link = "/proc/self/fd/" + std::to_string(fd);
  if (::fanotify_mark(fd_.get(), flags, mask, AT_FDCWD, link.c_str()) != 0) {
    int err = errno;
    // Removing a mark that is not there is not an error: the goal is reached.
    if ((flags & FAN_MARK_REMOVE) != 0 && err == ENOENT) return ok_result();
    return errno_error(((flags & FAN_MARK_REMOVE) != 0 ? "unmarking " : "marking ") + what, err);
  }
  return ok_result();
}

Result<void> FanotifyMonitor::mark_filesystem_fd(int fd, const std::string& what) {
  return mark_fd(FAN_MARK_ADD | FAN_MARK_FILESYSTEM, fd, "the filesystem of " + what, mask());
}
Result<void> FanotifyMonitor::mark_mount_fd(int fd, const std::string& what, bool exec_only) {
  std::uint64_t m = mask();
  if (exec_only) m &= ~static_cast<std::uint64_t>(FAN_OPEN_PERM);
  return mark_fd(FAN_MARK_ADD | FAN_MARK_MOUNT, fd, "the mount at " + what, m);
}
Result<void> FanotifyMonitor::unmark_filesystem_fd(int fd, const std::string& what) {
  return mark_fd(FAN_MARK_REMOVE | FAN_MARK_FILESYSTEM, fd, "the filesystem of " + what, mask());
}

Result<void> FanotifyMonitor::ignore(int fd) {
  if (::fanotify_mark(fd_.get(), FAN_MARK_ADD | FAN_MARK_IGNORED_MASK, mask(), fd, nullptr) != 0) {
    return errno_error("adding an ignore mark", errno);
  }
  return ok_result();
}

Result<void> FanotifyMonitor::ignore_data_opens(int fd) {
  if (::fanotify_mark(
          fd_.get(),
          FAN_MARK_ADD | FAN_MARK_IGNORED_MASK | FAN_MARK_IGNORED_SURV_MODIFY | FAN_MARK_EVICTABLE,
          FAN_OPEN_PERM, fd, nullptr) != 0) {
    // EEXIST: the inode has a (non-evictable) mark of the digest cache already.
    if (errno == EEXIST) return ok_result();
    return errno_error("adding an ignore mark for a data file", errno);
  }
  return ok_result();
}

Result<void> FanotifyMonitor::unignore(int fd) {
  if (::fanotify_mark(fd_.get(), FAN_MARK_REMOVE | FAN_MARK_IGNORED_MASK, mask(), fd, nullptr) !=
      0) {
    if (errno == ENOENT) return ok_result();  // not there: nothing to undo
    return errno_error("removing an ignore mark", errno);
  }
  return ok_result();
}

PendingEvent::PendingEvent(PendingEvent&& other) noexcept
    : group_fd_(other.group_fd_),
      file_(std::move(other.file_)),
      event_(std::move(other.event_)),
      on_error_(other.on_error_),
      answered_(std::exchange(other.answered_, true)) {}

PendingEvent::~PendingEvent() {
  if (!answered_) (void)answer(on_error_);
}

Result<void> PendingEvent::answer(Verdict verdict) {
  if (answered_) return ok_result();
  answered_ = true;
  fanotify_response response{};
  response.fd = file_.get();
  response.response = verdict == Verdict::kAllow ? FAN_ALLOW : FAN_DENY;
  // One write per response; the kernel takes it whole or not at all.
  if (::write(group_fd_, &response, sizeof(response)) != sizeof(response)) {
    // The asker stays blocked if this fails; closing the monitor frees it.
    return errno_error("answering a fanotify event", errno);
  }
  return ok_result();
}

UniqueFd PendingEvent::take_fd() {
  if (!answered_) (void)answer(on_error_);
  return std::move(file_);
}

Result<std::size_t> FanotifyMonitor::poll_dispatch(const Dispatch& dispatch, int timeout_ms) {
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
  std::size_t handed = 0;
  auto* meta = reinterpret_cast<fanotify_event_metadata*>(buffer.data());
  std::optional<Error> version_error;
  for (; FAN_EVENT_OK(meta, len); meta = FAN_EVENT_NEXT(meta, len)) {
    UniqueFd file(meta->fd);  // owned from here: answered and closed on every path
    if ((meta->mask & FAN_Q_OVERFLOW) != 0) ++overflows_;
    if (meta->fd < 0) continue;  // an overflow notice carries no file
    bool permission = (meta->mask & (FAN_OPEN_EXEC_PERM | FAN_OPEN_PERM)) != 0;
    if (!permission) continue;
    PermissionEvent event;
    event.exec = (meta->mask & FAN_OPEN_EXEC_PERM) != 0;
    event.pid = meta->pid;
    event.fd = meta->fd;
    event.path = read_link("/proc/self/fd/" + std::to_string(meta->fd));
    PendingEvent pending(fd_.get(), std::move(file), std::move(event), options_.on_error);
    if (meta->vers != FANOTIFY_METADATA_VERSION) {
      // Answered with the fail verdict by the destructor; the rest still get answers.
      if (!version_error) {
        version_error =
            Error(Errc::kUnsupported,
                  "fanotify metadata version " + std::to_string(meta->vers) + " is not supported");
      }
      continue;
    }
    if (!dispatch) continue;
    ++handed;
    dispatch(std::move(pending));
  }
  if (version_error) return std::move(*version_error);
  return handed;
}

Result<std::size_t> FanotifyMonitor::poll_once(const Decide& decide, int timeout_ms) {
  std::optional<Error> first_error;
  std::size_t answered = 0;
  auto handed = poll_dispatch(
      [&](PendingEvent pending) {
        Verdict verdict = decide ? decide(pending.event()) : options_.on_error;
        if (auto r = pending.answer(verdict); !r) {
          if (!first_error) first_error = std::move(r).error();
          return;
        }
        ++answered;
      },
      timeout_ms);
  if (!handed) return std::move(handed).error();
  if (first_error) return std::move(*first_error);
  return answered;
}

}  // namespace ctrust::events
