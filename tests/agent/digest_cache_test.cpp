// DigestCache against real read leases: files in a temp directory, writers in forked child
// processes (and one in a thread), the lease-break signal read from the cache's signalfd.
// Leases on files the caller owns need no capability, so this runs unprivileged.
//
// Its main() is tests/support/lease_signal_main.cpp: the lease signal must be blocked
// before any thread starts.
#include "agent/digest_cache.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "support/temp_dir.h"

namespace ctrust::agent {
namespace {

using Clock = std::chrono::steady_clock;

// Far below the kernel's lease-break-time (45 s by default): a writer held back by a lease
// must go on as soon as the entry is dropped.
constexpr int kWriterGoesOnMs = 2000;
constexpr int kSignalMs = 2000;
// How long a blocked writer is watched to see that it really is blocked.
constexpr int kStillBlockedMs = 200;

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  ASSERT_TRUE(out.good()) << path;
}

UniqueFd open_read(const std::string& path) {
  return UniqueFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
}

crypto::Digest digest_of(std::uint8_t fill) {
  crypto::Digest d;
  d.bytes.fill(fill);
  return d;
}

// CLOCK_MONOTONIC is one clock for every process, so a child's time stamp can be compared
// with the parent's.
std::int64_t monotonic_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

bool readable(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, timeout_ms) == 1;
}

// True if nobody holds a lease on `path`: an O_NONBLOCK open for writing fails with
// EWOULDBLOCK while a lease is held (and starts breaking it, so only use this where no
// lease is expected).
bool no_lease(const std::string& path) {
  UniqueFd w(::open(path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));
  return w.valid();
}

// A forked child that keeps only two pipes: it reports one byte (0, or the errno of what
// it tried) and, if asked to hold, stays alive until the parent releases it. The child
// does only async-signal-safe calls. It closes every inherited descriptor first: a copy of
// a leased descriptor would keep the lease (it goes with the last reference to the open
// file), so the writer would wait on itself.
class Child {
 public:
  // kOpenWriteStamped is kOpenWrite that also reports when its open() returned (stamp()).
  enum class Action : std::uint8_t {
    kOpenWrite,
    kOpenWriteStamped,
    kTruncate,
    kHoldWriter,
    kHoldWritableMap
  };

  static Child spawn(Action action, const std::string& path) {
    int report[2];
    int hold[2];
    if (::pipe2(report, O_CLOEXEC) != 0 || ::pipe2(hold, O_CLOEXEC) != 0) std::abort();
    const char* file = path.c_str();
    pid_t pid = ::fork();
    if (pid < 0) std::abort();
    if (pid == 0) {
      int keep_lo = std::min(report[1], hold[0]);
      int keep_hi = std::max(report[1], hold[0]);
      ::close_range(3, keep_lo - 1, 0);
      if (keep_hi > keep_lo + 1) ::close_range(keep_lo + 1, keep_hi - 1, 0);
      ::close_range(keep_hi + 1, ~0U, 0);
      ::_exit(run(action, file, report[1], hold[0]));
    }
    ::close(report[1]);
    ::close(hold[0]);
    return Child(pid, UniqueFd(report[0]), UniqueFd(hold[1]));
  }

  Child(Child&& other) noexcept
      : pid_(std::exchange(other.pid_, -1)),
        report_(std::move(other.report_)),
        hold_(std::move(other.hold_)) {}
  Child& operator=(Child&&) = delete;
  ~Child() {
    hold_.reset();
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  // The child's report, if it came within `timeout_ms`.
  std::optional<int> report(int timeout_ms) {
    if (!readable(report_.get(), timeout_ms)) return std::nullopt;
    unsigned char byte = 0;
    if (::read(report_.get(), &byte, 1) != 1) return -1;
    return byte;
  }
  // After report(), for kOpenWriteStamped: monotonic_ns() when the child's open() returned.
  std::optional<std::int64_t> stamp(int timeout_ms) {
    if (!readable(report_.get(), timeout_ms)) return std::nullopt;
    std::int64_t ns = 0;
    if (::read(report_.get(), &ns, sizeof(ns)) != sizeof(ns)) return std::nullopt;
    return ns;
  }
  // Lets a holding child exit; returns its exit status.
  int release() {
    hold_.reset();
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }

 private:
  Child(pid_t pid, UniqueFd report, UniqueFd hold)
      : pid_(pid), report_(std::move(report)), hold_(std::move(hold)) {}

  static int run(Action action, const char* file, int report_fd, int hold_fd) {
    int err = 0;
    std::int64_t opened_ns = 0;
    switch (action) {
      case Action::kOpenWrite:
      case Action::kHoldWriter: {
        int w = ::open(file, O_WRONLY);
        if (w < 0) err = errno;
        if (action == Action::kOpenWrite && w >= 0) ::close(w);
        break;
      }
      case Action::kOpenWriteStamped: {
        int w = ::open(file, O_WRONLY);
        opened_ns = monotonic_ns();  // clock_gettime is async-signal-safe
        if (w < 0) err = errno;
        if (w >= 0) ::close(w);
        break;
      }
      case Action::kTruncate:
        if (::truncate(file, 0) != 0) err = errno;
        break;
      case Action::kHoldWritableMap: {
        int w = ::open(file, O_RDWR);
        if (w < 0) {
          err = errno;
          break;
        }
        void* map = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, w, 0);
        if (map == MAP_FAILED) err = errno;
        ::close(w);  // the mapping alone keeps the file open for writing
        break;
      }
    }
    auto byte = static_cast<unsigned char>(err > 255 ? 255 : err);
    if (::write(report_fd, &byte, 1) != 1) return 2;
    if (action == Action::kOpenWriteStamped &&
        ::write(report_fd, &opened_ns, sizeof(opened_ns)) != sizeof(opened_ns)) {
      return 2;
    }
    if (action == Action::kHoldWriter || action == Action::kHoldWritableMap) {
      char c;
      while (::read(hold_fd, &c, 1) > 0) {
      }
    }
    return err == 0 ? 0 : 1;
  }

