#include "image/manifest.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <thread>

#include "crypto/fsverity.h"
#include "util/text.h"

namespace ctrust::image {
namespace {

constexpr const char* kHeader = "ctrust-image-manifest 1\n";
constexpr const char* kCapability = "security.capability";

void close_dir(DIR* d) { ::closedir(d); }
using DirHandle = UniquePtr<DIR, close_dir>;

// Opens `rel` (relative to the root, no leading slash; "" is the root itself) without ever
// leaving the tree or following a symlink on the way.
Result<UniqueFd> open_in_image(int root_fd, const std::string& rel, std::uint64_t flags) {
  auto fd = ctrust::open_beneath(root_fd, rel, flags);
  if (!fd) return std::move(fd).error().with_context("in the image");
  return fd;
}

std::optional<FileType> file_type(mode_t mode) {
  if (S_ISDIR(mode)) return FileType::kDirectory;
  if (S_ISREG(mode)) return FileType::kRegular;
  if (S_ISLNK(mode)) return FileType::kSymlink;
  if (S_ISCHR(mode)) return FileType::kCharDevice;
  if (S_ISBLK(mode)) return FileType::kBlockDevice;
  if (S_ISFIFO(mode)) return FileType::kFifo;
  if (S_ISSOCK(mode)) return FileType::kSocket;
  return std::nullopt;
}

// Reads the wanted xattrs with `get` (lgetxattr on a path, or fgetxattr on an open fd).
template <typename Get>
Result<void> read_xattrs(const Get& get, const std::vector<std::string>& wanted, ManifestEntry& e) {
  for (const std::string& x : wanted) {
    ssize_t n = get(x.c_str(), nullptr, 0);
    if (n < 0) {
      if (errno == ENODATA || errno == ENOTSUP || errno == EPERM) continue;
      return errno_error("cannot read xattr " + x + " of " + printable(e.path, 256), errno);
    }
    Bytes value(static_cast<std::size_t>(n));
    n = get(x.c_str(), value.data(), value.size());
    if (n < 0) {
      return errno_error("cannot read xattr " + x + " of " + printable(e.path, 256), errno);
    }
    value.resize(static_cast<std::size_t>(n));
    e.xattrs.emplace_back(x, std::move(value));
  }
  return ok_result();
}

// The xattrs of the entry `name` of the directory `dir_fd`, not following symlinks.
Result<void> read_xattrs_at(int dir_fd, const std::string& name,
                            const std::vector<std::string>& wanted, ManifestEntry& e) {
  std::string proc = "/proc/self/fd/" + std::to_string(dir_fd) + "/" + name;
  auto get = [&](const char* x, void* buf, std::size_t size) {
    return ::lgetxattr(proc.c_str(), x, buf, size);
  };
  return read_xattrs(get, wanted, e);
}

struct Walk {
  int root_fd;
  std::vector<std::string> xattrs;  // sorted, unique, security.capability included
  std::vector<ManifestEntry> entries;
  std::vector<std::pair<std::size_t, ino_t>> files;  // entry index, inode seen by the walk

