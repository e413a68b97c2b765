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
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <exception>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

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
    "Takes the command line of runc (or crun): for `create` and `run` it first adds ctrust's\n"
    "createRuntime hook to the bundle's config.json (idempotently), then it runs the real\n"
    "runtime with the same arguments. Every other command goes to the real runtime\n"
    "unchanged. (ctrustd closes a container's books when its last process exits.)\n"
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
  if (inv->command == "create" || inv->command == "run") {
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