  pid_t pid_;
  UniqueFd report_;
  UniqueFd hold_;
};

class DigestCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto cache = DigestCache::create(8);
    ASSERT_TRUE(cache) << cache.error().message();
    cache_.emplace(std::move(*cache));
    // Lease signals left over from an earlier test name descriptors this cache never had.
    cache_->drain();
    path_ = temp_.file("bin");
    write_text(path_, std::string(8192, 'x'));
  }

  // Leases and caches `path` for `owner`; returns its key.
  FileKey cache_file(const std::string& path, std::uint64_t owner, std::uint8_t fill,
                     DigestCache* cache = nullptr) {
    if (cache == nullptr) cache = &*cache_;
    UniqueFd fd = open_read(path);
    EXPECT_TRUE(fd.valid()) << path;
    auto key = DigestCache::key_of(fd.get(), owner);
    EXPECT_TRUE(key) << key.error().message();
    if (!key) return {};
    auto lease = cache->begin(fd.get());
    if (!lease) {
      ADD_FAILURE() << lease.error().message();
      return *key;
    }
    EXPECT_EQ(*lease, DigestCache::Lease::kHeld) << path;
    EXPECT_TRUE(cache->finish(*key, std::move(fd), digest_of(fill))) << path;
    return *key;
  }

  // One entry held through a descriptor of each of `paths` (as the agent holds an overlay
  // file and its upper file), keyed by the first; `fds` are the descriptor numbers, in the
  // order finish() was given them.
  struct Held {
    FileKey key;
    std::vector<int> fds;
  };
  Held cache_files(const std::vector<std::string>& paths, std::uint64_t owner, std::uint8_t fill,
                   bool kernel, DigestCache* cache = nullptr) {
    if (cache == nullptr) cache = &*cache_;
    Held held;
    std::vector<UniqueFd> fds;
    for (const auto& path : paths) {
      UniqueFd fd = open_read(path);
      EXPECT_TRUE(fd.valid()) << path;
      auto lease = cache->begin(fd.get());
      EXPECT_TRUE(lease && *lease == DigestCache::Lease::kHeld) << path;
      held.fds.push_back(fd.get());
      fds.push_back(std::move(fd));
    }
    auto key = DigestCache::key_of(held.fds.at(0), owner);
    EXPECT_TRUE(key) << key.error().message();
    if (!key) return held;
    held.key = *key;
    EXPECT_TRUE(cache->finish(*key, std::move(fds), digest_of(fill), kernel));
    return held;
  }

  testing::TempDir temp_;
  std::optional<DigestCache> cache_;
  std::string path_;
};

TEST_F(DigestCacheTest, CachesAFileNobodyWrites) {
  UniqueFd fd = open_read(path_);
  ASSERT_TRUE(fd.valid());
  auto key = DigestCache::key_of(fd.get(), 7);
  ASSERT_TRUE(key) << key.error().message();
  EXPECT_EQ(key->owner, 7U);
  EXPECT_FALSE(cache_->find(*key));

  auto lease = cache_->begin(fd.get());
  ASSERT_TRUE(lease) << lease.error().message();
  EXPECT_EQ(*lease, DigestCache::Lease::kHeld);
  EXPECT_TRUE(cache_->finish(*key, std::move(fd), digest_of(0xab)));

  auto found = cache_->find(*key);
  ASSERT_TRUE(found);
  EXPECT_EQ(*found, digest_of(0xab));
  DigestCacheStats s = cache_->stats();
  EXPECT_EQ(s.hits, 1U);
  EXPECT_EQ(s.misses, 1U);
  EXPECT_EQ(s.entries, 1U);
  EXPECT_EQ(s.broken, 0U);
  EXPECT_EQ(s.writers, 0U);
  // Nothing was signalled: nobody wrote.
  EXPECT_FALSE(readable(cache_->signal_fd(), 0));
}

TEST_F(DigestCacheTest, KeysAreTheInodeAndTheOwner) {
  UniqueFd a = open_read(path_);
  UniqueFd b = open_read(path_);
  auto ka = DigestCache::key_of(a.get(), 1);
  auto kb = DigestCache::key_of(b.get(), 1);
  auto other_owner = DigestCache::key_of(b.get(), 2);
  ASSERT_TRUE(ka && kb && other_owner);
  EXPECT_EQ(*ka, *kb);
  EXPECT_FALSE(*ka == *other_owner);
  // The digest is for its owner only.
  cache_file(path_, 1, 0x11);
  EXPECT_TRUE(cache_->find(*ka));
  EXPECT_FALSE(cache_->find(*other_owner));

  auto bad = DigestCache::key_of(-1, 1);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), Errc::kIo);
}

