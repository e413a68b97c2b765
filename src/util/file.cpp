#include "util/file.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <utility>

#include "util/text.h"

namespace ctrust {

Result<UniqueFd> open_read(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno_error("cannot open " + path, errno);
  return UniqueFd(fd);
}

Result<UniqueFd> open_beneath(int dir_fd, const std::string& rel, std::uint64_t flags) {
  struct open_how how {};
  how.flags = flags | O_CLOEXEC;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  const char* p = rel.empty() ? "." : rel.c_str();
  long fd;
  do {
    fd = ::syscall(SYS_openat2, dir_fd, p, &how, sizeof(how));
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return errno_error("cannot open " + printable(p, 256), errno);
  return UniqueFd(static_cast<int>(fd));
}

Result<std::size_t> pread_full(int fd, std::span<std::uint8_t> buf, off_t offset) {
  std::size_t done = 0;
  while (done < buf.size()) {
    ssize_t n =
        ::pread(fd, buf.data() + done, buf.size() - done, offset + static_cast<off_t>(done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error("read failed", errno);
    }
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
  }
  return done;
}

Result<void> write_all(int fd, ByteView data) {
  std::size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error("write failed", errno);
    }
    done += static_cast<std::size_t>(n);
  }
  return ok_result();
}

std::string read_link(const std::string& path) {
  std::array<char, 4096> buf{};
  ssize_t n = ::readlink(path.c_str(), buf.data(), buf.size() - 1);
  return n > 0 ? std::string(buf.data(), static_cast<std::size_t>(n)) : std::string();
}

Result<Bytes> read_file(const std::string& path, std::size_t max_size) {
  CTRUST_ASSIGN_OR_RETURN(UniqueFd fd, open_read(path));
  Bytes out;
  std::uint8_t chunk[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), chunk, sizeof(chunk));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error("cannot read " + path, errno);
    }
    if (n == 0) break;
    if (out.size() + static_cast<std::size_t>(n) > max_size) {
      return Error(Errc::kLimit,
                   path + " is larger than the limit of " + std::to_string(max_size) + " bytes");
    }
    out.insert(out.end(), chunk, chunk + n);
  }
  return out;
}

Result<AtomicFile> AtomicFile::create(const std::string& path, mode_t mode) {
  std::filesystem::path target(path);
  std::filesystem::path dir = target.has_parent_path() ? target.parent_path() : ".";
  std::string tmp = (dir / ("." + target.filename().string() + ".XXXXXX")).string();
  int raw = ::mkstemp(tmp.data());
  if (raw < 0) return errno_error("cannot create a temporary file beside " + path, errno);
  AtomicFile file(path, tmp, UniqueFd(raw));
  if (::fchmod(raw, mode) != 0) return errno_error("cannot set mode of " + tmp, errno);
  return file;
}

AtomicFile::AtomicFile(AtomicFile&& other) noexcept
    : path_(std::move(other.path_)),
      tmp_(std::exchange(other.tmp_, std::string())),
      fd_(std::move(other.fd_)) {}

AtomicFile::~AtomicFile() {
  if (!tmp_.empty()) ::unlink(tmp_.c_str());
}

Result<void> AtomicFile::write(ByteView data) {
  auto r = write_all(fd_.get(), data);
  if (!r) return std::move(r).error().with_context("writing " + path_);
  return r;
}

Result<void> AtomicFile::commit(Durability durability) {
  if (durability == Durability::kDurable && ::fsync(fd_.get()) != 0) {
    return errno_error("cannot sync " + tmp_, errno);
  }
  fd_.reset();
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
    return errno_error("cannot rename " + tmp_ + " to " + path_, errno);
  }
  tmp_.clear();
  if (durability == Durability::kWhole) return ok_result();
  std::filesystem::path target(path_);
  std::string dir = target.has_parent_path() ? target.parent_path().string() : ".";
  UniqueFd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dfd) ::fsync(dfd.get());  // best effort: the rename is already visible
  return ok_result();
}

Result<void> write_file_atomic(const std::string& path, ByteView data, mode_t mode,
                               Durability durability) {
  CTRUST_ASSIGN_OR_RETURN(AtomicFile file, AtomicFile::create(path, mode));
  CTRUST_TRY(file.write(data));
  return file.commit(durability);
}

std::string find_in_path(const std::string& name) {
  if (name.find('/') != std::string::npos) return ::access(name.c_str(), X_OK) == 0 ? name : "";
  const char* path = std::getenv("PATH");
  std::string dirs =
      path != nullptr ? path : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  std::size_t start = 0;
  while (start <= dirs.size()) {
    std::size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string candidate = dirs.substr(start, end - start) + "/" + name;
    if (end > start && ::access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return "";
}

}  // namespace ctrust
