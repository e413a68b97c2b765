#include <fcntl.h>
#include <gtest/gtest.h>

#include <unistd.h>
#include "support/temp_dir.h"

#include <filesystem>

#include "util/file.h"

namespace ctrust {
namespace {

class ChunksTest : public ::testing::Test {
 protected:
  std::string make_file(std::size_t size) {
    Bytes data(size);
    for (std::size_t i = 0; i < size; ++i) data[i] = static_cast<std::uint8_t>((i * 131) >> 7);
    std::string path = dir_ + "/f" + std::to_string(size);
    EXPECT_TRUE(write_file_atomic(path, data, 0600).ok());
    data_ = std::move(data);
    return path;
  }

  testing::TempDir tmp_;
  std::string dir_ = tmp_.path();
  Bytes data_;
};

// Sizes on both sides of the read-ahead threshold and of its buffer boundaries.
TEST_F(ChunksTest, DeliversTheWholeFileInOrder) {
  for (std::size_t size :
       {std::size_t{0}, std::size_t{1}, std::size_t{262144}, std::size_t{kPipelineThreshold - 1},
        std::size_t{kPipelineThreshold}, std::size_t{kPipelineThreshold + (1 << 20) * 3 + 17}}) {
    std::string path = make_file(size);
    auto fd = open_read(path);
    ASSERT_TRUE(fd.ok());
    Bytes got;
    std::uint64_t progressed = 0;
    auto n = for_each_chunk(
        fd->get(),
        [&](ByteView chunk) -> Result<void> {
          got.insert(got.end(), chunk.begin(), chunk.end());
          return ok_result();
        },
        [&](std::uint64_t k) { progressed += k; });
    ASSERT_TRUE(n.ok()) << n.error().message();
    EXPECT_EQ(*n, size);
    EXPECT_EQ(progressed, size);
    EXPECT_TRUE(got == data_) << "size " << size;
    EXPECT_EQ(::lseek(fd->get(), 0, SEEK_CUR), 0);  // pread only
  }
}

TEST_F(ChunksTest, SinkErrorStopsEarlyWithoutHanging) {
  std::string path = make_file(kPipelineThreshold * 3);
  auto fd = open_read(path);
  ASSERT_TRUE(fd.ok());
  for (int round = 0; round < 20; ++round) {
    int calls = 0;
    auto n = for_each_chunk(fd->get(), [&](ByteView) -> Result<void> {
      if (++calls == 2) return Error(Errc::kInternal, "stop here");
      return ok_result();
    });
    ASSERT_FALSE(n.ok());
    EXPECT_EQ(n.error().message(), "stop here");
    EXPECT_EQ(calls, 2);
  }
}

TEST_F(ChunksTest, ReadErrorsAreReported) {
  // A directory opened for reading: read() fails with EISDIR.
  UniqueFd dir(::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(dir.valid());
  auto n = for_each_chunk(dir.get(), [](ByteView) -> Result<void> { return ok_result(); });
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.error().native(), EISDIR);
}

}  // namespace
}  // namespace ctrust
