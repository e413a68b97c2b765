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
// Thread safety: one thread polls; marks may be added from others.
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

  // Waits up to `timeout_ms` (-1: forever) for events, decides and answers each; returns
  // how many were answered (0 on timeout).
  using Decide = std::function<Verdict(const PermissionEvent&)>;
  Result<std::size_t> poll_once(const Decide& decide, int timeout_ms);

  int fd() const { return fd_.get(); }

 private:
  FanotifyMonitor(UniqueFd fd, MonitorOptions options) : fd_(std::move(fd)), options_(options) {}
  std::uint64_t mask() const;
  UniqueFd fd_;
  MonitorOptions options_;
};

}  // namespace ctrust::events
