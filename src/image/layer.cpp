#include "image/layer.h"

#include <archive.h>
#include <archive_entry.h>
#include <clocale>

#include <algorithm>
#include <array>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <limits>
#include <mutex>
#include <optional>
#include <thread>
#include <type_traits>

#include "crypto/fsverity.h"
#include "util/text.h"

namespace ctrust::image {
namespace {

constexpr std::string_view kWhiteoutPrefix = ".wh.";
constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";
constexpr std::string_view kWhiteoutMeta = ".wh..wh.";
constexpr const char* kCapability = "security.capability";

// Regular-file bytes travel from the reader to the hasher in a few large batches; small
// files share a batch, large ones span several.
constexpr std::size_t kBatchSize = std::size_t{1} << 20;
// Batches start small and grow to kBatchSize only when a layer has that much file data, so
// that small layers (and the fuzzer) do not pay for megabytes they never use.
constexpr std::size_t kFirstBatchSize = std::size_t{16} * 1024;
constexpr std::size_t kBatches = 4;
constexpr std::size_t kSourceBuffer = std::size_t{256} * 1024;

void free_archive(struct archive* a) { ::archive_read_free(a); }
using ArchiveHandle = UniquePtr<struct archive, free_archive>;

std::string shown(std::string_view path) { return printable(path, 256); }

// libarchive converts PAX path and link names from UTF-8 to the calling thread's locale.
// Under a UTF-8 locale it normalises them (NFD becomes NFC) and replaces invalid bytes, so
// two different trees could read the same; under "C" the conversion fails and it keeps the
// raw bytes (with a warning, accepted below). A manifest needs the raw bytes, so layers are
// read under "C" whatever the process's locale is.
using LocaleHandle = UniquePtr<std::remove_pointer_t<locale_t>, ::freelocale>;

class ScopedCLocale {
 public:
  ScopedCLocale() : locale_(::newlocale(LC_ALL_MASK, "C", static_cast<locale_t>(nullptr))) {
    if (locale_) previous_ = ::uselocale(locale_.get());
  }
  ~ScopedCLocale() {
    if (locale_) ::uselocale(previous_);  // before locale_ is freed
  }
  ScopedCLocale(const ScopedCLocale&) = delete;
  ScopedCLocale& operator=(const ScopedCLocale&) = delete;
  bool active() const { return locale_.valid(); }

 private:
  LocaleHandle locale_;
  locale_t previous_ = nullptr;
};

// libarchive's words for a stream that ended early.
bool truncated(struct archive* a) {
  const char* msg = ::archive_error_string(a);
  return msg != nullptr && std::strstr(msg, "Truncated input file") != nullptr;
}

// A header warning that only says a name is not valid in the locale: the raw bytes are kept.
bool only_a_conversion_warning(struct archive* a) {
  const char* msg = ::archive_error_string(a);
  return msg != nullptr && std::strstr(msg, "can't be converted") != nullptr;
}

// One regular file's bytes within a batch; `last` closes the file.
struct Segment {
  std::size_t member;
  std::size_t begin;
  std::size_t end;
  bool last;
};

struct Batch {
  Bytes data;
  std::size_t fill = 0;
  std::vector<Segment> segments;
};

// Computes fs-verity digests of the files in a stream of batches, in order. The digests
// are kept here, not written into the Layer, whose member vector the reader thread grows
// meanwhile; they are merged after the hashing thread has been joined.
class FileHasher {
 public:
  struct Hashed {
    std::size_t member;
    crypto::Digest fsverity;
    std::optional<crypto::Digest> content;  // with content_digest
    ContentKind kind = ContentKind::kData;
  };

  explicit FileHasher(std::optional<crypto::HashAlg> content_alg) : content_alg_(content_alg) {}

