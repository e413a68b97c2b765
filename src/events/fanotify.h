// The fanotify permission-event source: the kernel asks, before an exec or an open of a
// file on a marked filesystem completes, and waits for our verdict. This is the node
// agent's enforcement path (issue 5), and works on every kernel with fanotify permission
// events, without LSM programs or kernel patches.
//
// Rules this class keeps (PLATFORM_NOTES.md, "fanotify behaviour"):
//   - every permission event read is answered, exactly once, also on errors; an event
//     whose decision fails is answered with the monitor's fail verdict (deny by default:
//     fail-closed);
//   - the event's file descriptor is handed to the decision (read content through it,
//     never by path) and closed after the answer;
//   - closing the monitor releases any waiter (the kernel allows what is pending), but
//     only when no other process holds the group: a child forked by the agent must close
//     the fanotify descriptor before it execs (FAN_CLOEXEC acts only once execve
//     succeeds, and the exec itself may wait for this group's verdict).
//
// Answers may be given later and from another thread: poll_dispatch() hands each event to
// the caller as a PendingEvent, a move-only owner that answers exactly once, with the
// monitor's fail verdict if it is destroyed unanswered, so that no code path can leave an
// opener blocked or turn a failure into an allow.
//
// Thread safety: one thread polls; marks may be added and events answered from others.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>

#include "util/result.h"
#include "util/unique_handle.h"

namespace ctrust::events {

enum class Verdict : std::uint8_t { kAllow, kDeny };

struct PermissionEvent {
  bool exec = false;  // FAN_OPEN_EXEC_PERM (an execve or the ELF interpreter), else FAN_OPEN_PERM
  pid_t pid = 0;      // the process asking
  int fd = -1;        // the file, opened without notification; valid during the decision
  // The file's path as the kernel resolves /proc/self/fd/FD (in the asking process's
  // mount namespace's view of the marked filesystem); for messages and path rules only.
  std::string path;
};

// One permission event still to be answered. Destroying it unanswered answers the
// monitor's fail verdict. After answer(), the file descriptor may be kept (take_fd()).
class PendingEvent {
 public:
  PendingEvent(int group_fd, UniqueFd file, PermissionEvent event, Verdict on_error)
      : group_fd_(group_fd),
        file_(std::move(file)),
        event_(std::move(event)),
        on_error_(on_error) {}
  PendingEvent(PendingEvent&& other) noexcept;
  PendingEvent& operator=(PendingEvent&& other) = delete;
  PendingEvent(const PendingEvent&) = delete;
  PendingEvent& operator=(const PendingEvent&) = delete;
  ~PendingEvent();

  const PermissionEvent& event() const { return event_; }
  bool answered() const { return answered_; }
  // Writes the verdict to the kernel (once; later calls do nothing).
  Result<void> answer(Verdict verdict);
  // The event's file, kept open after the answer (e.g. to hold a lease on it).
  UniqueFd take_fd();

 private:
  int group_fd_;
  UniqueFd file_;
  PermissionEvent event_;
  Verdict on_error_;
  bool answered_ = false;
};

struct MonitorOptions {
  bool exec = true;   // ask about execs (FAN_OPEN_EXEC_PERM)
  bool open = false;  // ask about every open (FAN_OPEN_PERM): shared objects, scripts
  Verdict on_error = Verdict::kDeny;
};

class FanotifyMonitor {
 public:
  static Result<FanotifyMonitor> create(const MonitorOptions& options = {});

  // Asks about every file on the filesystem that holds `path` (FAN_MARK_FILESYSTEM).
  Result<void> mark_filesystem(const std::string& path);
  // Asks about files reached through the mount at `path` (FAN_MARK_MOUNT).
  Result<void> mark_mount(const std::string& path);
  // The same for the filesystem or mount of an open descriptor (O_PATH is enough), so a
  // caller can resolve the path safely first (openat2 RESOLVE_IN_ROOT).
  Result<void> mark_filesystem_fd(int fd, const std::string& what);
  // `exec_only`: ask about execs only on this mount, even when the monitor asks about opens.
  Result<void> mark_mount_fd(int fd, const std::string& what, bool exec_only = false);
  Result<void> unmark_filesystem_fd(int fd, const std::string& what);

  // A verdict cached in the kernel: no more permission events for the inode of `fd` (an
  // open, non-O_PATH descriptor) until unignore(). Only for files nobody can change
  // unseen (the agent holds a lease on them, see agent/digest_cache.h).
  Result<void> ignore(int fd);
  Result<void> unignore(int fd);
  // No more open events (FAN_OPEN_PERM) for the inode of `fd`, a file judged to be data:
  // an evictable ignore mark that survives modification, so it neither pins the inode nor
  // costs a round trip per open. Execs are still asked about; a data file rewritten into
  // code and mapped executable is the exec gate's (docs/EXEC_PATH.md).
  Result<void> ignore_data_opens(int fd);

  // Reads what is ready (waiting up to `timeout_ms`, -1 forever) and hands every
  // permission event to `dispatch`, which answers it now or later; returns how many.
  using Dispatch = std::function<void(PendingEvent)>;
  Result<std::size_t> poll_dispatch(const Dispatch& dispatch, int timeout_ms);

  // Waits up to `timeout_ms` (-1: forever) for events, decides and answers each; returns
  // how many were answered (0 on timeout).
  using Decide = std::function<Verdict(const PermissionEvent&)>;
  Result<std::size_t> poll_once(const Decide& decide, int timeout_ms);

  int fd() const { return fd_.get(); }
  // FAN_Q_OVERFLOW notices read so far (the queue is unlimited, so only a kernel out of
  // memory makes one): events were lost, and what they asked about was allowed unasked.
  // Read on the thread that polls.
  std::uint64_t overflows() const { return overflows_; }

 private:
  FanotifyMonitor(UniqueFd fd, MonitorOptions options) : fd_(std::move(fd)), options_(options) {}
  std::uint64_t mask() const;
  Result<void> mark_fd(unsigned flags, int fd, const std::string& what, std::uint64_t mask);
  UniqueFd fd_;
  MonitorOptions options_;
  std::uint64_t overflows_ = 0;
};

}  // namespace ctrust::events
