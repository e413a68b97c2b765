// Canonical image manifests and image digests (ARCHITECTURE.md, "Images").
//
// An image digest depends only on the files of the final root filesystem, not on how the
// image was layered, compressed, ordered or time-stamped. For every path it records the
// type, mode, owner, selected xattrs, the symlink target or device number, and for regular
// files the size and the fs-verity digest (sha256, 4 KiB blocks, no salt), so that a kernel
// with fs-verity could check every file. The manifest is a line-oriented text (format in
// docs/IMAGE.md) sorted by path bytes; the image digest is SHA-256 over it.
//
// Files are opened relative to the root with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS),
// so a symlink inside the tree can never make the walk read outside it. Regular files are
// hashed in parallel. Thread safety: the functions are reentrant; callbacks may be called
// from worker threads.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "crypto/digest.h"
#include "util/result.h"

namespace ctrust::image {

enum class FileType : char {
  kDirectory = 'd',
  kRegular = 'f',
  kSymlink = 'l',
  kCharDevice = 'c',
  kBlockDevice = 'b',
  kFifo = 'p',
  kSocket = 's',
};

// What a regular file's first bytes say it is (for policies: what can be executed).
enum class ContentKind : std::uint8_t {
  kData,
  kElf,     // "\x7fELF": executables and shared objects
  kScript,  // "#!": run through an interpreter
};

// What the first bytes of a file (at least 4 when it has them) say it is.
ContentKind content_kind(ByteView head);

struct ManifestEntry {
  std::string path;  // absolute within the image ("/", "/bin/sh"), raw bytes
  FileType type = FileType::kRegular;
  std::uint32_t mode = 0;  // permission bits and setuid/setgid/sticky (07777)
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
  std::uint64_t size = 0;        // regular files
  crypto::Digest fsverity;       // regular files
  std::string target;            // symlinks, raw bytes
  std::uint32_t rdev_major = 0;  // devices
  std::uint32_t rdev_minor = 0;
  std::vector<std::pair<std::string, Bytes>> xattrs;  // sorted by name
  // Regular files, with ManifestOptions::content_digest only; not part of the manifest
  // text: the plain digest of the bytes (what IMA measures) and the kind of content.
  std::optional<crypto::Digest> content;
  ContentKind kind = ContentKind::kData;
};

struct ManifestOptions {
  // security.capability is always recorded; these names are recorded too.
  std::vector<std::string> xattrs;
  unsigned threads = 0;  // 0: one per online CPU
  // Also compute each regular file's plain digest and ContentKind (policy creation).
  std::optional<crypto::HashAlg> content_digest;
  // Called once after the walk with the number of bytes to hash, then with bytes hashed
  // (from worker threads). For an OCI layout (image/oci.h) both count layer blob bytes read.
  std::function<void(std::uint64_t)> on_walked;
  std::function<void(std::uint64_t)> progress;
  // Where set, a regular file's fs-verity digest comes from here instead of being computed
  // (the agent's cache of image files, which computes it on a miss). Called from worker
  // threads with the file open read-only on the image root, its path and its fstat; the
  // walk still checks afterwards that the file did not change while it was asked.
  std::function<Result<crypto::Digest>(int fd, const std::string& path, const struct stat& st)>
      fsverity_of;
};

struct Manifest {
  std::vector<ManifestEntry> entries;  // sorted by path bytes
  std::uint64_t total_bytes = 0;
  // The canonical text (docs/IMAGE.md) and its SHA-256: the image digest.
  std::string text() const;
  Result<crypto::Digest> digest() const;
};

// Walks the tree under `root` (a directory, or /proc/PID/root of a running container).
Result<Manifest> manifest_from_directory(const std::string& root, const ManifestOptions& options);

// Paths and symlink targets are raw bytes; in the text every byte outside printable ASCII,
// and space and backslash, is written as \xNN, so that one entry is one line.
std::string escape_bytes(std::string_view raw);

}  // namespace ctrust::image
