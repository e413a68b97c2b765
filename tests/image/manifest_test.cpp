#include "image/manifest.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "crypto/fsverity.h"
#include "support/temp_dir.h"
#include "util/file.h"

namespace ctrust::image {
namespace {

TEST(Manifest, EscapesEverythingThatCouldSplitALine) {
  EXPECT_EQ(escape_bytes("/usr/bin/ls"), "/usr/bin/ls");
  EXPECT_EQ(escape_bytes("a b\nc\\d"), "a\\x20b\\x0ac\\x5cd");
  EXPECT_EQ(escape_bytes(std::string("\xff\x00", 2)), "\\xff\\x00");
}

class ManifestTest : public ::testing::Test {
 protected:
  void write(const std::string& rel, std::string_view data, mode_t mode = 0644) {
    ASSERT_TRUE(write_file_atomic(root_ + rel, as_bytes(data), mode).ok());
  }
  testing::TempDir tmp_;
  std::string root_ = tmp_.file("root");
};

TEST_F(ManifestTest, TextOfASmallTree) {
  ASSERT_EQ(::mkdir(root_.c_str(), 0755), 0);
  ASSERT_EQ(::chmod(root_.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((root_ + "/bin").c_str(), 0755), 0);
  ASSERT_EQ(::chmod((root_ + "/bin").c_str(), 0755), 0);
  write("/bin/tool", "tool contents", 0755);
  write("/a file", "");
  ASSERT_EQ(::symlink("tool", (root_ + "/bin/sh").c_str()), 0);
  uid_t u = ::getuid();
  gid_t g = ::getgid();

  auto m = manifest_from_directory(root_, {});
  ASSERT_TRUE(m.ok()) << m.error().message();
  crypto::Digest tool = *crypto::fsverity_digest_bytes(as_bytes("tool contents"), {});
  crypto::Digest empty = *crypto::fsverity_digest_bytes({}, {});
  std::string ids = " " + std::to_string(u) + " " + std::to_string(g);
  std::string want =
      "ctrust-image-manifest 1\n"
      "/ d 0755" +
      ids +
      "\n"
      "/a\\x20file f 0644" +
      ids + " size=0 fsverity=sha256:" + empty.hex() +
      "\n"
      "/bin d 0755" +
      ids +
      "\n"
      "/bin/sh l 0777" +
      ids +
      " target=tool\n"
      "/bin/tool f 0755" +
      ids + " size=13 fsverity=sha256:" + tool.hex() + "\n";
  EXPECT_EQ(m->text(), want);
  EXPECT_EQ(m->total_bytes, 13u);
  EXPECT_EQ(*m->digest(), *crypto::digest_bytes(crypto::HashAlg::kSha256, as_bytes(want)));
}

// A symlink to a directory outside the tree is recorded as a link; nothing behind it is
// read, and a manifest of the tree does not change when the outside does.
TEST_F(ManifestTest, SymlinkedDirectoriesAreNeverEntered) {
  ASSERT_EQ(::mkdir(root_.c_str(), 0755), 0);
  std::string outside = tmp_.file("outside");
  ASSERT_EQ(::mkdir(outside.c_str(), 0755), 0);
  ASSERT_EQ(::symlink(outside.c_str(), (root_ + "/lib").c_str()), 0);
  auto before = manifest_from_directory(root_, {});
  ASSERT_TRUE(before.ok());
  ASSERT_TRUE(write_file_atomic(outside + "/secret", as_bytes("x"), 0600).ok());
  auto after = manifest_from_directory(root_, {});
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(before->text(), after->text());
  EXPECT_EQ(after->entries.size(), 2u);
}

TEST_F(ManifestTest, MissingRootIsAnError) {
  auto m = manifest_from_directory(root_ + "/nope", {});
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.error().message().find("cannot open image root"), std::string::npos);
}

}  // namespace
}  // namespace ctrust::image
