// Image layers: tar streams (plain, gzip or zstd) read with libarchive into per-layer
// records, and the in-memory root filesystem they are applied to, in order, with OCI
// whiteouts (docs/IMAGE.md, "OCI image layouts").
//
// Reading a layer is the expensive part (decompression, the fs-verity digest of every
// regular file) and is independent of the other layers, so layers can be read in parallel;
// applying the records to a LayerTree is cheap and must happen in layer order. Member
// paths are checked when read (no "..", no absolute paths, no empty components after
// normalisation, limits) and again when applied (no member may reach through a symlink or
// a non-directory that is already in the tree; hard links must name an existing
// non-directory). Every rejection is an Error; nothing is silently skipped.
//
// Thread safety: read_layer() is reentrant and may call `progress` from a second thread it
// starts; a LayerTree is single-threaded.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "image/manifest.h"
#include "util/hex.h"
#include "util/result.h"

namespace ctrust::image {

enum class LayerCompression : std::uint8_t {
  kNone,
  kGzip,
  kZstd,
  kAny,  // detect (tests and fuzzing); OCI layers always declare theirs
};

// Limits on untrusted layers; exceeding one is an Errc::kLimit error.
struct LayerLimits {
  std::uint64_t max_entries = 4'000'000;                 // members per layer
  std::size_t max_path = 65'536;                         // bytes of a member path
  std::size_t max_name = 255;                            // bytes of one path component
  std::size_t max_target = 4095;                         // bytes of a symlink target
  std::size_t max_xattr_bytes = 65'536;                  // names and values of one member
  std::uint64_t max_file_size = std::uint64_t{1} << 36;  // 64 GiB, holes included
};

struct LayerReadOptions {
  LayerCompression compression = LayerCompression::kAny;
  // Extended attributes to record; security.capability is always recorded.
  std::vector<std::string> xattrs;
  LayerLimits limits;
  // Hash regular files on a second thread while the first decompresses and parses.
  bool pipeline = true;
  // Also compute each regular file's plain digest and ContentKind (policy creation).
  std::optional<crypto::HashAlg> content_digest;
};

// One tar member, normalised. `path` is absolute within the image ("/" is the root).
struct LayerMember {
  enum class Kind : std::uint8_t {
    kEntry,     // `entry` replaces what is at `path`
    kHardlink,  // `path` becomes a copy of the entry at `link_target`
    kWhiteout,  // `.wh.NAME`: `path` (NAME) and its subtree are removed from lower layers
    kOpaque,    // `.wh..wh..opq`: `path` (the directory) hides its lower-layer children
  };
  Kind kind = Kind::kEntry;
  std::string path;
  ManifestEntry entry;      // kEntry (entry.path is left empty; `path` is the key)
  std::string link_target;  // kHardlink, normalised like `path`
};

struct Layer {
  std::vector<LayerMember> members;  // in tar order
  std::uint64_t file_bytes = 0;      // regular-file bytes hashed
};

// Where layer bytes come from: read(buf) returns the number of bytes read (0 at the end).
// The OCI reader hashes blob bytes here, so what is parsed is exactly what was verified.
using LayerSource = std::function<Result<std::size_t>(std::span<std::uint8_t>)>;

// Reads a whole layer (a tar stream, compressed as options.compression says).
Result<Layer> read_layer(const LayerSource& source, const LayerReadOptions& options);
Result<Layer> read_layer(ByteView bytes, const LayerReadOptions& options);

// Checks and normalises a tar member name: "./a//b/" -> "/a/b"; "", "." and "./" -> "/".
// Rejects NUL bytes, ".." components, absolute names other than "/", and over-long names.
Result<std::string> normalize_member_path(std::string_view name, const LayerLimits& limits);

// The root filesystem that layers are applied to. Starts as an empty root directory
// (0755, owned by 0:0) and ends as the manifest's entries.
class LayerTree {
 public:
  LayerTree();

  // Applies the next layer (its entries are moved into the tree; pass a copy to keep
  // them). On an error the tree is left partially applied.
  Result<void> apply(Layer layer);
  std::size_t size() const { return nodes_.size(); }
  // The entries, sorted by path bytes, with paths filled in.
  Manifest manifest() &&;

 private:
  struct Node {
    ManifestEntry entry;  // path unused (the key)
    std::uint32_t layer = 0;
  };
  using Map = std::map<std::string, Node>;

  Result<void> check_parents(const std::string& path, bool create);
  void erase_subtree(const std::string& path, bool lower_only);
  Result<void> put(const std::string& path, ManifestEntry entry);

  Map nodes_;
  std::uint32_t layer_ = 0;  // index of the layer being applied
};

}  // namespace ctrust::image
