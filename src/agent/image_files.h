// The fs-verity digests of a container's image files, kept across container starts (issue
// 13): the image digest is still computed at every start over the root the container will
// run from, but a file of an image layer is hashed once, not once per start.
//
// What makes a cached digest trustworthy is the digest cache's (digest_cache.h): the entry
// holds a read lease on the file that has the bytes, and any open for writing (or a
// truncate) of that file breaks the lease and drops the entry before the writer goes on.
// So the lease must be on the real file, not on a container's overlay inode (new for every
// mount, and not told of writes to its layers). ImageFiles finds it:
//
//   - an overlay root (what Docker, containerd, CRI-O and podman mount): its layers come
//     from the mount's options (/proc/self/mountinfo, the mount found by the root's mount
//     id), and a file's real file is the topmost layer's entry at its path; that entry is
//     taken only if it is a regular file with the same inode number as the overlay file
//     (overlayfs gives a non-directory the inode number of its real file when all layers
//     are on one filesystem, which is required), and if it is not a metacopy (its data
//     elsewhere). Anything else (whiteouts, redirects, data-only layers, layers on several
//     filesystems) is hashed as before, every time;
//   - any other root on a local filesystem: the file itself.
//
// Layers on filesystems whose files can change without a local open for writing (FUSE,
// network filesystems) are never cached: only ext4, xfs, btrfs, tmpfs and f2fs are.
//
// Thread safety: fsverity() may be called from several threads at once.
#pragma once

#include <sys/stat.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "agent/digest_cache.h"
#include "agent/mountinfo.h"
#include "crypto/digest.h"
#include "util/result.h"
#include "util/unique_handle.h"

namespace ctrust::agent {

// The layers of an overlay mount, topmost first (upperdir, then each lowerdir), from its
// super options as mountinfo shows them (octal escapes, then overlay's own backslash
// escapes of ':' and ','). An error for an overlay whose layers cannot be told (data-only
// lower layers, "::"); an empty list for a mount that is not an overlay.
Result<std::vector<std::string>> overlay_layers(const MountInfo& m);

class ImageFiles {
 public:
  // For the root directory `root` (the container's rootfs), digests cached in `cache` (its
  // kImageOwner room). `mountinfo` is /proc/self/mountinfo's text. Never fails: a root
  // whose files cannot be cached soundly gets an ImageFiles that hashes every file, and
  // why() says why.
  static ImageFiles open(const std::string& root, std::string_view mountinfo, DigestCache* cache);

  // ManifestOptions::fsverity_of: `fd` is the file open on the root, `path` its path there
  // ("/bin/sh"), `st` its fstat.
  Result<crypto::Digest> fsverity(int fd, const std::string& path, const struct stat& st);

  // Why files are not cached ("" when they are).
  const std::string& why() const { return why_; }
  bool overlay() const { return !layers_.empty(); }

  std::uint64_t hits() const { return hits_; }
  std::uint64_t hashed() const { return hashed_; }      // computed and cached
  std::uint64_t uncached() const { return uncached_; }  // computed, not cacheable

  ImageFiles(ImageFiles&& other) noexcept
      : cache_(other.cache_),
        layers_(std::move(other.layers_)),
        layer_dev_(other.layer_dev_),
        root_dev_(other.root_dev_),
        why_(std::move(other.why_)) {}
  ImageFiles& operator=(ImageFiles&&) = delete;

 private:
  ImageFiles() = default;
  Result<crypto::Digest> compute(int fd);
  // The real file behind the overlay file at `path` (inode `ino`), opened O_PATH, and its
  // fstat in `real`; an invalid descriptor when there is none that can be vouched for.
  UniqueFd real_file(const std::string& path, ino_t ino, struct stat& real);

  DigestCache* cache_ = nullptr;  // null: nothing is cached
  std::vector<UniqueFd> layers_;  // overlay: O_PATH descriptors, topmost first
  dev_t layer_dev_ = 0;
  dev_t root_dev_ = 0;  // files of other mounts inside the root are not cached
  std::string why_;
  std::atomic<std::uint64_t> hits_{0};
  std::atomic<std::uint64_t> hashed_{0};
  std::atomic<std::uint64_t> uncached_{0};
};

}  // namespace ctrust::agent
