#include "tpm/swtpm.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <csignal>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "util/file.h"

namespace ctrust::tpm {
namespace {

using namespace std::chrono_literals;

constexpr auto kPollInterval = 500us;
constexpr auto kStopGrace = 2000ms;

}  // namespace

// Finds `name` on PATH before forking (execv after fork must not allocate).
Result<std::string> find_executable(const std::string& name) {
  std::string found = find_in_path(name);
  if (!found.empty()) return found;
  if (name.find('/') != std::string::npos) {
    return Error(Errc::kNotFound, "'" + name + "' is not an executable file");
  }
  return Error(
      Errc::kNotFound,
      name + " is not installed (not on PATH); install the swtpm and swtpm-tools packages");
}

void exec_child(char* const argv[], int out_fd) {
  int devnull = ::open("/dev/null", O_RDWR);
  if (devnull >= 0) ::dup2(devnull, 0);
  int out = out_fd >= 0 ? out_fd : devnull;
  if (out >= 0) {
    ::dup2(out, 1);
    ::dup2(out, 2);
  }
  // No descriptor of ours may live on in the child: a daemon holding a copy of a
  // connection to another swtpm keeps that swtpm from ever seeing the client go away.
  ::close_range(3, ~0U, 0);
  // Signals the agent blocks for its own use (lease breaks) must not stay blocked here.
  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::execv(argv[0], argv);
  ::_exit(127);
}

Result<pid_t> spawn_child(char* const argv[], int out_fd) {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  if (int err = ::posix_spawn_file_actions_init(&actions); err != 0) {
    return errno_error("posix_spawn_file_actions_init", err);
  }
  if (int err = ::posix_spawnattr_init(&attr); err != 0) {
    ::posix_spawn_file_actions_destroy(&actions);
    return errno_error("posix_spawnattr_init", err);
  }
  int err = ::posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDWR, 0);
  if (err == 0 && out_fd >= 0) {
    err = ::posix_spawn_file_actions_adddup2(&actions, out_fd, 1);
  } else if (err == 0) {
    err = ::posix_spawn_file_actions_adddup2(&actions, 0, 1);
  }
  if (err == 0) err = ::posix_spawn_file_actions_adddup2(&actions, 1, 2);
  // No descriptor of ours may live on in the child (exec_child says why).
  if (err == 0) err = ::posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  sigset_t none;
  ::sigemptyset(&none);
  if (err == 0) err = ::posix_spawnattr_setsigmask(&attr, &none);
  if (err == 0) err = ::posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  pid_t pid = -1;
  if (err == 0) err = ::posix_spawn(&pid, argv[0], &actions, &attr, argv, environ);
  ::posix_spawnattr_destroy(&attr);
  ::posix_spawn_file_actions_destroy(&actions);
  if (err != 0) return errno_error(std::string("starting ") + argv[0], err);
  return pid;
}

namespace {

Result<UniqueFd> connect_unix(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof(addr.sun_path)) {
    return Error(Errc::kInvalidArgument, "socket path too long: " + path);
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return errno_error("socket", errno);
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return errno_error("connecting to " + path, errno);
  }
  return fd;
}

