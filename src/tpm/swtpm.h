// Running swtpm (a software TPM 2.0) over UNIX sockets.
//
// A Swtpm is one swtpm process serving one state directory: the command socket is
// `socket`, the control socket `socket + ".ctrl"` (what the tss2 swtpm TCTI expects), so
// tcti() is "swtpm:path=SOCKET". Two ownership modes:
//   - child (default): the process is our child and is stopped (SIGTERM, then SIGKILL)
//     when the Swtpm is destroyed; tests and the agent's vTPMs use this;
//   - detached: swtpm daemonises and writes a pid file, so it outlives this process (the
//     `ctrust vtpm` commands, which have no agent to own it); stop() ends it.
// start() returns once the TPM answers on its socket, or with an error that says why
// (swtpm missing, state directory unusable, swtpm exited with its log's last line).
//
// Thread safety: one owner; the process handle is move-only.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>

#include "util/result.h"
#include "util/unique_handle.h"

namespace ctrust::tpm {

enum class SwtpmStartup : std::uint8_t {
  kClear,  // TPM2_Startup(CLEAR): fresh PCRs (a new container)
  kState,  // TPM2_Startup(STATE): resume PCRs saved by a TPM2_Shutdown(STATE)
};

struct SwtpmOptions {
  std::string state_dir;  // must exist; swtpm keeps tpm2-00.permall here
  std::string socket;     // command socket path; control socket is socket + ".ctrl"
  SwtpmStartup startup = SwtpmStartup::kClear;
  bool detached = false;
  std::string binary = "swtpm";
  std::chrono::milliseconds timeout{5000};
};

struct ChildTraits {
  using Value = pid_t;
  static constexpr pid_t invalid() { return -1; }
  // SIGTERM, wait up to a second, then SIGKILL; always reaps.
  static void release(pid_t pid);
};
using UniqueChild = UniqueHandle<ChildTraits>;

class Swtpm {
 public:
  static Result<Swtpm> start(const SwtpmOptions& options);
  Swtpm() = default;

  std::string tcti() const { return "swtpm:path=" + options_.socket; }
  const SwtpmOptions& options() const { return options_; }
  pid_t pid() const { return detached_pid_ > 0 ? detached_pid_ : child_.get(); }
  bool running() const;
  // Stops the process: SIGTERM, then SIGKILL after a grace period. Idempotent.
  void stop();
  // Gives up ownership of a child so that it keeps running (detached mode only matters
  // for children started by a process that exits).
  pid_t release();

 private:
  SwtpmOptions options_;
  UniqueChild child_;
  pid_t detached_pid_ = -1;
};

// The path of an executable: `name` itself when it contains a slash, else found on PATH;
// an error naming the package to install when there is none.
Result<std::string> find_executable(const std::string& name);
// In a freshly forked child: stdin from /dev/null, stdout and stderr to `out_fd` (or
// /dev/null when -1), every other descriptor closed, then execv. Never returns.
[[noreturn]] void exec_child(char* const argv[], int out_fd);
// The same set-up, from posix_spawn: the child shares the caller's memory until it execs
// (vfork), so that, unlike fork, starting a tool copies no page tables and leaves no page of
// a large multithreaded caller copy-on-write while the child starts: the agent's other
// threads (a container's start among them) are not stalled by it. The child inherits the
// calling thread's CPU priority. Its pid, or an error.
Result<pid_t> spawn_child(char* const argv[], int out_fd);

// The last non-empty line of a log file (swtpm's, swtpm_setup's), or "" when unreadable.
std::string log_last_line(const std::string& path);
// The pid in a pid file.
Result<pid_t> read_pid_file(const std::string& path);

// True if a process with `pid` exists and is a swtpm serving `socket` (checked through
// /proc/PID/cmdline, so a recycled pid is not mistaken for our swtpm).
bool swtpm_alive(pid_t pid, const std::string& socket);
// Stops a detached swtpm by pid (after swtpm_alive checks it); waits until it is gone.
Result<void> stop_swtpm(pid_t pid, const std::string& socket);

}  // namespace ctrust::tpm
