#include "imalog/log_writer.h"

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "support/temp_dir.h"

#include <filesystem>
#include <thread>

#include "imalog/binary.h"
#include "test_util.h"
#include "util/file.h"

namespace ctrust::imalog {
namespace {

using testing::ng_entry;

class LogWriterTest : public ::testing::Test {
 protected:
  std::uint64_t count_entries() {
    auto r = BinaryReader::open(path_, BinaryFormat{HashAlg::kSha1, ByteOrder::kLittle});
    EXPECT_TRUE(r.ok());
    Entry e;
    while (*r->next(e)) {
    }
    return r->count();
  }
  std::uint64_t file_size() { return std::filesystem::file_size(path_); }

  ctrust::testing::TempDir tmp_;
  std::string dir_ = tmp_.path();
  std::string path_ = tmp_.file("log");
};

TEST_F(LogWriterTest, AppendsAndReopens) {
  {
    auto w = LogWriter::open(path_);
    ASSERT_TRUE(w.ok()) << w.error().message();
    ASSERT_TRUE(w->append(ng_entry("/a", "a")).ok());
    std::vector<Entry> batch = {ng_entry("/b", "b"), ng_entry("/c", "c")};
    ASSERT_TRUE(w->append(batch).ok());
    EXPECT_EQ(w->entries(), 3u);
    EXPECT_FALSE(w->recovery().has_value());
  }
  struct stat st {};
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto w = LogWriter::open(path_);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->entries(), 3u);
  EXPECT_EQ(w->size(), file_size());
  ASSERT_TRUE(w->append(ng_entry("/d", "d")).ok());
  EXPECT_EQ(count_entries(), 4u);
}

TEST_F(LogWriterTest, TornTailIsReportedNeverSilentlyDropped) {
  {
    auto w = LogWriter::open(path_);
    std::vector<Entry> batch = {ng_entry("/a", "a"), ng_entry("/b", "b"), ng_entry("/c", "c")};
    ASSERT_TRUE(w->append(batch).ok());
  }
  std::uint64_t full = file_size();
  std::filesystem::resize_file(path_, full - 5);  // a crash in the middle of the last write

  auto failed = LogWriter::open(path_);
  ASSERT_FALSE(failed.ok());
  EXPECT_NE(failed.error().message().find("torn or corrupt record after entry 2"),
            std::string::npos)
      << failed.error().message();
  EXPECT_EQ(file_size(), full - 5);  // kFail leaves the file alone

  LogWriterOptions repair;
  repair.tail_policy = TailPolicy::kTruncate;
  auto w = LogWriter::open(path_, repair);
  ASSERT_TRUE(w.ok()) << w.error().message();
  ASSERT_TRUE(w->recovery().has_value());
  EXPECT_EQ(w->recovery()->entries_kept, 2u);
  EXPECT_GT(w->recovery()->bytes_removed, 0u);
  EXPECT_EQ(w->recovery()->bytes_kept + w->recovery()->bytes_removed, full - 5);
  ASSERT_TRUE(w->append(ng_entry("/d", "d")).ok());
  EXPECT_EQ(count_entries(), 3u);
}

TEST_F(LogWriterTest, ZeroFilledTailIsDetected) {
  {
    auto w = LogWriter::open(path_);
    ASSERT_TRUE(w->append(ng_entry("/a", "a")).ok());
  }
  std::filesystem::resize_file(path_, file_size() + 4096);  // what a crash can leave on ext4
  auto w = LogWriter::open(path_);
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.error().message().find("4096 bytes would be removed"), std::string::npos)
      << w.error().message();
}