TEST(DigestCacheCreate, RefusesNoRoomAndAnUnblockedSignal) {
  auto none = DigestCache::create(0);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code(), Errc::kInvalidArgument);

  // A thread that unblocked the signal (no lease is held here, so none can arrive).
  std::optional<Result<DigestCache>> result;
  std::thread([&] {
    sigset_t set;
    ::sigemptyset(&set);
    ::sigaddset(&set, lease_signal());
    ::pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
    result.emplace(DigestCache::create(4));
  }).join();
  ASSERT_FALSE(*result);
  EXPECT_NE(result->error().message().find("block_lease_signal"), std::string::npos)
      << result->error().message();
}

TEST_F(DigestCacheTest, AWriterInAnotherProcessDropsTheEntryAndGoesOn) {
  FileKey key = cache_file(path_, 1, 0x22);
  Child writer = Child::spawn(Child::Action::kOpenWrite, path_);

  ASSERT_TRUE(readable(cache_->signal_fd(), kSignalMs)) << "no lease-break signal";
  // The writer waits for the lease while the entry is there.
  EXPECT_FALSE(writer.report(kStillBlockedMs)) << "the writer was not held back";
  EXPECT_TRUE(cache_->find(key));

  cache_->drain();
  auto dropped = Clock::now();
  auto report = writer.report(kWriterGoesOnMs);
  ASSERT_TRUE(report) << "the writer still waits after drain()";
  EXPECT_EQ(*report, 0) << std::strerror(*report);
  EXPECT_LT(Clock::now() - dropped, std::chrono::milliseconds(kWriterGoesOnMs));
  EXPECT_EQ(writer.release(), 0);

  EXPECT_FALSE(cache_->find(key));
  DigestCacheStats s = cache_->stats();
  EXPECT_EQ(s.broken, 1U);
  EXPECT_EQ(s.entries, 0U);
  EXPECT_FALSE(readable(cache_->signal_fd(), 0));
}

TEST_F(DigestCacheTest, TruncateInAnotherProcessDropsTheEntry) {
  FileKey key = cache_file(path_, 1, 0x33);
  Child truncater = Child::spawn(Child::Action::kTruncate, path_);

  ASSERT_TRUE(readable(cache_->signal_fd(), kSignalMs)) << "no lease-break signal";
  EXPECT_FALSE(truncater.report(kStillBlockedMs)) << "truncate was not held back";
  cache_->drain();
  auto report = truncater.report(kWriterGoesOnMs);
  ASSERT_TRUE(report) << "truncate still waits after drain()";
  EXPECT_EQ(*report, 0) << std::strerror(*report);
  EXPECT_EQ(truncater.release(), 0);

  EXPECT_FALSE(cache_->find(key));
  EXPECT_EQ(cache_->stats().broken, 1U);
  struct stat st {};
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 0);
}

// The kernel does not spare the lease holder's own process: an open for writing from
// another thread breaks the lease too (so the agent's own writes would never be missed).
TEST_F(DigestCacheTest, AWriterThreadInThisProcessBreaksTheLeaseToo) {
  FileKey key = cache_file(path_, 1, 0x44);
  std::atomic<bool> opened{false};
  std::thread writer([&] {
    UniqueFd w(::open(path_.c_str(), O_WRONLY | O_CLOEXEC));
    opened = w.valid();
  });
  bool signalled = readable(cache_->signal_fd(), kSignalMs);
  EXPECT_TRUE(signalled);
  cache_->drain();
  writer.join();  // with no signal the kernel lets it go after lease-break-time
  EXPECT_TRUE(opened);
  EXPECT_FALSE(cache_->find(key));
}

// The kernel queues a lease break for the process (lease_setup() makes the owner the thread
// group, whatever F_SETOWN said): a lease taken on a thread that has since exited is still
// seen by a drain() on another thread.
TEST_F(DigestCacheTest, ALeaseTakenOnAnotherThreadIsDrainedHere) {
  std::optional<FileKey> key;
  std::thread([&] { key = cache_file(path_, 1, 0x45); }).join();
  ASSERT_TRUE(key);
  Child writer = Child::spawn(Child::Action::kOpenWrite, path_);
  ASSERT_TRUE(readable(cache_->signal_fd(), kSignalMs)) << "the break went to the thread";
  cache_->drain();
  auto report = writer.report(kWriterGoesOnMs);
  ASSERT_TRUE(report) << "the writer still waits after drain()";
  EXPECT_EQ(writer.release(), 0);
  EXPECT_FALSE(cache_->find(*key));
}