// Sends TPM2_GetRandom(8) and waits for a response with a success code: the TPM answers.
Result<void> probe(const std::string& socket) {
  CTRUST_ASSIGN_OR_RETURN(UniqueFd fd, connect_unix(socket));
  static constexpr std::array<std::uint8_t, 12> kGetRandom = {0x80, 0x01, 0x00, 0x00, 0x00, 0x0c,
                                                              0x00, 0x00, 0x01, 0x7b, 0x00, 0x08};
  CTRUST_TRY(write_all(fd.get(), kGetRandom));
  std::array<std::uint8_t, 64> response{};
  std::size_t got = 0;
  while (got < 10) {
    ssize_t n = ::read(fd.get(), response.data() + got, response.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Error(Errc::kIo, "swtpm closed the connection");
    got += static_cast<std::size_t>(n);
  }
  std::uint32_t rc = (std::uint32_t{response[6]} << 24) | (std::uint32_t{response[7]} << 16) |
                     (std::uint32_t{response[8]} << 8) | response[9];
  if (rc != 0) {
    return Error(Errc::kTpm,
                 "swtpm answers with TPM error " + std::to_string(rc) +
                     " (startup failed: was the saved state valid?)",
                 rc);
  }
  return ok_result();
}

std::string describe_exit(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "was killed by signal " + std::to_string(WTERMSIG(status));
  return "stopped";
}

// A zombie counts as gone: a daemon's parent is init, which may reap it late (or, in some
// sandboxes, never), and it serves nothing.
bool process_exists(pid_t pid) {
  if (::kill(pid, 0) != 0 && errno != EPERM) return false;
  auto stat = read_file("/proc/" + std::to_string(pid) + "/stat", 4096);
  if (!stat) return false;
  std::string text(stat->begin(), stat->end());
  auto paren = text.rfind(')');
  if (paren == std::string::npos || paren + 2 >= text.size()) return true;
  char state = text[paren + 2];
  return state != 'Z' && state != 'X';
}

}  // namespace

void ChildTraits::release(pid_t pid) {
  if (pid <= 0) return;
  ::kill(pid, SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + kStopGrace;
  int status = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid || (r < 0 && errno == ECHILD)) return;
    std::this_thread::sleep_for(1ms);
  }
  ::kill(pid, SIGKILL);
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
}

Result<Swtpm> Swtpm::start(const SwtpmOptions& options) {
  struct stat st {};
  if (::stat(options.state_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Error(Errc::kNotFound, "vTPM state directory " + options.state_dir + " does not exist");
  }
  for (const std::string* p : {&options.state_dir, &options.socket}) {
    if (p->find(',') != std::string::npos) {
      return Error(Errc::kInvalidArgument, "swtpm cannot use a path with a comma: " + *p);
    }
  }
  CTRUST_ASSIGN_OR_RETURN(std::string binary, find_executable(options.binary));
  std::string ctrl = options.socket + ".ctrl";
  // A socket left by a dead swtpm would make bind() fail; one that answers is in use.
  for (const std::string& path : {options.socket, ctrl}) {
    if (::access(path.c_str(), F_OK) == 0) {
      if (connect_unix(path)) {
        return Error(Errc::kInvalidArgument, "socket " + path + " is in use by another process");
      }
      ::unlink(path.c_str());
    }
  }
  std::string log_path = options.state_dir + "/swtpm.log";
  std::string pid_path = options.state_dir + "/swtpm.pid";
  ::unlink(pid_path.c_str());
  std::vector<std::string> args = {
      binary,
      "socket",
      "--tpm2",
      "--server",
      "type=unixio,path=" + options.socket,
      "--ctrl",
      "type=unixio,path=" + ctrl,
      "--tpmstate",
      "dir=" + options.state_dir + ",mode=0600",
      "--flags",
      std::string("not-need-init,") +
          (options.startup == SwtpmStartup::kClear ? "startup-clear" : "startup-state"),
      "--log",
      "file=" + log_path + ",level=1,truncate",
  };
  if (options.detached) {
    args.insert(args.end(), {"--daemon", "--pid", "file=" + pid_path});
  }
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  pid_t pid = -1;
  if (options.detached) {
    // A vTPM, started while containers start: spawned, never forked (spawn_child).
    CTRUST_ASSIGN_OR_RETURN(pid, spawn_child(argv.data(), -1));
  } else {
    pid_t parent = ::getpid();
    pid = ::fork();
    if (pid < 0) return errno_error("fork", errno);
    if (pid == 0) {
      // Only async-signal-safe calls between fork and exec. A parent-death signal is what
      // posix_spawn cannot set up.
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != parent) ::_exit(127);
      exec_child(argv.data(), -1);
    }
  }
  Swtpm swtpm;
  swtpm.options_ = options;
  if (options.detached) {
    // swtpm --daemon forks; the process we started exits once the daemon is set up.
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      std::string tail = log_last_line(log_path);
      return Error(Errc::kIo, "swtpm " + describe_exit(status) + (tail.empty() ? "" : ": " + tail));
    }
    CTRUST_ASSIGN_OR_RETURN(swtpm.detached_pid_, read_pid_file(pid_path));
  } else {
    swtpm.child_.reset(pid);
  }

  auto deadline = std::chrono::steady_clock::now() + options.timeout;
  for (;;) {
    if (!options.detached) {
      int status = 0;
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        (void)swtpm.child_.release();
        std::string tail = log_last_line(log_path);
        return Error(Errc::kIo,
                     "swtpm " + describe_exit(status) + (tail.empty() ? "" : ": " + tail));
      }
    } else if (!process_exists(swtpm.detached_pid_)) {
      std::string tail = log_last_line(log_path);
      return Error(Errc::kIo, "swtpm exited during start-up" + (tail.empty() ? "" : ": " + tail));
    }
    auto answered = probe(options.socket);
    if (answered) return swtpm;
    if (answered.error().code() == Errc::kTpm) {
      swtpm.stop();
      return std::move(answered).error();
    }
    if (std::chrono::steady_clock::now() > deadline) {
      swtpm.stop();
      return Error(Errc::kIo, "swtpm did not answer on " + options.socket + " within " +
                                  std::to_string(options.timeout.count()) + " ms");
    }
    std::this_thread::sleep_for(kPollInterval);
  }
}

