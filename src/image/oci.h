// OCI image layouts (image-spec v1: `oci-layout`, `index.json`, `blobs/<alg>/<hex>`) as a
// source of image manifests: the manifest of the root filesystem that the image's layers
// produce, identical to manifest_from_directory() of that root filesystem unpacked.
//
// Everything in the layout is untrusted. Blob names are built only from digests that passed
// a strict check (sha256 or sha512, lowercase hex of the right length), opened beneath the
// layout without following symlinks, and every blob read (indexes, manifests, the config,
// every layer) is checked against its descriptor's size and digest; layer bytes are hashed
// as they are decompressed, so what is parsed is what was verified. JSON errors, unknown
// media types and hostile tar members are Errors, never skipped.
//
// Thread safety: the functions are reentrant; ManifestOptions callbacks are called from
// worker threads. Layers are read in parallel, then applied in order (image/layer.h).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "image/layer.h"
#include "image/manifest.h"

namespace ctrust::image {

inline constexpr std::string_view kOciManifestType = "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view kOciIndexType = "application/vnd.oci.image.index.v1+json";
inline constexpr std::string_view kOciRefName = "org.opencontainers.image.ref.name";

struct Descriptor {
  std::string media_type;
  crypto::Digest digest;
  std::uint64_t size = 0;
  std::map<std::string, std::string> annotations;
  std::string os;  // platform, if the descriptor has one
  std::string architecture;
  std::string variant;

  std::string digest_string() const;  // "sha256:HEX"
};

struct ImageManifest {
  Descriptor config;
  std::vector<Descriptor> layers;
};

// Limits on untrusted layouts (Errc::kLimit beyond them).
inline constexpr std::size_t kMaxJsonBlob = std::size_t{4} << 20;  // index, manifest, config
inline constexpr std::size_t kMaxDescriptors = 4096;               // per index or manifest
inline constexpr int kMaxIndexDepth = 4;                           // nested indexes
inline constexpr std::size_t kMaxJsonDepth = 64;                   // JSON nesting in a blob

// "sha256:<64 lowercase hex>" or "sha512:<128 lowercase hex>"; anything else is an error.
Result<crypto::Digest> parse_oci_digest(std::string_view text);
// The descriptors of an image index (index.json or a nested index).
Result<std::vector<Descriptor>> parse_oci_index(std::string_view json);
// An image manifest (OCI or Docker schema 2).
Result<ImageManifest> parse_oci_manifest(std::string_view json);
// The compression a layer media type declares; unknown and non-distributable types are
// errors that name the type.
Result<LayerCompression> layer_compression(std::string_view media_type);

// The manifest of the image `tag` in the OCI layout at `dir` (with no tag: the only image
// in the layout). Errors name the blob, layer or member at fault.
Result<Manifest> manifest_from_oci_layout(const std::string& dir,
                                          const std::optional<std::string>& tag,
                                          const ManifestOptions& options);

}  // namespace ctrust::image