  Result<void> consume(const Batch& batch) {
    for (const Segment& s : batch.segments) {
      if (!current_) {
        CTRUST_ASSIGN_OR_RETURN(crypto::FsVerityHasher h, crypto::FsVerityHasher::create({}));
        current_.emplace(std::move(h));
        if (content_alg_ && !content_) {
          CTRUST_ASSIGN_OR_RETURN(crypto::Hasher c, crypto::Hasher::create(*content_alg_));
          content_.emplace(std::move(c));
        }
        head_size_ = 0;
      }
      if (s.end > s.begin) {
        ByteView data(batch.data.data() + s.begin, s.end - s.begin);
        CTRUST_TRY(current_->update(data));
        if (content_) {
          CTRUST_TRY(content_->update(data));
          while (head_size_ < head_.size() && !data.empty()) {
            head_[head_size_++] = data.front();
            data = data.subspan(1);
          }
        }
      }
      if (s.last) {
        Hashed r{s.member, {}, std::nullopt, ContentKind::kData};
        CTRUST_ASSIGN_OR_RETURN(r.fsverity, current_->finish());
        if (content_) {
          CTRUST_ASSIGN_OR_RETURN(r.content, content_->finish());
          r.kind = content_kind(ByteView(head_.data(), head_size_));
        }
        results_.push_back(r);
        current_.reset();
      }
    }
    return ok_result();
  }

  // Every file finished so far, in member order.
  const std::vector<Hashed>& results() const { return results_; }

 private:
  std::optional<crypto::HashAlg> content_alg_;
  std::optional<crypto::FsVerityHasher> current_;
  std::optional<crypto::Hasher> content_;  // reused: finish() resets it
  std::array<std::uint8_t, 4> head_{};
  std::size_t head_size_ = 0;
  std::vector<Hashed> results_;
};

// Hands full batches to a hashing thread and takes empty ones back (or, without a
// pipeline, hashes them on the calling thread).
class BatchQueue {
 public:
  BatchQueue(bool threaded, std::optional<crypto::HashAlg> content_alg) : hasher_(content_alg) {
    for (std::size_t i = 0; i < (threaded ? kBatches : 1); ++i) {
      free_.emplace_back().data.resize(kFirstBatchSize);
    }
    if (threaded) thread_ = std::thread([this] { run(); });
  }
  ~BatchQueue() {
    {
      std::lock_guard lock(mu_);
      aborted_ = true;  // after an error the remaining batches are not worth hashing
    }
    (void)close();
  }
  BatchQueue(const BatchQueue&) = delete;
  BatchQueue& operator=(const BatchQueue&) = delete;

  // An empty batch to fill; waits for the hasher to return one.
  Result<Batch> take() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return !free_.empty() || error_.has_value(); });
    if (error_) return *error_;
    Batch b = std::move(free_.front());
    free_.pop_front();
    b.fill = 0;
    b.segments.clear();
    return b;
  }

  Result<void> submit(Batch batch) {
    if (!thread_.joinable()) {
      CTRUST_TRY(hasher_.consume(batch));
      free_.push_back(std::move(batch));
      return ok_result();
    }
    std::lock_guard lock(mu_);
    if (error_) return *error_;
    full_.push_back(std::move(batch));
    cv_.notify_all();
    return ok_result();
  }

  // Only after close().
  const FileHasher& hasher() const { return hasher_; }

  // Waits for the hasher to finish everything submitted; returns its first error.
  Result<void> close() {
    if (thread_.joinable()) {
      {
        std::lock_guard lock(mu_);
        closed_ = true;
        cv_.notify_all();
      }
      thread_.join();
    }
    if (error_) return *error_;
    return ok_result();
  }

 private:
  void run() {
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return !full_.empty() || closed_; });
      if (full_.empty() || aborted_) return;
      Batch b = std::move(full_.front());
      full_.pop_front();
      lock.unlock();
      auto r = error_ ? ok_result() : hasher_.consume(b);
      lock.lock();
      if (!r && !error_) error_ = std::move(r).error();
      free_.push_back(std::move(b));
      cv_.notify_all();
    }
  }

  FileHasher hasher_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Batch> free_;
  std::deque<Batch> full_;
  std::optional<Error> error_;
  bool closed_ = false;
  bool aborted_ = false;
  std::thread thread_;
};

// libarchive pulls bytes through this; an Error from the source is kept so that the
// caller sees it rather than libarchive's paraphrase.
struct SourceState {
  const LayerSource* source = nullptr;
  Bytes buffer = Bytes(kFirstBatchSize);  // grows to kSourceBuffer as the layer is read
  std::optional<Error> error;
};

la_ssize_t source_read(struct archive* a, void* data, const void** out) {
  auto* s = static_cast<SourceState*>(data);
  if (s->buffer.size() < kSourceBuffer)
    s->buffer.resize(std::min(kSourceBuffer, 4 * s->buffer.size()));
  auto n = (*s->source)(s->buffer);
  if (!n) {
    archive_set_error(a, EIO, "%s", n.error().message().c_str());
    s->error = std::move(n).error();
    return -1;
  }
  *out = s->buffer.data();
  return static_cast<la_ssize_t>(*n);
}

