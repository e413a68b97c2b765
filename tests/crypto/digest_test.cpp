#include "crypto/digest.h"

#include <fcntl.h>
#include <gtest/gtest.h>

#include <unistd.h>
#include "support/temp_dir.h"

#include <cstdlib>
#include <filesystem>
#include <string>

#include "util/file.h"

namespace ctrust::crypto {
namespace {

// FIPS 180 "abc" vectors.
TEST(Digest, KnownVectors) {
  ByteView abc = as_bytes("abc");
  EXPECT_EQ(digest_bytes(HashAlg::kSha1, abc)->hex(), "a9993e364706816aba3e25717850c26c9cd0d89d");
  EXPECT_EQ(digest_bytes(HashAlg::kSha256, abc)->hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(
      digest_bytes(HashAlg::kSha384, abc)->hex(),
      "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca1"
      "34c825a7");
  EXPECT_EQ(
      digest_bytes(HashAlg::kSha512, abc)->hex(),
      "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c2"
      "3a3feebbd454d4423643ce80e2a9ac94fa54ca49f");
}

TEST(Digest, NamesAndSizes) {
  for (HashAlg alg : kAllHashAlgs) {
    EXPECT_EQ(parse_hash_alg(hash_name(alg)), alg);
    EXPECT_EQ(hash_alg_for_size(digest_size(alg)), alg);
  }
  EXPECT_EQ(parse_hash_alg("SHA256"), HashAlg::kSha256);
  EXPECT_FALSE(parse_hash_alg("md5").has_value());
  EXPECT_FALSE(parse_hash_alg("").has_value());
  EXPECT_FALSE(hash_alg_for_size(16).has_value());
}

TEST(Digest, StreamingEqualsOneShotForAnyChunking) {
  std::string data(100000, '\0');
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 31 + 7);
  for (HashAlg alg : kAllHashAlgs) {
    Digest want = *digest_bytes(alg, as_bytes(data));
    for (std::size_t chunk : {1u, 63u, 64u, 4096u, 99999u}) {
      auto h = Hasher::create(alg);
      ASSERT_TRUE(h.ok());
      for (std::size_t off = 0; off < data.size(); off += chunk) {
        ASSERT_TRUE(
            h->update(as_bytes(data).subspan(off, std::min(chunk, data.size() - off))).ok());
      }
      EXPECT_EQ(*h->finish(), want) << hash_name(alg) << " chunk " << chunk;
      // finish() leaves the hasher ready for a new message.
      EXPECT_EQ(*h->finish(), *digest_bytes(alg, {}));
    }
  }
}

TEST(Digest, ConcatEqualsHashOfConcatenation) {
  Digest a = *digest_concat(HashAlg::kSha256, as_bytes("hello "), as_bytes("world"));
  EXPECT_EQ(a, *digest_bytes(HashAlg::kSha256, as_bytes("hello world")));
}

TEST(Digest, FromHexAndBytesCheckLength) {
  EXPECT_FALSE(Digest::from_hex(HashAlg::kSha256, "abcd").ok());
  EXPECT_FALSE(Digest::from_bytes(HashAlg::kSha1, Bytes(21)).ok());
  auto d = Digest::from_hex(HashAlg::kSha1, "a9993e364706816aba3e25717850c26c9cd0d89d");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d, *digest_bytes(HashAlg::kSha1, as_bytes("abc")));
  EXPECT_TRUE(Digest::zero(HashAlg::kSha512).is_zero());
  EXPECT_FALSE(d->is_zero());
  // Equal bytes in different algorithms are different digests.
  EXPECT_FALSE(Digest::zero(HashAlg::kSha1) == Digest::zero(HashAlg::kSha256));
}

class DigestFileTest : public ::testing::Test {
 protected:
  testing::TempDir tmp_;
  std::string dir_ = tmp_.path();
};

TEST_F(DigestFileTest, FileAndFdDigestsMatchBufferDigest) {
  // Larger than one read chunk so the loop runs several times.
  Bytes data(700 * 1024 + 3);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::uint8_t>(i ^ (i >> 8));
  std::string path = dir_ + "/f";
  ASSERT_TRUE(write_file_atomic(path, data, 0600).ok());
  std::uint64_t progress = 0;
  auto d = digest_file(HashAlg::kSha256, path, [&](std::uint64_t n) { progress += n; });
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d, *digest_bytes(HashAlg::kSha256, data));
  EXPECT_EQ(progress, data.size());

  // Through an fd whose offset is elsewhere: hashed from 0, offset untouched.
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_EQ(::lseek(fd.get(), 1234, SEEK_SET), 1234);
  EXPECT_EQ(*digest_fd(HashAlg::kSha512, fd.get()), *digest_bytes(HashAlg::kSha512, data));
  EXPECT_EQ(::lseek(fd.get(), 0, SEEK_CUR), 1234);
}

TEST_F(DigestFileTest, PipesAreReadSequentially) {
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  UniqueFd rd(p[0]);
  {
    UniqueFd wr(p[1]);
    ASSERT_TRUE(write_all(wr.get(), as_bytes("abc")).ok());
  }
  EXPECT_EQ(digest_fd(HashAlg::kSha1, rd.get())->hex(), "a9993e364706816aba3e25717850c26c9cd0d89d");
}

TEST_F(DigestFileTest, MissingFileAndDirectoryAreErrors) {
  auto missing = digest_file(HashAlg::kSha256, dir_ + "/missing");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().native(), ENOENT);
  auto dir = digest_file(HashAlg::kSha256, dir_);
  ASSERT_FALSE(dir.ok());
  EXPECT_EQ(dir.error().native(), EISDIR);
}

}  // namespace
}  // namespace ctrust::crypto
