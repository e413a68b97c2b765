#include "util/file.h"

#include <gtest/gtest.h>

#include <sys/stat.h>
#include "support/temp_dir.h"

#include <cstdlib>
#include <filesystem>

namespace ctrust {
namespace {

class FileTest : public ::testing::Test {
 protected:
  testing::TempDir tmp_;
  std::string dir_ = tmp_.path();
};

TEST_F(FileTest, AtomicWriteThenRead) {
  std::string path = dir_ + "/f";
  Bytes data = {1, 2, 3, 4};
  ASSERT_TRUE(write_file_atomic(path, data, 0600).ok());
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto back = read_file(path, 100);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, data);
  // Overwrite leaves no temporary file behind.
  ASSERT_TRUE(write_file_atomic(path, Bytes{9}, 0644).ok());
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir_), {}), 1);
  EXPECT_EQ(*read_file(path, 100), Bytes{9});
}

TEST_F(FileTest, AtomicFileAppearsOnlyOnCommit) {
  std::string path = dir_ + "/streamed";
  {
    auto f = AtomicFile::create(path, 0644);
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE(f->write(as_bytes("part")).ok());
    // Dropped without commit: neither the target nor the temporary file remains.
  }
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir_), {}), 0);
  auto f = AtomicFile::create(path, 0644);
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE(f->write(as_bytes("one ")).ok());
  ASSERT_TRUE(f->write(as_bytes("two")).ok());
  EXPECT_FALSE(std::filesystem::exists(path));
  ASSERT_TRUE(f->commit().ok());
  EXPECT_EQ(*read_file(path, 100), Bytes(as_bytes("one two").begin(), as_bytes("one two").end()));
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir_), {}), 1);
}

TEST_F(FileTest, ReadRespectsLimitAndReportsMissingFiles) {
  std::string path = dir_ + "/big";
  ASSERT_TRUE(write_file_atomic(path, Bytes(1000, 7), 0600).ok());
  auto r = read_file(path, 999);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Errc::kLimit);
  auto missing = read_file(dir_ + "/nope", 10);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().native(), ENOENT);
  EXPECT_NE(missing.error().message().find(dir_ + "/nope"), std::string::npos);
}

TEST_F(FileTest, PreadFullDoesNotMoveTheOffset) {
  std::string path = dir_ + "/p";
  ASSERT_TRUE(write_file_atomic(path, as_bytes("abcdef"), 0600).ok());
  auto fd = open_read(path);
  ASSERT_TRUE(fd.ok());
  std::uint8_t buf[4];
  auto n = pread_full(fd->get(), buf, 3);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 3u);  // short only at end of file
  EXPECT_EQ(std::string(reinterpret_cast<char*>(buf), 3), "def");
  EXPECT_EQ(::lseek(fd->get(), 0, SEEK_CUR), 0);
}

TEST_F(FileTest, AtomicWriteFailsCleanlyInMissingDirectory) {
  auto r = write_file_atomic(dir_ + "/no/such/dir/f", Bytes{1}, 0600);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Errc::kIo);
}

}  // namespace
}  // namespace ctrust