Error archive_error(struct archive* a, const SourceState& state, const std::string& where) {
  if (state.error) return *state.error;
  const char* msg = ::archive_error_string(a);
  return Error(Errc::kFormat, where + ": " + (msg != nullptr ? msg : "unreadable tar stream"));
}

std::optional<FileType> file_type(mode_t type) {
  switch (type) {
    case AE_IFREG:
      return FileType::kRegular;
    case AE_IFDIR:
      return FileType::kDirectory;
    case AE_IFLNK:
      return FileType::kSymlink;
    case AE_IFCHR:
      return FileType::kCharDevice;
    case AE_IFBLK:
      return FileType::kBlockDevice;
    case AE_IFIFO:
      return FileType::kFifo;
    case AE_IFSOCK:
      return FileType::kSocket;
    default:
      return std::nullopt;
  }
}

class LayerReader {
 public:
  LayerReader(const LayerReadOptions& options, Layer& layer)
      : options_(options), layer_(layer), queue_(options.pipeline, options.content_digest) {
    wanted_ = options.xattrs;
    wanted_.emplace_back(kCapability);
    std::sort(wanted_.begin(), wanted_.end());
    wanted_.erase(std::unique(wanted_.begin(), wanted_.end()), wanted_.end());
  }

  Result<void> run(struct archive* a, const SourceState& state) {
    CTRUST_ASSIGN_OR_RETURN(batch_, queue_.take());
    for (std::uint64_t index = 0;; ++index) {
      struct archive_entry* ae = nullptr;
      int r = ::archive_read_next_header(a, &ae);
      if (r == ARCHIVE_WARN && only_a_conversion_warning(a)) r = ARCHIVE_OK;
      if (index == 0 && (r == ARCHIVE_OK || r == ARCHIVE_EOF)) CTRUST_TRY(check_filter(a));
      if (r == ARCHIVE_EOF) break;
      std::string where = "tar member " + std::to_string(index);
      if (r != ARCHIVE_OK) return archive_error(a, state, where);
      if (index >= options_.limits.max_entries) {
        return Error(Errc::kLimit, "more than " + std::to_string(options_.limits.max_entries) +
                                       " members in one layer");
      }
      const char* name = ::archive_entry_pathname(ae);
      if (name == nullptr || *name == '\0') return Error(Errc::kFormat, where + " has no name");
      auto m = member(a, ae, name, state);
      if (!m) return std::move(m).error().with_context("tar member " + shown(name));
      if (ended_after_data_) break;
    }
    if (batch_.fill > 0 || !batch_.segments.empty()) CTRUST_TRY(queue_.submit(std::move(batch_)));
    CTRUST_TRY(queue_.close());
    for (const auto& r : queue_.hasher().results()) {
      ManifestEntry& e = layer_.members[r.member].entry;
      e.fsverity = r.fsverity;
      e.content = r.content;
      e.kind = r.kind;
    }
    return ok_result();
  }

 private:
  // OCI layers declare their compression; a layer that is something else is refused.
  Result<void> check_filter(struct archive* a) const {
    int code = ::archive_filter_code(a, 0);
    bool ok = true;
    switch (options_.compression) {
      case LayerCompression::kNone:
        ok = code == ARCHIVE_FILTER_NONE;
        break;
      case LayerCompression::kGzip:
        ok = code == ARCHIVE_FILTER_GZIP;
        break;
      case LayerCompression::kZstd:
        ok = code == ARCHIVE_FILTER_ZSTD;
        break;
      case LayerCompression::kAny:
        break;
    }
    if (!ok) {
      const char* name = ::archive_filter_name(a, 0);
      return Error(Errc::kFormat, std::string("the layer's compression (") +
                                      (name != nullptr ? name : "?") +
                                      ") is not the one its media type declares");
    }
    return ok_result();
  }

