// Message digests over buffers, files and open fds (OpenSSL 3 EVP underneath).
//
// HashAlg names the algorithms the project is agile over; Digest is a fixed-size value
// (no allocation) so that hot paths such as log replay and the exec decision can pass it
// around freely. Hasher is a streaming context; digest_bytes() is a one-shot that reuses a
// per-thread context. Files are always hashed through an fd with pread(), never reopened
// by path, so that the agent can hash exactly what the kernel handed it.
//
// Thread safety: Hasher is single-threaded; the free functions are thread safe.
#pragma once

#include <openssl/evp.h>

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "util/file.h"
#include "util/hex.h"
#include "util/result.h"
#include "util/unique_handle.h"

namespace ctrust::crypto {

enum class HashAlg : std::uint8_t { kSha1, kSha256, kSha384, kSha512 };

inline constexpr std::array<HashAlg, 4> kAllHashAlgs = {HashAlg::kSha1, HashAlg::kSha256,
                                                        HashAlg::kSha384, HashAlg::kSha512};
inline constexpr std::size_t kMaxDigestSize = 64;

constexpr std::size_t digest_size(HashAlg alg) {
  switch (alg) {
    case HashAlg::kSha1:
      return 20;
    case HashAlg::kSha256:
      return 32;
    case HashAlg::kSha384:
      return 48;
    case HashAlg::kSha512:
      return 64;
  }
  return 0;
}

// The algorithm's internal block size (used to pad fs-verity salts).
constexpr std::size_t hash_block_size(HashAlg alg) {
  return (alg == HashAlg::kSha384 || alg == HashAlg::kSha512) ? 128 : 64;
}

// "sha1", "sha256", "sha384", "sha512": the names IMA and fsverity-utils print.
std::string_view hash_name(HashAlg alg);
// Accepts the names above in any case; nullopt for anything else.
std::optional<HashAlg> parse_hash_alg(std::string_view name);
// The digest size in bytes -> the algorithm with that size, if unambiguous.
std::optional<HashAlg> hash_alg_for_size(std::size_t size);

// A digest value: algorithm plus up to 64 bytes, compared by value.
struct Digest {
  HashAlg alg = HashAlg::kSha256;
  std::array<std::uint8_t, kMaxDigestSize> bytes{};

  std::size_t size() const { return digest_size(alg); }
  ByteView view() const { return {bytes.data(), size()}; }
  std::string hex() const { return to_hex(view()); }
  bool is_zero() const;
  bool operator==(const Digest& other) const;

  static Digest zero(HashAlg alg) { return Digest{alg, {}}; }
  // Copies `bytes`, which must be digest_size(alg) long.
  static Result<Digest> from_bytes(HashAlg alg, ByteView bytes);
  static Result<Digest> from_hex(HashAlg alg, std::string_view hex);
};

// The cached OpenSSL method for `alg` (fetched once per process).
const EVP_MD* evp_md(HashAlg alg);

class Hasher {
 public:
  static Result<Hasher> create(HashAlg alg);

  HashAlg alg() const { return alg_; }
  Result<void> update(ByteView data);
  // Returns the digest and leaves the hasher ready for a new message.
  Result<Digest> finish();
  // Copies another hasher's state (same algorithm), e.g. to resume from a salted prefix.
  Result<void> copy_state_from(const Hasher& other);

 private:
  using Ctx = UniquePtr<EVP_MD_CTX, EVP_MD_CTX_free>;
  Hasher(HashAlg alg, Ctx ctx) : alg_(alg), ctx_(std::move(ctx)) {}
  HashAlg alg_;
  Ctx ctx_;
};

// One-shot digest of a buffer; reuses a per-thread context (no allocation).
Result<Digest> digest_bytes(HashAlg alg, ByteView data);
// One-shot digest of the concatenation a || b (PCR extend: H(old || new)).
Result<Digest> digest_concat(HashAlg alg, ByteView a, ByteView b);

using ctrust::ProgressFn;

// Streams an open fd from offset 0 with pread() (the fd's offset is not moved).
Result<Digest> digest_fd(HashAlg alg, int fd, const ProgressFn& progress = {});
Result<Digest> digest_file(HashAlg alg, const std::string& path, const ProgressFn& progress = {});

}  // namespace ctrust::crypto
