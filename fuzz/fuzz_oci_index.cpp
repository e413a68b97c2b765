// Fuzzes the OCI JSON parsers: image indexes (index.json), image manifests, digests and
// layer media types. Every input gives a value or an Error; nothing throws.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "image/oci.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto index = ctrust::image::parse_oci_index(text)) {
    for (const auto& d : *index) {
      if (d.digest_string().find(':') == std::string::npos) __builtin_trap();
      (void)ctrust::image::layer_compression(d.media_type);
    }
  }
  if (auto m = ctrust::image::parse_oci_manifest(text)) {
    for (const auto& l : m->layers) (void)ctrust::image::layer_compression(l.media_type);
  }
  if (auto d = ctrust::image::parse_oci_digest(text)) {
    if (d->size() != 32 && d->size() != 64) __builtin_trap();
  }
  return 0;
}
