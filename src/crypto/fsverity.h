// The fs-verity file digest, computed in userspace exactly as the kernel and
// fsverity-utils define it (see FORMATS.md): a Merkle tree over fixed-size blocks, then the
// hash of the 256-byte descriptor. This is what makes image digests kernel-verifiable.
//
// Thread safety: FsVerityHasher is single-threaded; fsverity_digest_fd is thread safe.
#pragma once

#include <cstdint>
#include <vector>

#include "crypto/digest.h"

namespace ctrust::crypto {

struct FsVerityParams {
  HashAlg alg = HashAlg::kSha256;   // sha256 or sha512, the two the kernel accepts
  std::uint32_t block_size = 4096;  // a power of two from 1024 to 65536
  Bytes salt;                       // at most 32 bytes
};

// Checks the parameters; the error says which one is wrong.
Result<void> validate(const FsVerityParams& params);

// Streaming computation: feed the file's bytes in any chunking, then finish().
class FsVerityHasher {
 public:
  static Result<FsVerityHasher> create(const FsVerityParams& params);

  Result<void> update(ByteView data);
  // The fs-verity digest (hash of the descriptor); root_hash() is valid afterwards.
  Result<Digest> finish();
  const Digest& root_hash() const { return root_; }

 private:
  FsVerityHasher(FsVerityParams params, Hasher block_hasher, Hasher salted);
  Result<void> hash_block(ByteView block, std::size_t level);
  Result<void> push_hash(const Digest& d, std::size_t level);

  FsVerityParams params_;
  Hasher hasher_;
  Hasher salted_;  // state after absorbing the padded salt (unused without salt)
  std::vector<std::uint8_t> data_block_;
  std::size_t data_fill_ = 0;
  std::uint64_t data_size_ = 0;
  struct Level {
    std::vector<std::uint8_t> block;
    std::size_t fill = 0;
    std::uint64_t count = 0;  // hashes ever appended to this level
    Digest last;              // the most recent hash appended
  };
  std::vector<Level> levels_;
  Digest root_;
};

Result<Digest> fsverity_digest_fd(int fd, const FsVerityParams& params,
                                  const ProgressFn& progress = {});
Result<Digest> fsverity_digest_bytes(ByteView data, const FsVerityParams& params);

}  // namespace ctrust::crypto
