// Small, careful file helpers: every failure comes back as an Error naming the path.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>

#include "util/hex.h"
#include "util/result.h"
#include "util/unique_handle.h"

namespace ctrust {

Result<UniqueFd> open_read(const std::string& path);

// Opens `rel` (relative to `dir_fd`; "" is the directory itself) with openat2(RESOLVE_BENEATH
// | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS): nothing on the way may be a symlink or
// lead out of `dir_fd`, so an untrusted tree (an image, an OCI layout) cannot redirect it.
// O_CLOEXEC is added to `flags`.
Result<UniqueFd> open_beneath(int dir_fd, const std::string& rel, std::uint64_t flags);

// Reads up to buf.size() bytes at `offset`, retrying on EINTR and short reads; returns
// fewer only at end of file. Does not move the fd's file offset.
Result<std::size_t> pread_full(int fd, std::span<std::uint8_t> buf, off_t offset);

// Writes all of `data`, retrying on EINTR and short writes.
Result<void> write_all(int fd, ByteView data);

// Reads a whole file, refusing files larger than `max_size` bytes.
Result<Bytes> read_file(const std::string& path, std::size_t max_size);

// The target of the symbolic link `path` (a /proc magic link: /proc/self/fd/N,
// /proc/PID/exe), or "" when it cannot be read. Cut at 4095 bytes.
std::string read_link(const std::string& path);
// The executable `name` as a path: itself if it has a '/', else the first match in PATH
// (or a standard PATH when it is unset); "" when there is none.
std::string find_in_path(const std::string& name);

// kDurable: on disk before commit() returns (the file and the directory are fsync'ed), so it
// survives a power loss. kWhole: only whole or not at all for every reader and across a
// crash of the writer (not of the machine), without the cost of the syncs; for state that a
// reboot makes moot anyway.
enum class Durability { kDurable, kWhole };

// A file that appears at `path` whole or not at all: written to a temporary file in the
// same directory, then (kDurable) fsync'ed and renamed over `path` by commit(). Destroyed
// without a commit, it removes the temporary file, so a failure never leaves a partial file
// behind.
class AtomicFile {
 public:
  static Result<AtomicFile> create(const std::string& path, mode_t mode);
  AtomicFile(AtomicFile&& other) noexcept;
  AtomicFile& operator=(AtomicFile&&) = delete;
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile();

  int fd() const { return fd_.get(); }
  Result<void> write(ByteView data);
  Result<void> commit(Durability durability = Durability::kDurable);

 private:
  AtomicFile(std::string path, std::string tmp, UniqueFd fd)
      : path_(std::move(path)), tmp_(std::move(tmp)), fd_(std::move(fd)) {}
  std::string path_;
  std::string tmp_;  // empty once committed or moved from
  UniqueFd fd_;
};

// Writes `data` to `path` with an AtomicFile.
Result<void> write_file_atomic(const std::string& path, ByteView data, mode_t mode,
                               Durability durability = Durability::kDurable);

// Called with the number of bytes just consumed, for progress bars.
using ProgressFn = std::function<void(std::uint64_t)>;

// Reads `fd` from offset 0 to its end and calls `sink` on each chunk, in order: the one
// careful read loop behind every whole-file hash. Regular files and block devices are read
// with pread() (the fd's offset is not moved); pipes with read(). Files of
// kPipelineThreshold bytes or more are read ahead by a second thread into a few buffers, so
// the copy out of the page cache overlaps with `sink` (hashing stays on the calling
// thread). Stops at the first error from reading or from `sink`. Returns the byte count.
inline constexpr std::uint64_t kPipelineThreshold = std::uint64_t{8} << 20;
Result<std::uint64_t> for_each_chunk(int fd, const std::function<Result<void>(ByteView)>& sink,
                                     const ProgressFn& progress = {});

}  // namespace ctrust
