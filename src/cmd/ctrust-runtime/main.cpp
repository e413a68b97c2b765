// ctrust-runtime: an OCI runtime that adds ctrust's hooks to every container it creates and
// hands the rest to the real runtime (runtime/shim.h, docs/cli/runtime.md). Engines run it
// where they would run runc: Docker (`runtimes` in daemon.json), containerd (the runc shim's
// BinaryName), CRI-O (`[crio.runtime.runtimes.ctrust]`), Kubernetes (a RuntimeClass).
//
// Exit status: the real runtime's, once it runs; before that 1 (the bundle could not be
// given its hooks, or the configuration or runtime is unusable: the container does not
// start) or 2 (usage).
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <exception>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/control.h"
#include "runtime/shim.h"
#include "util/file.h"

namespace {

using ctrust::runtime::Invocation;
using ctrust::runtime::ShimConfig;

constexpr const char* kUsage =
    "ctrust-runtime: an OCI runtime that hands every container to ctrustd\n"
    "\n"
    "Usage: ctrust-runtime [--ctrust-config FILE] [RUNTIME OPTIONS] COMMAND [ARGS...]\n"
    "\n"
    "Takes the command line of runc (or crun). `create` runs the real runtime's create, then\n"
    "hands the created container to ctrustd before anything in it has run (a container\n"
    "ctrustd refuses is deleted, and create fails). `run` adds ctrust's createRuntime hook\n"
    "to the bundle's config.json (idempotently) and runs the real runtime. Every other\n"
    "command goes to the real runtime unchanged. (ctrustd closes a container's books when\n"
    "its last process exits.)\n"
    "\n"
    "Options of its own:\n"
    "  --ctrust-config FILE  runtime.toml (default: $CTRUST_RUNTIME_CONFIG, else\n"
    "                        /etc/ctrust/runtime.toml if it exists, else built-in defaults)\n"
    "  --help, -h            this text (with no command)\n"
    "  --version, -v         ctrust-runtime's version, then the real runtime's\n"
    "\n"
    "Exit status: the real runtime's; before it runs, 1 when the container cannot be given\n"
    "its hooks (it does not start), 2 for a usage error. Docs: docs/cli/runtime.md.\n";

// An error for the engine: on stderr, and in the runtime log the engine reads (--log), in
// its format, since that is where Docker and containerd look for a runtime's last words.
void report(const Invocation& inv, const std::string& message) {
  std::string line = "ctrust-runtime: error: " + message;
  std::fprintf(stderr, "%s\n", line.c_str());
  if (inv.log_path.empty()) return;
  int fd = ::open(inv.log_path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return;
  std::string text;
  if (inv.log_format == "json") {
    char when[40] = {};
    std::time_t now = std::time(nullptr);
    std::tm tm{};
    ::gmtime_r(&now, &tm);
    std::strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    text = nlohmann::json{{"level", "error"}, {"msg", line}, {"time", when}}.dump(
               -1, ' ', false, nlohmann::json::error_handler_t::replace) +
           "\n";
  } else {
    text = line + "\n";
  }
  (void)!::write(fd, text.data(), text.size());
  ::close(fd);
}

std::string self_dir() {
  std::string self = ctrust::read_link("/proc/self/exe");
  auto slash = self.find_last_of('/');
  return slash == std::string::npos ? "." : self.substr(0, slash);
}

bool same_file(const std::string& a, const std::string& b) {
  struct stat sa {};
  struct stat sb {};
  return ::stat(a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev &&
         sa.st_ino == sb.st_ino;
}

ctrust::Result<ShimConfig> load_config(const Invocation& inv) {
  std::string path = inv.config_path;
  bool named = !path.empty();
  if (!named) {
    const char* env = std::getenv(ctrust::runtime::kConfigEnv);
    if (env != nullptr && *env != '\0') {
      path = env;
      named = true;
    } else {
      path = ctrust::runtime::kDefaultConfigPath;
    }
  }
  // The default file is optional; a file named on purpose must be there.
  if (!named && ::access(path.c_str(), F_OK) != 0 && errno == ENOENT) return ShimConfig{};
  auto bytes = ctrust::read_file(path, std::size_t{1} << 20);
  if (!bytes) return std::move(bytes).error().with_context("the configuration " + path);
  return ctrust::runtime::parse_shim_config(
      std::string_view(reinterpret_cast<const char*>(bytes->data()), bytes->size()), path);
}

ctrust::Result<void> prepare_bundle(const Invocation& inv, const ShimConfig& config) {
  std::string hook = config.hook.empty() ? self_dir() + "/ctrust-hook" : config.hook;
  if (::access(hook.c_str(), X_OK) != 0) {
    return ctrust::Error(ctrust::Errc::kNotFound,
                         "the hook " + hook + " is not executable: " + std::strerror(errno));
  }
  std::string file = (inv.bundle.empty() ? std::string(".") : inv.bundle) + "/config.json";
  CTRUST_ASSIGN_OR_RETURN(ctrust::Bytes bytes,
                          ctrust::read_file(file, ctrust::runtime::kMaxBundleConfig));
  auto patched = ctrust::runtime::add_hooks(
      std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()),
      ctrust::runtime::hook_spec(config, hook));
  if (!patched) return std::move(patched).error().with_context(file);
  struct stat st {};
  mode_t mode = ::stat(file.c_str(), &st) == 0 ? (st.st_mode & 07777) : 0644;
  return ctrust::write_file_atomic(file, ctrust::as_bytes(*patched), mode);
}

// Runs the real runtime with `args` and waits: its exit status (128 + N for signal N).
int run_runtime(const std::string& runtime, std::vector<std::string> args) {
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(runtime.c_str()));
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t child = ::fork();
  if (child < 0) return -1;
  if (child == 0) {
    ::execv(runtime.c_str(), argv.data());
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 1;
}

// `create` with no hook process: the real runtime creates the container (its first process
// waits for `start`, nothing of the image has run), then this process registers it with
// ctrustd, as the createRuntime hook would. A refused container is deleted again.
int create_registered(ctrust::runtime::Invocation& inv, const ShimConfig& config,
                      const std::string& runtime) {
  auto args = ctrust::runtime::parse_create_args(inv);
  if (!args) {
    report(inv, args.error().message());
    return 2;
  }
  std::string pid_file = args->pid_file;
  std::string own_pid_file;
  std::string own_dir;  // a private directory for it: no other user can plant a file there
  if (pid_file.empty()) {
    std::string base = ::access("/run", W_OK) == 0 ? "/run" : "/tmp";
    std::string templ = base + "/ctrust-runtime.XXXXXX";
    if (::mkdtemp(templ.data()) == nullptr) {
      report(inv, "making a directory for the pid file in " + base + ": " + std::strerror(errno));
      return 1;
    }
    own_dir = templ;
    own_pid_file = own_dir + "/pid";
    pid_file = own_pid_file;
    auto at = inv.runtime_args.begin() + static_cast<std::ptrdiff_t>(inv.command_index) + 1;
    inv.runtime_args.insert(at, {"--pid-file", own_pid_file});
  }
  int rc = run_runtime(runtime, inv.runtime_args);
  int run_errno = errno;
  auto text = rc == 0 ? ctrust::read_file(pid_file, 64)
                      : ctrust::Result<ctrust::Bytes>(
                            ctrust::Error(ctrust::Errc::kIo, "the runtime's create failed"));
  if (!own_dir.empty()) {
    ::unlink(own_pid_file.c_str());
    ::rmdir(own_dir.c_str());
  }
  if (rc < 0) {
    report(inv, "running " + runtime + ": " + std::strerror(run_errno));
    return 1;
  }
  if (rc != 0) return rc;  // the runtime said why
  std::vector<std::string> global(
      inv.runtime_args.begin(),
      inv.runtime_args.begin() + static_cast<std::ptrdiff_t>(inv.command_index));
  auto refuse = [&](const std::string& why) {
    report(inv, "container " + args->id + " refused: " + why);
    std::vector<std::string> del = global;
    del.insert(del.end(), {"delete", "--force", args->id});
    if (run_runtime(runtime, del) != 0) {
      report(inv, "deleting the refused container " + args->id + " failed: delete it by hand");
    }
    return 1;
  };
  if (!text) return refuse("its pid file: " + text.error().message());
  int pid = 0;
  try {
    pid = std::stoi(std::string(text->begin(), text->end()));
  } catch (const std::exception&) {
    return refuse("its pid file " + pid_file + " holds no pid");
  }
  std::string bundle = inv.bundle.empty() ? std::string(".") : inv.bundle;
  char resolved[PATH_MAX];
  if (::realpath(bundle.c_str(), resolved) == nullptr) {
    return refuse("the bundle " + bundle + ": " + std::strerror(errno));
  }
  nlohmann::json request = {{"op", "create"},
                            {"state", ctrust::runtime::created_state(args->id, pid, resolved)},
                            {"after_create", true}};
  auto answer = ctrust::agent::control_call(config.socket, request, config.timeout_s * 1000);
  if (answer) return 0;
  if (answer.error().code() == ctrust::Errc::kNotFound && config.fail_open) {
    std::fprintf(stderr, "ctrust-runtime: warning: %s; container %s runs unmeasured (fail_open)\n",
                 answer.error().message().c_str(), args->id.c_str());
    return 0;
  }
  return refuse(answer.error().message());
}

int run(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  auto inv = ctrust::runtime::parse_invocation(args);
  if (!inv) {
    std::fprintf(stderr, "ctrust-runtime: error: %s\n%s", inv.error().message().c_str(), kUsage);
    return 2;
  }
  if (inv->help) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  auto config = load_config(*inv);
  if (!config) {
    report(*inv, config.error().message());
    return 1;
  }
  std::string runtime = ctrust::find_in_path(config->runtime);
  if (runtime.empty()) {
    report(*inv, "the OCI runtime " + config->runtime + " is not found or not executable");
    return 1;
  }
  if (same_file(runtime, "/proc/self/exe")) {
    report(*inv, "runtime = " + config->runtime + " is ctrust-runtime itself; name the real one");
    return 1;
  }
  if (inv->version) {
    std::printf("ctrust-runtime version %s (runs %s)\n", CTRUST_VERSION, runtime.c_str());
    std::fflush(stdout);
  }
  if (inv->command == "create") return create_registered(*inv, *config, runtime);
  if (inv->command == "run") {
    if (auto r = prepare_bundle(*inv, *config); !r) {
      report(*inv, "the container cannot be handed to ctrust, so it does not start: " +
                       r.error().message());
      return 1;
    }
  }
  std::vector<char*> exec_argv;
  exec_argv.push_back(runtime.data());
  for (auto& a : inv->runtime_args) exec_argv.push_back(a.data());
  exec_argv.push_back(nullptr);
  ::execv(runtime.c_str(), exec_argv.data());
  report(*inv, "running " + runtime + ": " + std::strerror(errno));
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ctrust-runtime: error: internal error: %s\n", e.what());
  }
  return 1;
}
