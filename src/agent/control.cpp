#include "agent/control.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "util/file.h"
#include "util/json.h"

namespace ctrust::agent {
namespace {

Result<sockaddr_un> address(const std::string& path) {
  sockaddr_un addr{};
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return Error(Errc::kInvalidArgument, "socket path empty or too long: " + path);
  }
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

Result<UniqueFd> connect_to(const std::string& path) {
  CTRUST_ASSIGN_OR_RETURN(sockaddr_un addr, address(path));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return errno_error("socket", errno);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    int err = errno;
    if (err == ENOENT || err == ECONNREFUSED) {
      return Error(Errc::kNotFound, "ctrustd is not running (no agent at " + path + ")", err);
    }
    if (err == EACCES) {
      return Error(Errc::kIo, "no permission to reach ctrustd at " + path + " (run as root)", err);
    }
    return errno_error("connecting to ctrustd at " + path, err);
  }
  return fd;
}

}  // namespace

Result<UniqueFd> listen_control(const std::string& path) {
  CTRUST_ASSIGN_OR_RETURN(sockaddr_un addr, address(path));
  std::string dir = path.substr(0, path.rfind('/'));
  if (!dir.empty() && ::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return errno_error("creating " + dir, errno);
  }
  if (auto live = connect_to(path); live) {
    return Error(Errc::kInvalidArgument, "another ctrustd is already listening on " + path);
  }
  // Only a stale socket is replaced: a wrong `socket` setting must not delete a file.
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return Error(Errc::kInvalidArgument,
                   path + " exists and is not a socket: remove it or choose another socket path");
    }
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return errno_error("removing the stale socket " + path, errno);
    }
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return errno_error("socket", errno);
  // Created 0600 from the start: no window in which another user could connect.
  mode_t old = ::umask(0177);
  int rc = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  int err = errno;
  ::umask(old);
  if (rc != 0) return errno_error("binding " + path, err);
  if (::listen(fd.get(), 64) != 0) return errno_error("listening on " + path, errno);
  return fd;
}

Result<std::string> read_line(int fd, std::size_t max, int timeout_ms) {
  std::string line;
  char buf[4096];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    int ready = ::poll(&p, 1, timeout_ms);
    if (ready < 0) {
      if (errno == EINTR) continue;
      return errno_error("poll", errno);
    }
    if (ready == 0) return Error(Errc::kIo, "timed out waiting for a line");
    // Peek, so that bytes after the newline stay in the socket for the next line.
    ssize_t n = ::recv(fd, buf, sizeof(buf), MSG_PEEK);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return errno_error("reading", errno);
    }
    if (n == 0) return Error(Errc::kTruncated, "the connection closed before the end of a line");
    const char* nl = static_cast<const char*>(std::memchr(buf, '\n', static_cast<std::size_t>(n)));
    std::size_t take =
        nl != nullptr ? static_cast<std::size_t>(nl - buf) + 1 : static_cast<std::size_t>(n);
    ssize_t got = ::recv(fd, buf, take, 0);
    if (got != static_cast<ssize_t>(take)) return errno_error("reading", errno);
    line.append(buf, nl != nullptr ? take - 1 : take);
    if (line.size() > max) return Error(Errc::kLimit, "a line longer than " + std::to_string(max));
    if (nl != nullptr) return line;
  }
}

Result<UniqueFd> control_open(const std::string& socket, const nlohmann::json& request) {
  CTRUST_ASSIGN_OR_RETURN(UniqueFd fd, connect_to(socket));
  std::string text = request.dump() + "\n";
  CTRUST_TRY(write_all(fd.get(), as_bytes(text)));
  return fd;
}

Result<nlohmann::json> control_call(const std::string& socket, const nlohmann::json& request,
                                    int timeout_ms) {
  CTRUST_ASSIGN_OR_RETURN(UniqueFd fd, control_open(socket, request));
  auto line = read_line(fd.get(), kMaxRequest, timeout_ms);
  if (!line) return std::move(line).error().with_context("reading ctrustd's answer");
  auto answer = parse_json_strict(*line, 64);
  if (!answer) return std::move(answer).error().with_context("ctrustd's answer");
  if (!answer->is_object() || !answer->contains("ok") || !(*answer)["ok"].is_boolean()) {
    return Error(Errc::kFormat, "ctrustd's answer has no \"ok\"");
  }
  if (!(*answer)["ok"].get<bool>()) {
    std::string why = answer->contains("error") && (*answer)["error"].is_string()
                          ? (*answer)["error"].get<std::string>()
                          : "refused, without a reason";
    return Error(Errc::kInvalidArgument, why);
  }
  return std::move(*answer);
}

Result<uid_t> peer_uid(int fd) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return errno_error("SO_PEERCRED", errno);
  }
  return cred.uid;
}

}  // namespace ctrust::agent