// A log in another header format, or no binary log at all, is refused before any scan: a
// repair would otherwise see every record as corrupt and erase the whole file.
TEST_F(LogWriterTest, RepairNeverErasesALogOfAnotherFormat) {
  LogWriterOptions sha256;
  sha256.header_alg = HashAlg::kSha256;
  {
    auto w = LogWriter::open(path_, sha256);
    ASSERT_TRUE(w->append(ng_entry("/a", "a", HashAlg::kSha256)).ok());
  }
  std::uint64_t size = file_size();
  LogWriterOptions repair;
  repair.tail_policy = TailPolicy::kTruncate;  // header_alg sha1: the wrong one
  auto w = LogWriter::open(path_, repair);
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.error().message().find("has sha256 header digests"), std::string::npos)
      << w.error().message();
  EXPECT_EQ(file_size(), size);

  std::string text = dir_ + "/ascii";
  ASSERT_TRUE(write_file_atomic(text, as_bytes("10 abc ima-ng sha256:00 /x\n"), 0600).ok());
  auto a = LogWriter::open(text, repair);
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.error().message().find("refusing"), std::string::npos);
  EXPECT_EQ(std::filesystem::file_size(text), 27u);
}

TEST_F(LogWriterTest, OneWriterAtATime) {
  auto first = LogWriter::open(path_);
  ASSERT_TRUE(first.ok());
  auto second = LogWriter::open(path_);
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.error().message().find("held by another writer"), std::string::npos);
}

TEST_F(LogWriterTest, WrongHeaderAlgorithmIsRefusedAndNothingIsWritten) {
  auto w = LogWriter::open(path_);
  ASSERT_TRUE(w.ok());
  std::vector<Entry> batch = {ng_entry("/a", "a"), ng_entry("/b", "b", HashAlg::kSha256)};
  EXPECT_FALSE(w->append(batch).ok());
  EXPECT_EQ(file_size(), 0u);
  EXPECT_EQ(w->entries(), 0u);
}

// A write that fails half-way (here: the file size limit) is rolled back, so the file still
// ends on a whole record and the next open needs no repair.
TEST_F(LogWriterTest, FailedWriteIsRolledBack) {
  {
    auto w = LogWriter::open(path_);
    ASSERT_TRUE(w->append(ng_entry("/a", "a")).ok());
  }
  std::uint64_t before = file_size();
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim {
      before + 40, before + 40
    };
    ::setrlimit(RLIMIT_FSIZE, &lim);
    auto w = LogWriter::open(path_);
    if (!w) ::_exit(2);
    auto r = w->append(ng_entry("/big", std::string(1000, 'x'), HashAlg::kSha1, "ima-buf"));
    ::_exit(r.ok() ? 3 : 0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(file_size(), before);
  auto w = LogWriter::open(path_);
  ASSERT_TRUE(w.ok()) << w.error().message();
  EXPECT_EQ(w->entries(), 1u);
}

// A writer killed at a random moment never loses an entry it acknowledged.
TEST_F(LogWriterTest, AcknowledgedEntriesSurviveSigkill) {
  for (int round = 0; round < 10; ++round) {
    std::filesystem::remove(path_);
    int p[2];
    ASSERT_EQ(::pipe(p), 0);
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(p[0]);
      auto w = LogWriter::open(path_);
      if (!w) ::_exit(2);
      for (std::uint32_t i = 1;; ++i) {
        if (!w->append(ng_entry("/bin/x" + std::to_string(i), std::to_string(i))).ok()) ::_exit(3);
        if (::write(p[1], &i, sizeof(i)) != sizeof(i)) ::_exit(4);  // acknowledged
      }
    }
    ::close(p[1]);
    std::uint32_t acked = 0;
    std::uint32_t v = 0;
    // Let the writer get going, then kill it somewhere in the middle of its work.
    ASSERT_EQ(::read(p[0], &v, sizeof(v)), static_cast<ssize_t>(sizeof(v)));
    std::this_thread::sleep_for(std::chrono::milliseconds(1 + round * 3));
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "the writer stopped by itself: " << status;
    acked = v;
    while (::read(p[0], &v, sizeof(v)) == sizeof(v)) acked = v;
    ::close(p[0]);
    ASSERT_GT(acked, 0u) << "round " << round;

    LogWriterOptions repair;
    repair.tail_policy = TailPolicy::kTruncate;
    auto w = LogWriter::open(path_, repair);
    ASSERT_TRUE(w.ok()) << w.error().message();
    EXPECT_GE(w->entries(), acked) << "round " << round;
    EXPECT_LE(w->entries(), acked + 1u);  // at most the one in flight
  }
}

}  // namespace
}  // namespace ctrust::imalog