TEST_F(DigestCacheTest, AFileOpenForWritingGetsNoLease) {
  Child holder = Child::spawn(Child::Action::kHoldWriter, path_);
  auto report = holder.report(kSignalMs);
  ASSERT_TRUE(report);
  ASSERT_EQ(*report, 0) << std::strerror(*report);

  UniqueFd fd = open_read(path_);
  auto lease = cache_->begin(fd.get());
  ASSERT_TRUE(lease) << lease.error().message();
  EXPECT_EQ(*lease, DigestCache::Lease::kWriters);
  EXPECT_EQ(cache_->stats().writers, 1U);
  // kWriters leaves nothing pending: a finish() now must not cache.
  auto key = DigestCache::key_of(fd.get(), 1);
  ASSERT_TRUE(key);
  EXPECT_FALSE(cache_->finish(*key, std::move(fd), digest_of(1)));
  EXPECT_FALSE(cache_->find(*key));

  EXPECT_EQ(holder.release(), 0);
  // With the writer gone the file can be leased.
  cache_file(path_, 1, 0x55);
}

TEST_F(DigestCacheTest, AFileMappedWritableGetsNoLeaseAfterItsDescriptorCloses) {
  Child mapper = Child::spawn(Child::Action::kHoldWritableMap, path_);
  auto report = mapper.report(kSignalMs);
  ASSERT_TRUE(report);
  ASSERT_EQ(*report, 0) << std::strerror(*report);

  UniqueFd fd = open_read(path_);
  auto lease = cache_->begin(fd.get());
  ASSERT_TRUE(lease) << lease.error().message();
  EXPECT_EQ(*lease, DigestCache::Lease::kWriters);
  cache_->abandon(fd.get());
  fd.reset();

  EXPECT_EQ(mapper.release(), 0);
  cache_file(path_, 1, 0x66);
}

TEST_F(DigestCacheTest, ALeaseBrokenBeforeFinishIsNotCached) {
  UniqueFd fd = open_read(path_);
  auto key = DigestCache::key_of(fd.get(), 1);
  ASSERT_TRUE(key);
  auto lease = cache_->begin(fd.get());
  ASSERT_TRUE(lease) << lease.error().message();
  ASSERT_EQ(*lease, DigestCache::Lease::kHeld);

  // A writer comes while the file is being hashed.
  Child writer = Child::spawn(Child::Action::kOpenWrite, path_);
  ASSERT_TRUE(readable(cache_->signal_fd(), kSignalMs)) << "no lease-break signal";
  cache_->drain();
  // The hashing thread still holds the descriptor, so the writer still waits...
  EXPECT_FALSE(writer.report(kStillBlockedMs));
  // ...until finish() refuses the digest and closes it.
  EXPECT_FALSE(cache_->finish(*key, std::move(fd), digest_of(0x77)));
  auto report = writer.report(kWriterGoesOnMs);
  ASSERT_TRUE(report) << "the writer still waits after finish()";
  EXPECT_EQ(*report, 0);
  EXPECT_EQ(writer.release(), 0);

  EXPECT_FALSE(cache_->find(*key));
  DigestCacheStats s = cache_->stats();
  EXPECT_EQ(s.broken, 1U);
  EXPECT_EQ(s.entries, 0U);
}

TEST_F(DigestCacheTest, ABreakDrainedOnlyAfterFinishStillDropsTheEntry) {
  UniqueFd fd = open_read(path_);
  auto key = DigestCache::key_of(fd.get(), 1);
  ASSERT_TRUE(key);
  ASSERT_EQ(*cache_->begin(fd.get()), DigestCache::Lease::kHeld);
  Child writer = Child::spawn(Child::Action::kOpenWrite, path_);
  ASSERT_TRUE(readable(cache_->signal_fd(), kSignalMs));
  // Not drained yet: finish() caches, and the digest is still right (the writer waits).
  EXPECT_TRUE(cache_->finish(*key, std::move(fd), digest_of(0x88)));
  EXPECT_FALSE(writer.report(kStillBlockedMs));
  cache_->drain();
  ASSERT_TRUE(writer.report(kWriterGoesOnMs));
  EXPECT_EQ(writer.release(), 0);
  EXPECT_FALSE(cache_->find(*key));
}

TEST_F(DigestCacheTest, AbandonReleasesTheLease) {
  UniqueFd fd = open_read(path_);
  ASSERT_EQ(*cache_->begin(fd.get()), DigestCache::Lease::kHeld);
  cache_->abandon(fd.get());
  fd.reset();
  EXPECT_TRUE(no_lease(path_));
  EXPECT_EQ(cache_->stats().entries, 0U);
}

TEST_F(DigestCacheTest, EvictsTheLeastRecentlyUsedAndReleasesItsLease) {
  auto small = DigestCache::create(2);
  ASSERT_TRUE(small);
  std::string a = temp_.file("a"), b = temp_.file("b"), c = temp_.file("c");
  for (const auto& p : {a, b, c}) write_text(p, p);
  FileKey ka = cache_file(a, 1, 0xa, &*small);
  FileKey kb = cache_file(b, 1, 0xb, &*small);
  EXPECT_TRUE(small->find(ka));  // a is now the most recent: b goes first
  FileKey kc = cache_file(c, 1, 0xc, &*small);

  EXPECT_FALSE(small->find(kb));
  EXPECT_TRUE(small->find(ka));
  EXPECT_TRUE(small->find(kc));
  DigestCacheStats s = small->stats();
  EXPECT_EQ(s.evicted, 1U);
  EXPECT_EQ(s.entries, 2U);
  // The evicted entry's descriptor is closed, so its lease is gone.
  EXPECT_TRUE(no_lease(b));
  EXPECT_FALSE(readable(small->signal_fd(), 0));
}

