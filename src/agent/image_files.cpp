#include "agent/image_files.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>

#include "crypto/fsverity.h"
#include "util/file.h"
#include "util/text.h"

namespace ctrust::agent {

namespace {

// Filesystems on which every change of a file's bytes goes through an open for writing or
// a truncate on this kernel, which break a read lease.
#ifndef XFS_SUPER_MAGIC
#define XFS_SUPER_MAGIC 0x58465342
#endif
#ifndef F2FS_SUPER_MAGIC
#define F2FS_SUPER_MAGIC 0xF2F52010
#endif
bool local_filesystem(int fd) {
  struct statfs sf {};
  if (::fstatfs(fd, &sf) != 0) return false;
  switch (static_cast<unsigned long>(sf.f_type)) {
    case EXT4_SUPER_MAGIC:  // ext2 and ext3 too
    case XFS_SUPER_MAGIC:
    case BTRFS_SUPER_MAGIC:
    case TMPFS_MAGIC:
    case F2FS_SUPER_MAGIC:
      return true;
    default:
      return false;
  }
}

// Overlay escapes ':' and ',' (and '\') in a layer's path with a backslash.
Result<std::vector<std::string>> split_lowerdir(std::string_view value) {
  std::vector<std::string> out;
  std::string current;
  for (std::size_t i = 0; i <= value.size(); ++i) {
    if (i == value.size() || value[i] == ':') {
      if (current.empty()) {
        return Error(Errc::kUnsupported, "an overlay with data-only lower layers (\"::\")");
      }
      out.push_back(std::move(current));
      current.clear();
    } else if (value[i] == '\\' && i + 1 < value.size()) {
      current.push_back(value[++i]);
    } else {
      current.push_back(value[i]);
    }
  }
  return out;
}

std::string unescape_overlay(std::string_view value) {
  std::string out;
  for (std::size_t i = 0; i < value.size(); ++i) {
    if (value[i] == '\\' && i + 1 < value.size()) ++i;
    out.push_back(value[i]);
  }
  return out;
}

bool has_xattr(int fd, const char* name) {
  // Through /proc/self/fd: fgetxattr() does not take an O_PATH descriptor.
  std::string proc = "/proc/self/fd/" + std::to_string(fd);
  return ::getxattr(proc.c_str(), name, nullptr, 0) >= 0 || errno != ENODATA;
}

}  // namespace

Result<std::vector<std::string>> overlay_layers(const MountInfo& m) {
  if (m.fstype != "overlay") return std::vector<std::string>{};
  // Options are separated by ',': a ',' inside a value is shown octal-escaped (\054).
  std::string upper;
  std::vector<std::string> lowers;
  std::string_view options = m.super_options;
  while (!options.empty()) {
    std::size_t comma = options.find(',');
    std::string_view option = options.substr(0, comma);
    options = comma == std::string_view::npos ? std::string_view() : options.substr(comma + 1);
    if (option.starts_with("upperdir=")) {
      upper = unescape_overlay(unescape_mountinfo(option.substr(9)));
    } else if (option.starts_with("lowerdir=")) {
      CTRUST_ASSIGN_OR_RETURN(lowers, split_lowerdir(unescape_mountinfo(option.substr(9))));
    } else if (option.starts_with("lowerdir+") || option.starts_with("datadir+")) {
      return Error(Errc::kUnsupported, "an overlay whose layers are shown as lowerdir+/datadir+");
    }
  }
  if (lowers.empty()) return Error(Errc::kFormat, "an overlay mount without lowerdir=");
  std::vector<std::string> layers;
  if (!upper.empty()) layers.push_back(std::move(upper));
  for (auto& l : lowers) layers.push_back(std::move(l));
  return layers;
}

ImageFiles ImageFiles::open(const std::string& root, std::string_view mountinfo,
                            DigestCache* cache) {
  ImageFiles f;
  auto refuse = [&](std::string why) -> ImageFiles&& {
    f.why_ = std::move(why);
    f.cache_ = nullptr;
    f.layers_.clear();
    return std::move(f);
  };
  if (cache == nullptr || cache->image_room() == 0) {
    return refuse("the image cache is off (enforcement.image_cache_entries = 0)");
  }
  f.cache_ = cache;
  struct statx sx {};
  if (::statx(AT_FDCWD, root.c_str(), AT_SYMLINK_NOFOLLOW, STATX_MNT_ID, &sx) != 0 ||
      (sx.stx_mask & STATX_MNT_ID) == 0) {
    return refuse("no mount id for " + printable(root, 256));
  }
  struct stat root_st {};
  if (::stat(root.c_str(), &root_st) != 0) return refuse("cannot stat " + printable(root, 256));
  f.root_dev_ = root_st.st_dev;
  auto mounts = parse_mountinfo(mountinfo);
  if (!mounts) return refuse(mounts.error().message());
  const MountInfo* mount = nullptr;
  for (const auto& m : *mounts) {
    if (m.mnt_id == sx.stx_mnt_id) mount = &m;
  }
  if (mount == nullptr) return refuse("its mount is not in mountinfo");
  if (mount->fstype != "overlay") {
    UniqueFd fd(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!fd || !local_filesystem(fd.get())) return refuse(mount->fstype + " is not cached");
    return f;  // the files themselves
  }
  auto layers = overlay_layers(*mount);
  if (!layers) return refuse(layers.error().message());
  for (const auto& layer : *layers) {
    UniqueFd fd(::open(layer.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    struct stat st {};
    if (!fd || ::fstat(fd.get(), &st) != 0) {
      return refuse("cannot open the overlay layer " + printable(layer, 256));
    }
    if (f.layers_.empty()) f.layer_dev_ = st.st_dev;
    if (st.st_dev != f.layer_dev_) return refuse("its layers are on several filesystems");
    if (!local_filesystem(fd.get())) {
      return refuse("the layer " + printable(layer, 256) + " is not on a local filesystem");
    }
    f.layers_.push_back(std::move(fd));
  }
  return f;
}

Result<crypto::Digest> ImageFiles::compute(int fd) {
  crypto::FsVerityParams params;
  return crypto::fsverity_digest_fd(fd, params, nullptr);
}

UniqueFd ImageFiles::real_file(const std::string& path, ino_t ino, struct stat& st) {
  std::string rel = path.substr(1);
  for (const auto& layer : layers_) {
    auto fd = open_beneath(layer.get(), rel, O_PATH | O_NOFOLLOW);
    if (!fd) {
      if (fd.error().native() == ENOENT) continue;  // not in this layer: the next one
      return {};
    }
    // The topmost entry is the file's, or nothing is vouched for.
    if (::fstat(fd->get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_ino != ino ||
        st.st_dev != layer_dev_) {
      return {};
    }
    return std::move(*fd);
  }
  return {};
}

Result<crypto::Digest> ImageFiles::fsverity(int fd, const std::string& path,
                                            const struct stat& st) {
  auto uncached = [&] {
    ++uncached_;
    return compute(fd);
  };
  // A file on another mount inside the root (its own filesystem, perhaps FUSE) is not the
  // root's: its inode number says nothing about the layers, and it may have no lease rule.
  if (cache_ == nullptr || path.size() < 2 || path[0] != '/' || st.st_dev != root_dev_) {
    return uncached();
  }
  // Where the bytes are: the file itself, or its layer's real file (already stat'ed).
  struct stat real = st;
  UniqueFd layer_file;
  if (!layers_.empty()) {
    layer_file = real_file(path, st.st_ino, real);
    if (!layer_file) return uncached();
  }
  int where = layers_.empty() ? fd : layer_file.get();
  FileKey key{DigestCache::kImageOwner, real.st_dev, real.st_ino};
  if (auto hit = cache_->find(key)) {
    ++hits_;
    return *hit;
  }
  // A metacopy has its bytes in a lower layer: never cached. Asked on a miss only: an inode
  // is made a metacopy when overlayfs creates it, so a cached one never becomes one.
  if (!layers_.empty() &&
      (has_xattr(where, "trusted.overlay.metacopy") || has_xattr(where, "user.overlay.metacopy"))) {
    return uncached();
  }
  // A descriptor of its own to hold the lease (read-only, as a read lease needs), opened
  // again from the one found, so it is the same inode.
  UniqueFd file(
      ::open(("/proc/self/fd/" + std::to_string(where)).c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  struct stat again {};
  if (!file || ::fstat(file.get(), &again) != 0 || again.st_dev != real.st_dev ||
      again.st_ino != real.st_ino || !S_ISREG(again.st_mode)) {
    return uncached();
  }
  auto lease = cache_->begin(file.get());
  if (!lease || *lease != DigestCache::Lease::kHeld) return uncached();  // a writer has it
  auto digest = compute(file.get());
  if (!digest) {
    cache_->abandon(file.get());
    return digest;
  }
  // Not cached if the lease broke meanwhile.
  ++(cache_->finish(key, std::move(file), *digest) ? hashed_ : uncached_);
  return digest;
}

}  // namespace ctrust::agent
