#include "crypto/fsverity.h"

#include <gtest/gtest.h>

#include <cstring>

namespace ctrust::crypto {
namespace {

Bytes pattern(std::size_t n) {
  Bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>((i * 7 + 3) % 251);
  return b;
}

// Vectors from fsverity-utils 1.5 (`fsverity digest`) over pattern(4096 * 130 + 5): three
// tree levels for sha256 at 4 KiB blocks. The CLI test cross-checks many more sizes live.
TEST(FsVerity, MatchesFsverityUtilsVectors) {
  Bytes data = pattern(4096 * 130 + 5);
  FsVerityParams p;
  EXPECT_EQ(fsverity_digest_bytes(data, p)->hex(),
            "ce11866beab30517c8bcd1bc55daf98a4a6f2061d9a7d7965bb6544eeff79107");
  p.alg = HashAlg::kSha512;
  p.salt = {0x00, 0x11, 0x22, 0x33};
  EXPECT_EQ(fsverity_digest_bytes(data, p)->hex(),
            "b228a8caa49963f64dbc43ae343e097b219fa5ed855727709e050503cc702052d3fba982c9bf3207e2cd38"
            "3688fa6fa66d9de8489b9bd935dee156989a202894");
  FsVerityParams small;
  small.block_size = 1024;
  EXPECT_EQ(fsverity_digest_bytes(data, small)->hex(),
            "477a41cf0a2620d41f2f52761d835aa9cf8f972c91b0f28b277c541dbef25f2c");
}

// For a file of one block the root is the hash of the zero-padded block; build the
// descriptor by hand from FORMATS.md and compare.
TEST(FsVerity, SingleBlockDescriptorByHand) {
  Bytes data = pattern(100);
  Bytes block(4096, 0);
  std::memcpy(block.data(), data.data(), data.size());
  Digest root = *digest_bytes(HashAlg::kSha256, block);
  std::uint8_t desc[256] = {};
  desc[0] = 1;
  desc[1] = 1;
  desc[2] = 12;
  desc[8] = 100;
  std::memcpy(desc + 16, root.bytes.data(), 32);
  Digest want = *digest_bytes(HashAlg::kSha256, ByteView(desc, sizeof(desc)));

  auto h = FsVerityHasher::create({});
  ASSERT_TRUE(h.ok());
  ASSERT_TRUE(h->update(data).ok());
  EXPECT_EQ(*h->finish(), want);
  EXPECT_EQ(h->root_hash(), root);
}

TEST(FsVerity, EmptyFileHasZeroRoot) {
  auto h = FsVerityHasher::create({});
  ASSERT_TRUE(h.ok());
  Digest d = *h->finish();
  EXPECT_TRUE(h->root_hash().is_zero());
  std::uint8_t desc[256] = {1, 1, 12};
  EXPECT_EQ(d, *digest_bytes(HashAlg::kSha256, ByteView(desc, sizeof(desc))));
}

TEST(FsVerity, ChunkingDoesNotMatter) {
  Bytes data = pattern(4096 * 129 + 17);
  for (HashAlg alg : {HashAlg::kSha256, HashAlg::kSha512}) {
    FsVerityParams p;
    p.alg = alg;
    Digest want = *fsverity_digest_bytes(data, p);
    for (std::size_t chunk : {1u, 100u, 4096u, 4097u, 65536u}) {
      auto h = FsVerityHasher::create(p);
      ASSERT_TRUE(h.ok());
      for (std::size_t off = 0; off < data.size(); off += chunk) {
        ASSERT_TRUE(
            h->update(ByteView(data).subspan(off, std::min(chunk, data.size() - off))).ok());
      }
      EXPECT_EQ(*h->finish(), want) << "chunk " << chunk;
    }
  }
}

TEST(FsVerity, SaltSizeAndContentChangeTheDigest) {
  Bytes data = pattern(5000);
  FsVerityParams p;
  Digest plain = *fsverity_digest_bytes(data, p);
  p.salt = {1};
  Digest s1 = *fsverity_digest_bytes(data, p);
  p.salt = {1, 0};  // same padded salt block, different salt_size in the descriptor
  Digest s2 = *fsverity_digest_bytes(data, p);
  EXPECT_NE(plain, s1);
  EXPECT_NE(s1, s2);
}

TEST(FsVerity, RejectsBadParameters) {
  FsVerityParams p;
  p.alg = HashAlg::kSha1;
  EXPECT_EQ(validate(p).error().code(), Errc::kInvalidArgument);
  p.alg = HashAlg::kSha256;
  p.block_size = 3000;
  EXPECT_FALSE(validate(p).ok());
  p.block_size = 512;
  EXPECT_FALSE(validate(p).ok());
  p.block_size = 4096;
  p.salt = Bytes(33, 1);
  EXPECT_FALSE(FsVerityHasher::create(p).ok());
  p.salt = Bytes(32, 1);
  EXPECT_TRUE(validate(p).ok());
}

}  // namespace
}  // namespace ctrust::crypto