  Result<void> member(struct archive* a, struct archive_entry* ae, std::string_view name,
                      const SourceState& state) {
    const LayerLimits& limits = options_.limits;
    CTRUST_ASSIGN_OR_RETURN(std::string path, normalize_member_path(name, limits));
    LayerMember m;
    std::string_view base = std::string_view(path).substr(path.rfind('/') + 1);
    // A whiteout name is only meaningful as the last component; as a directory it would
    // put a whiteout-looking path into the image.
    if (std::string_view(path).substr(0, path.size() - base.size()).find("/.wh.") !=
        std::string_view::npos) {
      return Error(Errc::kFormat, "a whiteout name used as a directory");
    }
    if (base.starts_with(kWhiteoutPrefix)) {
      std::string parent = path.substr(0, path.size() - base.size());
      if (parent.size() > 1) parent.pop_back();  // "/a/" -> "/a"; "/" stays
      if (base == kOpaqueMarker) {
        m.kind = LayerMember::Kind::kOpaque;
        m.path = parent;
      } else if (base.starts_with(kWhiteoutMeta)) {
        return Error(Errc::kUnsupported, "unsupported whiteout metadata " + shown(base));
      } else {
        std::string_view target = base.substr(kWhiteoutPrefix.size());
        if (target.empty() || target == "." || target == "..") {
          return Error(Errc::kFormat, "whiteout without a valid name");
        }
        m.kind = LayerMember::Kind::kWhiteout;
        m.path = parent == "/" ? "/" + std::string(target) : parent + "/" + std::string(target);
      }
      layer_.members.push_back(std::move(m));
      return ok_result();
    }
    m.path = std::move(path);
    if (const char* link = ::archive_entry_hardlink(ae); link != nullptr) {
      m.kind = LayerMember::Kind::kHardlink;
      CTRUST_ASSIGN_OR_RETURN(m.link_target, normalize_member_path(link, limits));
      if (m.link_target == "/") return Error(Errc::kFormat, "hard link to the root");
      layer_.members.push_back(std::move(m));
      return ok_result();
    }
    ManifestEntry& e = m.entry;
    auto type = file_type(::archive_entry_filetype(ae));
    if (!type) return Error(Errc::kUnsupported, "unknown member type");
    e.type = *type;
    e.mode = ::archive_entry_mode(ae) & 07777;
    la_int64_t uid = ::archive_entry_uid(ae);
    la_int64_t gid = ::archive_entry_gid(ae);
    constexpr la_int64_t kMaxId = std::numeric_limits<std::uint32_t>::max();
    if (uid < 0 || uid > kMaxId || gid < 0 || gid > kMaxId) {
      return Error(Errc::kFormat, "owner out of range");
    }
    e.uid = static_cast<std::uint32_t>(uid);
    e.gid = static_cast<std::uint32_t>(gid);
    switch (e.type) {
      case FileType::kSymlink: {
        const char* target = ::archive_entry_symlink(ae);
        if (target == nullptr || *target == '\0') {
          return Error(Errc::kFormat, "symlink without a target");
        }
        e.target = target;
        if (e.target.size() > limits.max_target) {
          return Error(Errc::kLimit, "symlink target longer than " +
                                         std::to_string(limits.max_target) + " bytes");
        }
        break;
      }
      case FileType::kCharDevice:
      case FileType::kBlockDevice:
        e.rdev_major = static_cast<std::uint32_t>(::archive_entry_rdevmajor(ae));
        e.rdev_minor = static_cast<std::uint32_t>(::archive_entry_rdevminor(ae));
        break;
      default:
        break;
    }
    CTRUST_TRY(read_xattrs(ae, e));
    bool regular = e.type == FileType::kRegular;
    std::size_t index = layer_.members.size();
    layer_.members.push_back(std::move(m));
    if (regular) {
      CTRUST_TRY(read_data(a, ae, index, state));
    }
    return ok_result();
  }

  Result<void> read_xattrs(struct archive_entry* ae, ManifestEntry& e) const {
    std::size_t total = 0;
    ::archive_entry_xattr_reset(ae);
    const char* name = nullptr;
    const void* value = nullptr;
    std::size_t size = 0;
    while (::archive_entry_xattr_next(ae, &name, &value, &size) == ARCHIVE_OK) {
      if (name == nullptr) continue;
      std::string_view n(name);
      total += n.size() + size;
      if (total > options_.limits.max_xattr_bytes) {
        return Error(Errc::kLimit, "extended attributes larger than " +
                                       std::to_string(options_.limits.max_xattr_bytes) + " bytes");
      }
      if (!std::binary_search(wanted_.begin(), wanted_.end(), n)) continue;
      const auto* p = static_cast<const std::uint8_t*>(value);
      Bytes v(p, p + (p != nullptr ? size : 0));
      auto it = std::find_if(e.xattrs.begin(), e.xattrs.end(),
                             [&](const auto& x) { return x.first == n; });
      if (it != e.xattrs.end()) {
        it->second = std::move(v);  // a repeated name: the last one wins, as on extraction
      } else {
        e.xattrs.emplace_back(std::string(n), std::move(v));
      }
    }
    std::sort(e.xattrs.begin(), e.xattrs.end());
    return ok_result();
  }