TEST_F(DigestCacheTest, ImageFilesHaveARoomOfTheirOwn) {
  auto cache = DigestCache::create(2, 1);
  ASSERT_TRUE(cache);
  std::string a = temp_.file("a"), b = temp_.file("b"), i1 = temp_.file("i1"),
              i2 = temp_.file("i2");
  for (const auto& p : {a, b, i1, i2}) write_text(p, p);
  FileKey ka = cache_file(a, 1, 0xa, &*cache);
  FileKey kb = cache_file(b, 2, 0xb, &*cache);
  FileKey k1 = cache_file(i1, DigestCache::kImageOwner, 0x1, &*cache);
  // An image's file evicts only the older image file, never a container's entry.
  FileKey k2 = cache_file(i2, DigestCache::kImageOwner, 0x2, &*cache);
  EXPECT_TRUE(cache->find(ka));
  EXPECT_TRUE(cache->find(kb));
  EXPECT_FALSE(cache->find(k1));
  EXPECT_TRUE(no_lease(i1));
  EXPECT_EQ(*cache->find(k2), digest_of(0x2));
  DigestCacheStats s = cache->stats();
  EXPECT_EQ(s.entries, 2U);
  EXPECT_EQ(s.image_entries, 1U);
  EXPECT_EQ(s.evicted, 1U);
  // A writer drops an image entry as any other.
  Child writer = Child::spawn(Child::Action::kOpenWrite, i2);
  ASSERT_TRUE(readable(cache->signal_fd(), kSignalMs)) << "no lease-break signal";
  cache->drain();
  ASSERT_TRUE(writer.report(kWriterGoesOnMs));
  EXPECT_EQ(writer.release(), 0);
  EXPECT_FALSE(cache->find(k2));
  EXPECT_EQ(cache->stats().image_entries, 0U);
  // drop_owner of a container leaves images alone, and the reverse.
  cache_file(i1, DigestCache::kImageOwner, 0x1, &*cache);
  cache->drop_owner(1);
  EXPECT_EQ(cache->stats().image_entries, 1U);
  cache->drop_owner(DigestCache::kImageOwner);
  EXPECT_EQ(cache->stats().image_entries, 0U);
  EXPECT_TRUE(cache->find(kb));
}

TEST_F(DigestCacheTest, NoRoomForImagesCachesNoImageFile) {
  FileKey key = DigestCache::key_of(open_read(path_).get(), DigestCache::kImageOwner).value();
  UniqueFd fd = open_read(path_);
  ASSERT_EQ(*cache_->begin(fd.get()), DigestCache::Lease::kHeld);
  EXPECT_FALSE(cache_->finish(key, std::move(fd), digest_of(0x5)));
  EXPECT_FALSE(cache_->find(key));
  EXPECT_TRUE(no_lease(path_));
}

TEST_F(DigestCacheTest, CachingAKeyAgainReplacesItsEntry) {
  FileKey key = cache_file(path_, 1, 0x01);
  FileKey again = cache_file(path_, 1, 0x02);
  EXPECT_EQ(key, again);
  EXPECT_EQ(*cache_->find(key), digest_of(0x02));
  EXPECT_EQ(cache_->stats().entries, 1U);
}

TEST_F(DigestCacheTest, DropOwnerDropsOnlyThatOwner) {
  std::string other = temp_.file("other");
  write_text(other, "other");
  FileKey mine = cache_file(path_, 1, 0x10);
  FileKey theirs = cache_file(other, 2, 0x20);
  FileKey theirs_too = cache_file(path_, 2, 0x21);  // the same file, for another container

  cache_->drop_owner(1);
  EXPECT_FALSE(cache_->find(mine));
  EXPECT_TRUE(cache_->find(theirs));
  EXPECT_TRUE(cache_->find(theirs_too));
  EXPECT_EQ(cache_->stats().entries, 2U);

  cache_->drop_owner(2);
  EXPECT_EQ(cache_->stats().entries, 0U);
  EXPECT_TRUE(no_lease(path_));
  EXPECT_TRUE(no_lease(other));
}

TEST_F(DigestCacheTest, ClearReleasesEveryLease) {
  cache_file(path_, 1, 0x10);
  cache_file(path_, 2, 0x11);
  cache_->clear();
  EXPECT_EQ(cache_->stats().entries, 0U);
  EXPECT_TRUE(no_lease(path_));
}

TEST_F(DigestCacheTest, RenameOverIsANewKey) {
  FileKey old_key = cache_file(path_, 1, 0x99);
  std::string replacement = temp_.file("bin.new");
  write_text(replacement, "new content");
  ASSERT_EQ(::rename(replacement.c_str(), path_.c_str()), 0);

  UniqueFd fd = open_read(path_);
  auto key = DigestCache::key_of(fd.get(), 1);
  ASSERT_TRUE(key);
  EXPECT_FALSE(*key == old_key);
  EXPECT_FALSE(cache_->find(*key));
}