  Result<void> add(int dir_fd, const std::string& name, const std::string& path,
                   std::vector<std::string>& subdirs) {
    struct stat st {};
    if (::fstatat(dir_fd, name.empty() ? "." : name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      return errno_error("cannot stat " + printable(path, 256), errno);
    }
    auto type = file_type(st.st_mode);
    if (!type) return Error(Errc::kUnsupported, "unknown file type at " + printable(path, 256));
    ManifestEntry e;
    e.path = path;
    e.type = *type;
    e.mode = st.st_mode & 07777;
    e.uid = st.st_uid;
    e.gid = st.st_gid;
    switch (*type) {
      case FileType::kRegular:
        e.size = static_cast<std::uint64_t>(st.st_size);
        files.emplace_back(entries.size(), st.st_ino);
        break;
      case FileType::kSymlink: {
        std::string target(static_cast<std::size_t>(st.st_size) + 1, '\0');
        ssize_t n = ::readlinkat(dir_fd, name.c_str(), target.data(), target.size());
        if (n < 0) return errno_error("cannot read link " + printable(path, 256), errno);
        target.resize(static_cast<std::size_t>(n));
        e.target = std::move(target);
        break;
      }
      case FileType::kCharDevice:
      case FileType::kBlockDevice:
        e.rdev_major = major(st.st_rdev);
        e.rdev_minor = minor(st.st_rdev);
        break;
      case FileType::kDirectory:
        if (!name.empty()) subdirs.push_back(path);
        break;
      default:
        break;
    }
    // Regular files get theirs from the fd the hashing worker opens (cheaper, in parallel).
    if (*type != FileType::kRegular) {
      CTRUST_TRY(read_xattrs_at(dir_fd, name.empty() ? "." : name, xattrs, e));
    }
    entries.push_back(std::move(e));
    return ok_result();
  }

  // Iterative, one directory fd open at a time, so any depth works.
  Result<void> run() {
    std::vector<std::string> pending;
    std::vector<std::string> subdirs;
    {
      CTRUST_ASSIGN_OR_RETURN(UniqueFd fd, open_in_image(root_fd, "", O_RDONLY | O_DIRECTORY));
      CTRUST_TRY(add(fd.get(), "", "/", pending));
      pending.emplace_back("/");
    }
    while (!pending.empty()) {
      std::string dir = std::move(pending.back());
      pending.pop_back();
      std::string rel = dir == "/" ? "" : dir.substr(1);
      CTRUST_ASSIGN_OR_RETURN(UniqueFd fd, open_in_image(root_fd, rel, O_RDONLY | O_DIRECTORY));
      int dir_fd = fd.get();
      DirHandle d(::fdopendir(fd.release()));
      if (!d) return errno_error("cannot list " + printable(dir, 256), errno);
      subdirs.clear();
      for (;;) {
        errno = 0;
        struct dirent* de = ::readdir(d.get());
        if (de == nullptr) {
          if (errno != 0) return errno_error("cannot list " + printable(dir, 256), errno);
          break;
        }
        std::string name = de->d_name;
        if (name == "." || name == "..") continue;
        std::string path = dir;
        if (dir != "/") path += '/';
        path += name;
        CTRUST_TRY(add(dir_fd, name, path, subdirs));
      }
      pending.insert(pending.end(), subdirs.begin(), subdirs.end());
    }
    return ok_result();
  }
};

Result<void> classify_content(int fd, crypto::HashAlg alg, ManifestEntry& e) {
  CTRUST_ASSIGN_OR_RETURN(e.content, crypto::digest_fd(alg, fd));
  std::array<std::uint8_t, 4> head{};
  CTRUST_ASSIGN_OR_RETURN(std::size_t n, pread_full(fd, head, 0));
  e.kind = content_kind(ByteView(head.data(), n));
  return ok_result();
}

Result<void> hash_files(int root_fd, Walk& walk, const ManifestOptions& options) {
  // Largest first, so that one huge file does not start last and run alone.
  std::sort(walk.files.begin(), walk.files.end(), [&](const auto& a, const auto& b) {
    return walk.entries[a.first].size > walk.entries[b.first].size;
  });
  unsigned n =
      options.threads != 0 ? options.threads : std::max(1u, std::thread::hardware_concurrency());
  n = static_cast<unsigned>(std::min<std::size_t>(n, std::max<std::size_t>(1, walk.files.size())));
  std::atomic<std::size_t> next{0};
  std::atomic<bool> failed{false};
  std::vector<std::optional<Error>> errors(n);
  auto worker = [&](unsigned id) {
    crypto::FsVerityParams params;
    for (;;) {
      std::size_t i = next.fetch_add(1);
      if (i >= walk.files.size() || failed.load()) return;
      auto [index, ino] = walk.files[i];
      ManifestEntry& e = walk.entries[index];
      auto fd = open_in_image(root_fd, e.path.substr(1), O_RDONLY | O_NOFOLLOW);
      Result<crypto::Digest> d = Error(Errc::kInternal, "unset");
      struct stat st {};
      if (!fd) {
        d = std::move(fd).error();
      } else if (::fstat(fd->get(), &st) != 0 || st.st_ino != ino || !S_ISREG(st.st_mode)) {
        d = Error(Errc::kIo, printable(e.path, 256) + " changed while the image was read");
      } else if (auto x = read_xattrs(
                     [&](const char* name, void* buf, std::size_t size) {
                       return ::fgetxattr(fd->get(), name, buf, size);
                     },
                     walk.xattrs, e);
                 !x) {
        d = std::move(x).error();
      } else {
        d = options.fsverity_of ? options.fsverity_of(fd->get(), e.path, st)
                                : crypto::fsverity_digest_fd(fd->get(), params, options.progress);
        if (d && options.content_digest) {
          if (auto c = classify_content(fd->get(), *options.content_digest, e); !c) {
            d = std::move(c).error();
          }
        }
        // A file written while it was hashed (a running container's root can change under
        // us) would give a digest of neither version: compare the inode before and after.
        struct stat after {};
        if (d && (st.st_size != static_cast<off_t>(e.size) || ::fstat(fd->get(), &after) != 0 ||
                  after.st_size != st.st_size || after.st_mtim.tv_sec != st.st_mtim.tv_sec ||
                  after.st_mtim.tv_nsec != st.st_mtim.tv_nsec ||
                  after.st_ctim.tv_sec != st.st_ctim.tv_sec ||
                  after.st_ctim.tv_nsec != st.st_ctim.tv_nsec)) {
          d = Error(Errc::kIo, printable(e.path, 256) + " changed while the image was read");
        }
      }
      if (!d) {
        errors[id] = std::move(d).error();
        failed = true;
        return;
      }
      e.fsverity = *d;
    }
  };
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < n; ++t) pool.emplace_back(worker, t);
  worker(0);
  for (auto& t : pool) t.join();
  for (auto& e : errors) {
    if (e) return std::move(*e);
  }
  return ok_result();
}

}  // namespace

ContentKind content_kind(ByteView head) {
  if (head.size() >= 4 && head[0] == 0x7f && head[1] == 'E' && head[2] == 'L' && head[3] == 'F') {
    return ContentKind::kElf;
  }
  if (head.size() >= 2 && head[0] == '#' && head[1] == '!') return ContentKind::kScript;
  return ContentKind::kData;
}

std::string escape_bytes(std::string_view raw) {
  return escape_bytes_if(raw, [](unsigned char c) { return c > 0x20 && c < 0x7f && c != '\\'; });
}

std::string Manifest::text() const {
  std::string out = kHeader;
  char num[64];
  for (const ManifestEntry& e : entries) {
    out += escape_bytes(e.path);
    std::snprintf(num, sizeof(num), " %c %04o %u %u", static_cast<char>(e.type), e.mode, e.uid,
                  e.gid);
    out += num;
    switch (e.type) {
      case FileType::kRegular:
        out += " size=" + std::to_string(e.size) + " fsverity=sha256:" + e.fsverity.hex();
        break;
      case FileType::kSymlink:
        out += " target=" + escape_bytes(e.target);
        break;
      case FileType::kCharDevice:
      case FileType::kBlockDevice:
        out += " rdev=" + std::to_string(e.rdev_major) + ":" + std::to_string(e.rdev_minor);
        break;
      default:
        break;
    }
    for (const auto& [name, value] : e.xattrs) {
      out += " xattr." + escape_bytes(name) + "=" + to_hex(value);
    }
    out += '\n';
  }
  return out;
}

Result<crypto::Digest> Manifest::digest() const {
  return crypto::digest_bytes(crypto::HashAlg::kSha256, as_bytes(text()));
}

Result<Manifest> manifest_from_directory(const std::string& root, const ManifestOptions& options) {
  UniqueFd root_fd(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root_fd) return errno_error("cannot open image root " + root, errno);
  Walk walk{root_fd.get(), options.xattrs, {}, {}};
  walk.xattrs.emplace_back(kCapability);
  std::sort(walk.xattrs.begin(), walk.xattrs.end());
  walk.xattrs.erase(std::unique(walk.xattrs.begin(), walk.xattrs.end()), walk.xattrs.end());
  CTRUST_TRY(walk.run());
  if (options.on_walked) {
    std::uint64_t total = 0;
    for (const auto& [index, ino] : walk.files) total += walk.entries[index].size;
    options.on_walked(total);
  }
  CTRUST_TRY(hash_files(root_fd.get(), walk, options));
  Manifest m;
  m.entries = std::move(walk.entries);
  std::sort(m.entries.begin(), m.entries.end(),
            [](const ManifestEntry& a, const ManifestEntry& b) { return a.path < b.path; });
  for (const ManifestEntry& e : m.entries) m.total_bytes += e.size;
  return m;
}

}  // namespace ctrust::image