  // Streams a regular member's data (holes of sparse members read as zeros) into batches.
  Result<void> read_data(struct archive* a, struct archive_entry* ae, std::size_t index,
                         const SourceState& state) {
    if (!::archive_entry_size_is_set(ae) || ::archive_entry_size(ae) < 0) {
      return Error(Errc::kFormat, "regular file without a size");
    }
    auto size = static_cast<std::uint64_t>(::archive_entry_size(ae));
    if (size > options_.limits.max_file_size) {
      return Error(Errc::kLimit,
                   "file larger than " + std::to_string(options_.limits.max_file_size) + " bytes");
    }
    layer_.members[index].entry.size = size;
    std::uint64_t done = 0;
    // Appends bytes (zeros for a hole when `p` is null) to the member's segments.
    auto append = [&](const std::uint8_t* p, std::uint64_t n) -> Result<void> {
      while (n > 0) {
        if (batch_.fill == batch_.data.size()) CTRUST_TRY(next_batch());
        std::size_t begin = batch_.fill;
        auto k = static_cast<std::size_t>(std::min<std::uint64_t>(n, batch_.data.size() - begin));
        if (p != nullptr) {
          std::memcpy(batch_.data.data() + begin, p, k);
          p += k;
        } else {
          std::memset(batch_.data.data() + begin, 0, k);
        }
        batch_.fill += k;
        extend_segment(index, begin, false);
        n -= k;
        done += k;
      }
      return ok_result();
    };
    // Blocks come with their offsets: sparse members have holes between them, read as zeros.
    for (;;) {
      const void* buf = nullptr;
      std::size_t len = 0;
      la_int64_t offset = 0;
      int r = ::archive_read_data_block(a, &buf, &len, &offset);
      if (r == ARCHIVE_EOF) break;
      if (r != ARCHIVE_OK) {
        if (done == size && !state.error && truncated(a)) {
          // The stream ends right after the last member's data, without the padding and
          // end-of-archive blocks (umoci 0.4 `insert` writes such layers). Nothing is
          // missing; umoci and Go's tar reader accept it, and so do we.
          ended_after_data_ = true;
          break;
        }
        return archive_error(a, state, "reading the file's data");
      }
      if (offset < 0 || static_cast<std::uint64_t>(offset) < done ||
          static_cast<std::uint64_t>(offset) > size || len > size - offset) {
        return Error(Errc::kFormat, "data block outside the member's size or out of order");
      }
      CTRUST_TRY(append(nullptr, static_cast<std::uint64_t>(offset) - done));
      CTRUST_TRY(append(static_cast<const std::uint8_t*>(buf), len));
    }
    if (done < size) {
      if (::archive_entry_sparse_count(ae) == 0) {
        return Error(Errc::kTruncated, "the file's data ends after " + std::to_string(done) +
                                           " of " + std::to_string(size) + " bytes");
      }
      CTRUST_TRY(append(nullptr, size - done));  // a hole at the end
    }
    if (batch_.fill == batch_.data.size()) CTRUST_TRY(next_batch());
    extend_segment(index, batch_.fill, true);
    layer_.file_bytes += size;
    return ok_result();
  }

  // Makes room in a full batch: grows it up to kBatchSize, then hands it to the hasher.
  Result<void> next_batch() {
    if (batch_.data.size() < kBatchSize) {
      batch_.data.resize(std::min(kBatchSize, 4 * batch_.data.size()));
      return ok_result();
    }
    CTRUST_TRY(queue_.submit(std::move(batch_)));
    CTRUST_ASSIGN_OR_RETURN(batch_, queue_.take());
    return ok_result();
  }

  // Extends the member's open segment in the current batch to its fill, or opens one.
  void extend_segment(std::size_t index, std::size_t begin, bool last) {
    if (!batch_.segments.empty() && batch_.segments.back().member == index &&
        !batch_.segments.back().last) {
      batch_.segments.back().end = batch_.fill;
      batch_.segments.back().last = last;
    } else {
      batch_.segments.push_back({index, begin, batch_.fill, last});
    }
  }

