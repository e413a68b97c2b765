// The IMA measurement-list model (see FORMATS.md, "IMA measurement list").
//
// An Entry keeps the template data exactly as stored, so that template digests are
// recomputed over the very bytes that were logged; parse_fields() gives typed views into
// it. Templates: ima-ng, ima-sig, ima-buf, ima-ngv2, ima-sigv2, ima-modsig and the legacy
// `ima`. Everything here treats its input as untrusted: lengths are checked against the
// documented limits below before anything is allocated or read.
//
// Thread safety: plain values; no shared state.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/digest.h"

namespace ctrust::imalog {

using crypto::Digest;
using crypto::HashAlg;

// Documented limits for untrusted logs (docs/cli/log.md).
inline constexpr std::uint32_t kMaxPcrIndex = 23;              // TPM 2.0 PC client: PCRs 0-23
inline constexpr std::uint32_t kMaxTemplateNameLen = 32;       // the kernel allows 15
inline constexpr std::uint32_t kMaxTemplateDataLen = 1 << 20;  // 1 MiB per record
inline constexpr std::uint32_t kMaxEventNameLen = 4096;        // PATH_MAX, NUL included
inline constexpr std::uint32_t kLegacyNameMax = 255;           // IMA_EVENT_NAME_LEN_MAX

enum class FieldId : std::uint8_t {
  kD,        // legacy: 20-byte SHA-1 file digest, no length in the binary form
  kN,        // legacy: event name, NUL-padded to 256 bytes for hashing
  kDng,      // "alg:" NUL digest
  kDngV2,    // "type:alg:" NUL digest
  kNng,      // event name including its NUL
  kSig,      // security.ima signature (hex in ASCII)
  kBuf,      // raw buffer (hex in ASCII)
  kDModsig,  // digest of the file without its appended signature, as d-ng; may be empty
  kModsig,   // appended signature (hex in ASCII)
};

struct TemplateDesc {
  std::string_view name;
  std::vector<FieldId> fields;
  bool legacy = false;  // the `ima` template: no template-data length, special hashing
};

// nullptr for a template we do not know.
const TemplateDesc* find_template(std::string_view name);
std::string_view field_name(FieldId id);

// The kernel writes integers in host order unless booted with ima_canonical_fmt; the
// template digests of a big-endian host-order log cover big-endian field lengths, so an
// entry remembers the order its data is in.
enum class ByteOrder : std::uint8_t { kLittle, kBig };

struct Entry {
  std::uint32_t pcr = 10;
  ByteOrder order = ByteOrder::kLittle;
  Digest template_digest = Digest::zero(HashAlg::kSha1);  // as logged (header digest)
  std::string template_name;
  // Template data exactly as in the binary form: for non-legacy templates the
  // concatenation of `u32 length + bytes` per field (little-endian); for `ima` the 20-byte
  // digest followed by `u32 length + name` without NUL.
  Bytes data;

  // A violation record logs an all-zero template digest.
  bool is_violation() const { return template_digest.is_zero(); }
};

// Typed views into an Entry's data; valid while the Entry is unchanged.
struct Fields {
  std::string_view digest_type;  // d-ngv2 only: "ima" or "verity"
  std::string_view digest_alg;   // "sha256", ...; "sha1" for the legacy d field
  ByteView file_digest;
  std::string_view name;  // without the NUL
  ByteView sig;
  ByteView buf;
  ByteView modsig;
  std::string_view dmodsig_alg;
  ByteView dmodsig;
  // The file digest as a Digest, if its algorithm is one we know.
  std::optional<Digest> file_digest_value() const;
};

// Checks the template data against its template (field count, lengths, digest prefixes,
// NUL-terminated names without embedded NULs) and returns the views. The error says which
// field is wrong.
Result<Fields> parse_fields(const Entry& entry);

// The template digest of `entry` in `bank`: H(template data), or for `ima`
// H(digest || name NUL-padded to 256 bytes).
Result<Digest> template_digest(const Entry& entry, HashAlg bank);

// Builders for the records ctrust writes. Names have spaces replaced by '_' as the kernel
// does, so that the ASCII form can represent them.
struct MeasurementSpec {
  std::string template_name = "ima-ng";
  std::uint32_t pcr = 10;
  Digest file_digest = Digest::zero(HashAlg::kSha256);
  std::string name;
  Bytes sig;  // ima-sig
  Bytes buf;  // ima-buf
};
// Builds the template data and the header digest in `header_bank`.
Result<Entry> make_entry(const MeasurementSpec& spec, HashAlg header_bank);
// A violation record: zero file digest in `file_alg`, zero header digest.
Result<Entry> make_violation(std::string_view template_name, std::uint32_t pcr,
                             std::string_view name, HashAlg file_alg, HashAlg header_bank);

}  // namespace ctrust::imalog
