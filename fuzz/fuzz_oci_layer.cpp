// Fuzzes the OCI layer reader (a tar stream, plain, gzip or zstd, as libarchive detects it)
// and the in-memory tree it is applied to: the input is applied twice, as two layers, so
// that whiteouts, opaque markers, replacements and hard links meet lower-layer entries.
// Whatever the input, the result is a tree: paths sorted and unique, the root first, every
// parent a directory, no whiteout names left.
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>

#include "image/layer.h"

namespace {

bool is_tree(const ctrust::image::Manifest& m) {
  using ctrust::image::FileType;
  if (m.entries.empty() || m.entries.front().path != "/") return false;
  if (m.entries.front().type != FileType::kDirectory) return false;
  std::set<std::string> dirs = {"/"};
  for (std::size_t i = 1; i < m.entries.size(); ++i) {
    const auto& e = m.entries[i];
    if (!(m.entries[i - 1].path < e.path)) return false;
    std::size_t slash = e.path.rfind('/');
    std::string parent = slash == 0 ? "/" : e.path.substr(0, slash);
    if (dirs.count(parent) == 0) return false;
    if (e.path.compare(slash + 1, 4, ".wh.") == 0) return false;
    if (e.type == FileType::kDirectory) dirs.insert(e.path);
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  ctrust::image::LayerReadOptions options;
  options.compression = ctrust::image::LayerCompression::kAny;
  options.pipeline = size % 8 == 0;  // mostly inline; sometimes the hashing thread too
  options.xattrs = {"user.test"};
  options.limits.max_file_size = std::uint64_t{1} << 20;  // holes are hashed as zeros
  options.limits.max_entries = 20000;
  auto layer = ctrust::image::read_layer(ctrust::ByteView(data, size), options);
  if (!layer) return 0;
  ctrust::image::LayerTree tree;
  if (!tree.apply(*layer)) return 0;
  (void)tree.apply(*layer);
  ctrust::image::Manifest m = std::move(tree).manifest();
  if (!is_tree(m)) __builtin_trap();
  (void)m.text();
  return 0;
}