  const LayerReadOptions& options_;
  Layer& layer_;
  std::vector<std::string> wanted_;  // sorted
  BatchQueue queue_;
  Batch batch_;
  bool ended_after_data_ = false;
};

}  // namespace

Result<std::string> normalize_member_path(std::string_view name, const LayerLimits& limits) {
  if (name.empty()) return Error(Errc::kFormat, "empty member name");
  if (name.find('\0') != std::string_view::npos) {
    return Error(Errc::kFormat, "member name contains a NUL byte");
  }
  if (name.size() > limits.max_path) {
    return Error(Errc::kLimit,
                 "member name longer than " + std::to_string(limits.max_path) + " bytes");
  }
  if (name.front() == '/' && name.find_first_not_of('/') != std::string_view::npos) {
    return Error(Errc::kFormat, "absolute member name " + shown(name));
  }
  std::string out;
  out.reserve(name.size() + 1);
  std::size_t pos = 0;
  while (pos <= name.size()) {
    std::size_t end = name.find('/', pos);
    if (end == std::string_view::npos) end = name.size();
    std::string_view part = name.substr(pos, end - pos);
    pos = end + 1;
    if (part.empty() || part == ".") continue;
    if (part == "..") return Error(Errc::kFormat, "member name with '..': " + shown(name));
    if (part.size() > limits.max_name) {
      return Error(Errc::kLimit, "a component of " + shown(name) + " is longer than " +
                                     std::to_string(limits.max_name) + " bytes");
    }
    out += '/';
    out += part;
  }
  if (out.empty()) out = "/";
  return out;
}

Result<Layer> read_layer(const LayerSource& source, const LayerReadOptions& options) {
  ScopedCLocale c_locale;
  if (!c_locale.active()) return errno_error("cannot create the C locale", errno);
  ArchiveHandle a(::archive_read_new());
  if (!a) return Error(Errc::kInternal, "archive_read_new failed");
  ::archive_read_support_format_tar(a.get());
  // Every supported filter is enabled and the one found is then checked against the
  // declared one, so that a mismatch gets a clear error rather than "not a tar stream".
  ::archive_read_support_filter_gzip(a.get());
  ::archive_read_support_filter_zstd(a.get());
  SourceState state;
  state.source = &source;
  if (::archive_read_open(a.get(), &state, nullptr, source_read, nullptr) != ARCHIVE_OK) {
    return archive_error(a.get(), state, "not a tar stream");
  }
  Layer layer;
  {
    LayerReader reader(options, layer);
    CTRUST_TRY(reader.run(a.get(), state));
  }
  return layer;
}

Result<Layer> read_layer(ByteView bytes, const LayerReadOptions& options) {
  std::size_t offset = 0;
  LayerSource source = [&](std::span<std::uint8_t> buf) -> Result<std::size_t> {
    std::size_t n = std::min(buf.size(), bytes.size() - offset);
    if (n > 0) std::memcpy(buf.data(), bytes.data() + offset, n);
    offset += n;
    return n;
  };
  return read_layer(source, options);
}

LayerTree::LayerTree() {
  Node root;
  root.entry.type = FileType::kDirectory;
  root.entry.mode = 0755;
  nodes_.emplace("/", std::move(root));
}

// Every ancestor of `path` must be a directory (created as 0755 0:0 when missing and
// `create` is set); a symlink or any other non-directory on the way is an error, never
// followed.
Result<void> LayerTree::check_parents(const std::string& path, bool create) {
  for (std::size_t i = path.find('/', 1); i != std::string::npos; i = path.find('/', i + 1)) {
    std::string parent = path.substr(0, i);
    auto it = nodes_.find(parent);
    if (it == nodes_.end()) {
      if (!create) return Error(Errc::kNotFound, shown(parent) + " does not exist");
      Node dir;
      dir.entry.type = FileType::kDirectory;
      dir.entry.mode = 0755;
      dir.layer = layer_;
      nodes_.emplace(std::move(parent), std::move(dir));
      continue;
    }
    FileType t = it->second.entry.type;
    if (t == FileType::kSymlink) {
      return Error(Errc::kFormat,
                   shown(path) + " would be written through the symlink " + shown(parent));
    }
    if (t != FileType::kDirectory) {
      return Error(Errc::kFormat,
                   shown(path) + " is beneath " + shown(parent) + ", which is not a directory");
    }
  }
  return ok_result();
}