bool Swtpm::running() const {
  if (detached_pid_ > 0) return swtpm_alive(detached_pid_, options_.socket);
  if (!child_) return false;
  int status = 0;
  return ::waitpid(child_.get(), &status, WNOHANG) == 0;
}

void Swtpm::stop() {
  if (detached_pid_ > 0) {
    (void)stop_swtpm(detached_pid_, options_.socket);
    detached_pid_ = -1;
  }
  child_.reset();
}

pid_t Swtpm::release() {
  if (detached_pid_ > 0) return std::exchange(detached_pid_, -1);
  return child_.release();
}

std::string log_last_line(const std::string& path) {
  auto text = read_file(path, 1 << 20);
  if (!text) return "";
  std::string s(text->begin(), text->end());
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  auto nl = s.rfind('\n');
  return nl == std::string::npos ? s : s.substr(nl + 1);
}

Result<pid_t> read_pid_file(const std::string& path) {
  CTRUST_ASSIGN_OR_RETURN(Bytes bytes, read_file(path, 64));
  std::string text(bytes.begin(), bytes.end());
  char* end = nullptr;
  long pid = std::strtol(text.c_str(), &end, 10);
  if (pid <= 0 || end == text.c_str()) return Error(Errc::kFormat, "bad swtpm pid file " + path);
  return static_cast<pid_t>(pid);
}

bool swtpm_alive(pid_t pid, const std::string& socket) {
  if (pid <= 0) return false;
  auto cmdline = read_file("/proc/" + std::to_string(pid) + "/cmdline", 1 << 16);
  if (!cmdline) return false;
  std::string text(cmdline->begin(), cmdline->end());
  std::string needle = std::string("path=") + socket;
  // Arguments are NUL-separated; the server argument is "type=unixio,path=SOCKET".
  return text.find("swtpm") != std::string::npos && text.find(needle + '\0') != std::string::npos;
}

Result<void> stop_swtpm(pid_t pid, const std::string& socket) {
  if (!swtpm_alive(pid, socket)) return ok_result();
  if (::kill(pid, SIGTERM) != 0 && errno != ESRCH) return errno_error("stopping swtpm", errno);
  auto deadline = std::chrono::steady_clock::now() + kStopGrace;
  while (process_exists(pid)) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      deadline = std::chrono::steady_clock::now() + kStopGrace;
    }
    std::this_thread::sleep_for(1ms);
  }
  ::unlink(socket.c_str());
  ::unlink((socket + ".ctrl").c_str());
  return ok_result();
}

}  // namespace ctrust::tpm
