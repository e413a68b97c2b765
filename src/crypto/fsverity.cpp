#include "crypto/fsverity.h"

#include <algorithm>
#include <cstring>

namespace ctrust::crypto {
namespace {

constexpr std::size_t kMaxSalt = 32;
constexpr std::size_t kDescriptorSize = 256;

std::uint8_t fsverity_alg_id(HashAlg alg) { return alg == HashAlg::kSha256 ? 1 : 2; }

void put_le64(std::uint8_t* p, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}

}  // namespace

Result<void> validate(const FsVerityParams& params) {
  if (params.alg != HashAlg::kSha256 && params.alg != HashAlg::kSha512) {
    return Error(Errc::kInvalidArgument,
                 "fs-verity supports sha256 and sha512, not " + std::string(hash_name(params.alg)));
  }
  std::uint32_t bs = params.block_size;
  if (bs < 1024 || bs > 65536 || (bs & (bs - 1)) != 0) {
    return Error(Errc::kInvalidArgument,
                 "fs-verity block size must be a power of two from 1024 "
                 "to 65536, not " +
                     std::to_string(bs));
  }
  if (params.salt.size() > kMaxSalt) {
    return Error(Errc::kInvalidArgument,
                 "fs-verity salt is at most 32 bytes, got " + std::to_string(params.salt.size()));
  }
  return ok_result();
}

Result<FsVerityHasher> FsVerityHasher::create(const FsVerityParams& params) {
  CTRUST_TRY(validate(params));
  CTRUST_ASSIGN_OR_RETURN(Hasher hasher, Hasher::create(params.alg));
  CTRUST_ASSIGN_OR_RETURN(Hasher salted, Hasher::create(params.alg));
  if (!params.salt.empty()) {
    // The salt is zero-padded to the hash's block size and prepended to every block.
    Bytes padded(hash_block_size(params.alg), 0);
    std::copy(params.salt.begin(), params.salt.end(), padded.begin());
    CTRUST_TRY(salted.update(padded));
  }
  return FsVerityHasher(params, std::move(hasher), std::move(salted));
}

FsVerityHasher::FsVerityHasher(FsVerityParams params, Hasher block_hasher, Hasher salted)
    : params_(std::move(params)),
      hasher_(std::move(block_hasher)),
      salted_(std::move(salted)),
      data_block_(params_.block_size, 0),
      root_(Digest::zero(params_.alg)) {
  // Spans into a level's block are held while the level above is appended, so the levels
  // must never move: 32 levels cover any 64-bit file size at any allowed block size.
  levels_.reserve(32);
}

Result<void> FsVerityHasher::hash_block(ByteView block, std::size_t level) {
  if (!params_.salt.empty()) CTRUST_TRY(hasher_.copy_state_from(salted_));
  CTRUST_TRY(hasher_.update(block));
  CTRUST_ASSIGN_OR_RETURN(Digest d, hasher_.finish());
  return push_hash(d, level);
}

Result<void> FsVerityHasher::push_hash(const Digest& d, std::size_t level) {
  if (levels_.size() <= level) {
    levels_.resize(level + 1);
    levels_[level].block.assign(params_.block_size, 0);
  }
  Level& lv = levels_[level];
  std::memcpy(lv.block.data() + lv.fill, d.bytes.data(), d.size());
  lv.fill += d.size();
  lv.count += 1;
  lv.last = d;
  if (lv.fill + d.size() > params_.block_size) {
    // A full tree block: hash it into the level above and start a new one.
    lv.fill = 0;
    CTRUST_TRY(hash_block(levels_[level].block, level + 1));
    std::fill(levels_[level].block.begin(), levels_[level].block.end(), 0);
  }
  return ok_result();
}

Result<void> FsVerityHasher::update(ByteView data) {
  data_size_ += data.size();
  std::size_t bs = params_.block_size;
  // Whole blocks straight from the caller's buffer, without copying.
  if (data_fill_ == 0) {
    while (data.size() >= bs) {
      CTRUST_TRY(hash_block(data.first(bs), 0));
      data = data.subspan(bs);
    }
  }
  while (!data.empty()) {
    std::size_t take = std::min(bs - data_fill_, data.size());
    std::memcpy(data_block_.data() + data_fill_, data.data(), take);
    data_fill_ += take;
    data = data.subspan(take);
    if (data_fill_ == bs) {
      CTRUST_TRY(hash_block(data_block_, 0));
      data_fill_ = 0;
      while (data.size() >= bs) {
        CTRUST_TRY(hash_block(data.first(bs), 0));
        data = data.subspan(bs);
      }
    }
  }
  return ok_result();
}

Result<Digest> FsVerityHasher::finish() {
  if (data_fill_ > 0) {
    std::fill(data_block_.begin() + static_cast<std::ptrdiff_t>(data_fill_), data_block_.end(), 0);
    CTRUST_TRY(hash_block(data_block_, 0));
    data_fill_ = 0;
  }
  root_ = Digest::zero(params_.alg);  // an empty file has an all-zero root
  // The root is the single hash of the first level that holds exactly one hash; below
  // that, each level's partial last block is zero-padded and hashed upward.
  for (std::size_t i = 0; i < levels_.size(); ++i) {
    Level& lv = levels_[i];
    if (lv.count == 1 && i + 1 == levels_.size()) {
      root_ = lv.last;
      break;
    }
    if (lv.fill > 0) {
      lv.fill = 0;
      CTRUST_TRY(hash_block(levels_[i].block, i + 1));
    }
  }

  std::uint8_t desc[kDescriptorSize] = {};
  desc[0] = 1;  // version
  desc[1] = fsverity_alg_id(params_.alg);
  desc[2] = static_cast<std::uint8_t>(__builtin_ctz(params_.block_size));
  desc[3] = static_cast<std::uint8_t>(params_.salt.size());
  put_le64(desc + 8, data_size_);
  std::memcpy(desc + 16, root_.bytes.data(), root_.size());
  if (!params_.salt.empty()) std::memcpy(desc + 80, params_.salt.data(), params_.salt.size());
  return digest_bytes(params_.alg, ByteView(desc, sizeof(desc)));
}

Result<Digest> fsverity_digest_fd(int fd, const FsVerityParams& params,
                                  const ProgressFn& progress) {
  CTRUST_ASSIGN_OR_RETURN(FsVerityHasher hasher, FsVerityHasher::create(params));
  CTRUST_TRY(for_each_chunk(
      fd, [&](ByteView chunk) { return hasher.update(chunk); }, progress));
  return hasher.finish();
}

Result<Digest> fsverity_digest_bytes(ByteView data, const FsVerityParams& params) {
  CTRUST_ASSIGN_OR_RETURN(FsVerityHasher hasher, FsVerityHasher::create(params));
  CTRUST_TRY(hasher.update(data));
  return hasher.finish();
}

}  // namespace ctrust::crypto