// When the real-time signal queue is full the kernel sends SIGIO, which does not say
// which lease broke: the whole cache goes, entries no writer touched included.
TEST_F(DigestCacheTest, ALostSignalDropsEverything) {
  std::string a = temp_.file("a"), b = temp_.file("b"), c = temp_.file("c");
  for (const auto& p : {a, b, c}) write_text(p, p);
  FileKey ka = cache_file(a, 1, 0xa);
  FileKey kb = cache_file(b, 1, 0xb);
  FileKey kc = cache_file(c, 1, 0xc);

  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_SIGPENDING, &old), 0);
  rlimit one = old;
  one.rlim_cur = 1;
  ASSERT_EQ(::setrlimit(RLIMIT_SIGPENDING, &one), 0);
  // Non-blocking opens start the breaks and return at once (EWOULDBLOCK); the second
  // signal does not fit in the queue.
  for (const auto& p : {a, b}) {
    UniqueFd w(::open(p.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));
    EXPECT_FALSE(w.valid());
    EXPECT_EQ(errno, EWOULDBLOCK);
  }
  ASSERT_EQ(::setrlimit(RLIMIT_SIGPENDING, &old), 0);

  ASSERT_TRUE(readable(cache_->signal_fd(), kSignalMs));
  cache_->drain();
  EXPECT_FALSE(cache_->find(ka));
  EXPECT_FALSE(cache_->find(kb));
  EXPECT_FALSE(cache_->find(kc));
  EXPECT_EQ(cache_->stats().entries, 0U);
  EXPECT_TRUE(no_lease(a));
  EXPECT_TRUE(no_lease(c));
}

// Many writers at once, from many processes: every one goes on, every entry goes.
TEST_F(DigestCacheTest, ManyWritersAllGoOn) {
  constexpr int kFiles = 6;
  std::vector<std::string> paths;
  std::vector<FileKey> keys;
  for (int i = 0; i < kFiles; ++i) {
    paths.push_back(temp_.file("f" + std::to_string(i)));
    write_text(paths.back(), std::to_string(i));
    keys.push_back(cache_file(paths.back(), 1, static_cast<std::uint8_t>(i)));
  }
  std::vector<Child> writers;
  for (const auto& p : paths) writers.push_back(Child::spawn(Child::Action::kOpenWrite, p));
  std::vector<bool> reported(kFiles, false);
  int done = 0;
  auto deadline = Clock::now() + std::chrono::milliseconds(kSignalMs + kWriterGoesOnMs);
  while (done < kFiles && Clock::now() < deadline) {
    if (readable(cache_->signal_fd(), 100)) cache_->drain();
    for (int i = 0; i < kFiles; ++i) {
      if (reported[i]) continue;
      if (auto r = writers[i].report(0)) {
        EXPECT_EQ(*r, 0);
        reported[i] = true;
        ++done;
      }
    }
  }
  EXPECT_EQ(done, kFiles);
  for (const auto& k : keys) EXPECT_FALSE(cache_->find(k));
  EXPECT_EQ(cache_->stats().broken, static_cast<std::uint64_t>(kFiles));
}

// --- One entry, several leased descriptors ---------------------------------------------

TEST_F(DigestCacheTest, AWriterOfEitherFileOfATwoDescriptorEntryDropsIt) {
  for (std::size_t which : {0U, 1U}) {
    SCOPED_TRACE("the writer opens file " + std::to_string(which));
    std::vector<std::string> paths = {temp_.file("lower" + std::to_string(which)),
                                      temp_.file("upper" + std::to_string(which))};
    for (const auto& p : paths) write_text(p, p);
    std::uint64_t broken_before = cache_->stats().broken;
    Held held = cache_files(paths, 1, 0x12, false);
    EXPECT_TRUE(cache_->find(held.key));

    Child writer = Child::spawn(Child::Action::kOpenWrite, paths[which]);
    ASSERT_TRUE(readable(cache_->signal_fd(), kSignalMs)) << "no lease-break signal";
    EXPECT_FALSE(writer.report(kStillBlockedMs)) << "the writer was not held back";
    EXPECT_TRUE(cache_->find(held.key));
    cache_->drain();
    auto report = writer.report(kWriterGoesOnMs);
    ASSERT_TRUE(report) << "the writer still waits after drain()";
    EXPECT_EQ(*report, 0) << std::strerror(*report);
    EXPECT_EQ(writer.release(), 0);

    EXPECT_FALSE(cache_->find(held.key));
    DigestCacheStats s = cache_->stats();
    EXPECT_EQ(s.broken, broken_before + 1);
    EXPECT_EQ(s.entries, 0U);
    // The entry went whole: the other file's lease went with it.
    EXPECT_TRUE(no_lease(paths[1 - which]));
    EXPECT_FALSE(readable(cache_->signal_fd(), 0));
  }
}