void LayerTree::erase_subtree(const std::string& path, bool lower_only) {
  Map::iterator begin;
  Map::iterator end;
  if (path == "/") {
    begin = std::next(nodes_.find("/"));
    end = nodes_.end();
  } else {
    // Every descendant starts with "path/"; '0' is the byte after '/'.
    begin = nodes_.lower_bound(path + "/");
    end = nodes_.lower_bound(path + "0");
  }
  if (!lower_only) {
    nodes_.erase(begin, end);
    return;
  }
  for (auto it = begin; it != end;) {
    it = it->second.layer < layer_ ? nodes_.erase(it) : std::next(it);
  }
}

Result<void> LayerTree::put(const std::string& path, ManifestEntry entry) {
  auto it = nodes_.find(path);
  if (path == "/" && entry.type != FileType::kDirectory) {
    return Error(Errc::kFormat, "the root must be a directory");
  }
  if (it == nodes_.end()) {
    nodes_.emplace(path, Node{std::move(entry), layer_});
    return ok_result();
  }
  Node& n = it->second;
  if (n.entry.type == FileType::kDirectory && entry.type != FileType::kDirectory) {
    erase_subtree(path, false);
  }
  // A directory over a directory takes the new metadata and keeps the children.
  n.entry = std::move(entry);
  n.layer = layer_;
  return ok_result();
}

Result<void> LayerTree::apply(Layer layer) {
  ++layer_;
  // Whiteouts hide what lower layers put there, never what this layer adds, whatever the
  // member order: apply them first, while the tree holds only lower layers.
  for (const LayerMember& m : layer.members) {
    if (m.kind != LayerMember::Kind::kWhiteout && m.kind != LayerMember::Kind::kOpaque) continue;
    auto parents = check_parents(m.path, false);
    if (!parents) {
      if (parents.error().code() == Errc::kNotFound) continue;  // nothing there to hide
      // Reached through a symlink, or beneath a non-directory: refused, as on extraction.
      return std::move(parents).error().with_context("whiteout");
    }
    auto it = nodes_.find(m.path);
    if (it == nodes_.end()) continue;
    if (m.kind == LayerMember::Kind::kWhiteout) {
      erase_subtree(m.path, false);
      nodes_.erase(it);
    } else if (it->second.entry.type == FileType::kDirectory) {
      erase_subtree(m.path, true);
    }
  }
  for (LayerMember& m : layer.members) {
    switch (m.kind) {
      case LayerMember::Kind::kEntry:
        if (m.path != "/") CTRUST_TRY(check_parents(m.path, true));
        CTRUST_TRY(put(m.path, std::move(m.entry)));
        break;
      case LayerMember::Kind::kHardlink: {
        auto target = check_parents(m.link_target, false);
        if (!target && target.error().code() != Errc::kNotFound) {
          return std::move(target).error().with_context("hard link " + shown(m.path));
        }
        auto it = nodes_.find(m.link_target);
        if (it == nodes_.end()) {
          return Error(Errc::kFormat, "hard link " + shown(m.path) + " to " + shown(m.link_target) +
                                          ", which does not exist");
        }
        if (it->second.entry.type == FileType::kDirectory) {
          return Error(Errc::kFormat,
                       "hard link " + shown(m.path) + " to the directory " + shown(m.link_target));
        }
        ManifestEntry copy = it->second.entry;
        CTRUST_TRY(check_parents(m.path, true));
        CTRUST_TRY(put(m.path, std::move(copy)));
        break;
      }
      case LayerMember::Kind::kOpaque:
        // The opaque directory itself exists in this layer, like its marker's parent would.
        if (m.path != "/") {
          CTRUST_TRY(check_parents(m.path + "/x", true));
        }
        break;
      case LayerMember::Kind::kWhiteout:
        break;
    }
  }
  return ok_result();
}

Manifest LayerTree::manifest() && {
  Manifest m;
  m.entries.reserve(nodes_.size());
  for (auto& [path, node] : nodes_) {
    node.entry.path = path;
    if (node.entry.type == FileType::kRegular) m.total_bytes += node.entry.size;
    m.entries.push_back(std::move(node.entry));
  }
  nodes_.clear();
  return m;
}

}  // namespace ctrust::image