TEST_F(DigestCacheTest, OneOfTwoLeasesBrokenBeforeFinishCachesNothing) {
  for (std::size_t which : {0U, 1U}) {
    SCOPED_TRACE("the lease of file " + std::to_string(which) + " breaks");
    std::vector<std::string> paths = {temp_.file("lower" + std::to_string(which)),
                                      temp_.file("upper" + std::to_string(which))};
    for (const auto& p : paths) write_text(p, p);
    std::uint64_t broken_before = cache_->stats().broken;
    std::vector<UniqueFd> fds;
    for (const auto& p : paths) {
      fds.push_back(open_read(p));
      ASSERT_TRUE(fds.back().valid());
      auto lease = cache_->begin(fds.back().get());
      ASSERT_TRUE(lease) << lease.error().message();
      ASSERT_EQ(*lease, DigestCache::Lease::kHeld);
    }
    auto key = DigestCache::key_of(fds[0].get(), 1);
    ASSERT_TRUE(key);

    Child writer = Child::spawn(Child::Action::kOpenWrite, paths[which]);
    ASSERT_TRUE(readable(cache_->signal_fd(), kSignalMs)) << "no lease-break signal";
    cache_->drain();
    EXPECT_FALSE(writer.report(kStillBlockedMs));  // the hashing side still holds it
    EXPECT_FALSE(cache_->finish(*key, std::move(fds), digest_of(0x34)));
    auto report = writer.report(kWriterGoesOnMs);
    ASSERT_TRUE(report) << "the writer still waits after finish()";
    EXPECT_EQ(*report, 0);
    EXPECT_EQ(writer.release(), 0);

    EXPECT_FALSE(cache_->find(*key));
    DigestCacheStats s = cache_->stats();
    EXPECT_EQ(s.broken, broken_before + 1);
    EXPECT_EQ(s.entries, 0U);
    EXPECT_TRUE(no_lease(paths[1 - which]));
  }
}

// --- Kernel hooks (fanotify ignore marks) ----------------------------------------------

// What the cache asked of the kernel hooks, in order. The hooks run under the cache's lock,
// on whichever thread called the cache; in these tests that is always the test's thread.
struct HookLog {
  std::vector<int> ignored;    // every ignore() call
  std::vector<int> unignored;  // every unignore() call
  bool ignore_succeeds = true;
  std::function<void(int)> on_unignore;  // runs inside the unignore hook
};

DigestCache::KernelHooks recording_hooks(HookLog& log) {
  return {[&log](int fd) {
            log.ignored.push_back(fd);
            return log.ignore_succeeds;
          },
          [&log](int fd) {
            log.unignored.push_back(fd);
            if (log.on_unignore) log.on_unignore(fd);
          }};
}

class DigestCacheKernelTest : public DigestCacheTest {
 protected:
  void SetUp() override {
    DigestCacheTest::SetUp();
    if (HasFatalFailure()) return;
    cache_->set_kernel_hooks(recording_hooks(log_));
  }
  // log_ goes before the fixture's cache: nothing may call the hooks after that.
  void TearDown() override {
    if (cache_) cache_->set_kernel_hooks({});
  }

  std::string make_file(const std::string& name) {
    std::string p = temp_.file(name);
    write_text(p, name);
    return p;
  }

  HookLog log_;
};

TEST_F(DigestCacheKernelTest, IgnoresTheFirstDescriptorOnlyWhenAsked) {
  Held kernel = cache_files({path_}, 1, 0x01, true);
  EXPECT_EQ(log_.ignored, std::vector<int>{kernel.fds[0]});
  EXPECT_EQ(cache_->stats().kernel, 1U);

  Held user = cache_files({make_file("user")}, 1, 0x02, false);
  EXPECT_EQ(log_.ignored.size(), 1U) << "ignore() for an entry cached with kernel = false";
  EXPECT_EQ(cache_->stats().kernel, 1U);

  // Two descriptors: the mark goes on the first (the file the monitor sees).
  Held two = cache_files({make_file("lower"), make_file("upper")}, 1, 0x03, true);
  ASSERT_EQ(log_.ignored.size(), 2U);
  EXPECT_EQ(log_.ignored[1], two.fds[0]);
  EXPECT_EQ(cache_->stats().kernel, 2U);
  EXPECT_TRUE(log_.unignored.empty());
  EXPECT_TRUE(cache_->find(kernel.key) && cache_->find(user.key) && cache_->find(two.key));

  // clear() undoes exactly the marks that were set.
  cache_->clear();
  std::vector<int> undone = log_.unignored;
  std::sort(undone.begin(), undone.end());
  std::vector<int> expected = {kernel.fds[0], two.fds[0]};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(undone, expected);
  EXPECT_EQ(log_.ignored.size(), 2U);
}

// The kernel must ask about the file again before a writer can change it: unignore() runs
// while the lease still holds the writer back, for a writer of either descriptor's file.
TEST_F(DigestCacheKernelTest, ALeaseBreakUnignoresBeforeTheWritersOpenReturns) {
  for (std::size_t which : {0U, 1U}) {
    SCOPED_TRACE("the writer opens file " + std::to_string(which));
    std::vector<std::string> paths = {make_file("lower" + std::to_string(which)),
                                      make_file("upper" + std::to_string(which))};
    log_.unignored.clear();
    std::optional<std::int64_t> unignored_ns;
    // A slow hook: if the leases were released before it (or during it), the writer's
    // open() would return before the hook ends.
    log_.on_unignore = [&](int) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      unignored_ns = monotonic_ns();
    };
    Held held = cache_files(paths, 1, 0x44, true);
    ASSERT_EQ(log_.ignored.back(), held.fds[0]);

    Child writer = Child::spawn(Child::Action::kOpenWriteStamped, paths[which]);
    ASSERT_TRUE(readable(cache_->signal_fd(), kSignalMs)) << "no lease-break signal";
    EXPECT_TRUE(log_.unignored.empty()) << "unignored before the break was handled";
    cache_->drain();
    EXPECT_EQ(log_.unignored, std::vector<int>{held.fds[0]});
    auto report = writer.report(kWriterGoesOnMs);
    ASSERT_TRUE(report) << "the writer still waits after drain()";
    EXPECT_EQ(*report, 0) << std::strerror(*report);
    auto opened_ns = writer.stamp(kWriterGoesOnMs);
    ASSERT_TRUE(opened_ns) << "the writer sent no time stamp";
    ASSERT_TRUE(unignored_ns) << "unignore() was not called";
    EXPECT_LT(*unignored_ns, *opened_ns) << "the writer's open() returned before unignore()";
    EXPECT_EQ(writer.release(), 0);
    EXPECT_FALSE(cache_->find(held.key));
    log_.on_unignore = nullptr;
  }
}

TEST_F(DigestCacheKernelTest, EvictionUnignores) {
  auto small = DigestCache::create(1);
  ASSERT_TRUE(small);
  small->set_kernel_hooks(recording_hooks(log_));
  Held a = cache_files({make_file("a")}, 1, 0xa, true, &*small);
  EXPECT_TRUE(log_.unignored.empty());
  Held b = cache_files({make_file("b")}, 1, 0xb, true, &*small);
  EXPECT_EQ(log_.unignored, std::vector<int>{a.fds[0]});
  EXPECT_EQ(small->stats().evicted, 1U);
  EXPECT_FALSE(small->find(a.key));
  EXPECT_TRUE(small->find(b.key));
  small->set_kernel_hooks({});
}

TEST_F(DigestCacheKernelTest, CachingAKeyAgainUnignoresTheOldEntryFirst) {
  Held first = cache_files({path_}, 1, 0x01, true);
  Held again = cache_files({path_}, 1, 0x02, true);
  EXPECT_EQ(first.key, again.key);
  EXPECT_EQ(log_.unignored, std::vector<int>{first.fds[0]});
  // The new entry's mark is set after the old one is removed (both are on one inode).
  EXPECT_EQ(log_.ignored, (std::vector<int>{first.fds[0], again.fds[0]}));
  log_.unignored.clear();
  cache_->clear();
  EXPECT_EQ(log_.unignored, std::vector<int>{again.fds[0]});
}

TEST_F(DigestCacheKernelTest, DropOwnerUnignoresOnlyThatOwner) {
  Held mine = cache_files({path_}, 1, 0x10, true);
  Held theirs = cache_files({make_file("other")}, 2, 0x20, true);
  cache_->drop_owner(3);
  EXPECT_TRUE(log_.unignored.empty());
  cache_->drop_owner(1);
  EXPECT_EQ(log_.unignored, std::vector<int>{mine.fds[0]});
  EXPECT_TRUE(cache_->find(theirs.key));
  cache_->drop_owner(2);
  EXPECT_EQ(log_.unignored, (std::vector<int>{mine.fds[0], theirs.fds[0]}));
  EXPECT_EQ(cache_->stats().entries, 0U);
}

TEST_F(DigestCacheKernelTest, AMarkThatWasNotSetIsNeverUndone) {
  log_.ignore_succeeds = false;
  Held broken = cache_files({path_}, 1, 0x01, true);
  EXPECT_EQ(log_.ignored, std::vector<int>{broken.fds[0]});
  EXPECT_EQ(cache_->stats().kernel, 0U);
  EXPECT_TRUE(cache_->find(broken.key));  // still cached in userspace

  // Dropped by a lease break...
  Child writer = Child::spawn(Child::Action::kOpenWrite, path_);
  ASSERT_TRUE(readable(cache_->signal_fd(), kSignalMs)) << "no lease-break signal";
  cache_->drain();
  ASSERT_TRUE(writer.report(kWriterGoesOnMs)) << "the writer still waits after drain()";
  EXPECT_EQ(writer.release(), 0);
  EXPECT_FALSE(cache_->find(broken.key));

  // ...by owner, by clear() and by eviction.
  cache_files({make_file("owned")}, 2, 0x02, true);
  cache_->drop_owner(2);
  cache_files({make_file("cleared")}, 1, 0x03, true);
  cache_->clear();
  auto small = DigestCache::create(1);
  ASSERT_TRUE(small);
  small->set_kernel_hooks(recording_hooks(log_));
  cache_files({make_file("evicted")}, 1, 0x04, true, &*small);
  cache_files({make_file("evictor")}, 1, 0x05, true, &*small);
  EXPECT_EQ(small->stats().evicted, 1U);
  small->set_kernel_hooks({});

  EXPECT_EQ(log_.ignored.size(), 5U);
  EXPECT_TRUE(log_.unignored.empty()) << "unignore() for a mark ignore() did not set";
  EXPECT_EQ(cache_->stats().kernel, 0U);
}

}  // namespace
}  // namespace ctrust::agent
