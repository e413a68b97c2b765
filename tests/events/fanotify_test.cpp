// fanotify permission events for real (privileged: CI runs as root): a tmpfs with copies
// of a static busybox is marked; the decision allows one copy and denies the other, whose
// execve() then fails with EPERM; with open events, a script read by a shell is denied.
#include "events/fanotify.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "support/temp_dir.h"

namespace ctrust::events {
namespace {

namespace fs = std::filesystem;

bool in_ci() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string(ci) == "true";
}

constexpr const char* kBusybox = "/bin/busybox";

class FanotifyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (::geteuid() != 0) why = "needs root (fanotify permission events, mount)";
    if (why.empty() && ::access(kBusybox, X_OK) != 0) why = "needs busybox-static";
    if (!why.empty()) {
      if (in_ci()) FAIL() << why;
      GTEST_SKIP() << why;
    }
    mnt_ = temp_.file("mnt");
    fs::create_directory(mnt_);
    ASSERT_EQ(::mount("tmpfs", mnt_.c_str(), "tmpfs", 0, "size=32m"), 0) << std::strerror(errno);
    mounted_ = true;
    // busybox picks its applet from the file name: a/true and d/true both run `true`.
    for (const char* dir : {"a", "d"}) {
      fs::create_directory(mnt_ + "/" + dir);
      fs::copy_file(kBusybox, mnt_ + "/" + dir + "/true");
      fs::permissions(mnt_ + "/" + dir + "/true", fs::perms(0755));
    }
    std::ofstream(mnt_ + "/script.sh") << "exit 0\n";
    std::ofstream(mnt_ + "/ok.sh") << "exit 0\n";
  }
  void TearDown() override {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    if (mounted_) ::umount2(mnt_.c_str(), MNT_DETACH);
  }

  // Answers events on a thread: deny paths ending in one of `deny`, allow the rest.
  void serve(FanotifyMonitor& monitor, std::vector<std::string> deny) {
    thread_ = std::thread([this, &monitor, deny] {
      while (!stop_) {
        auto n = monitor.poll_once(
            [&](const PermissionEvent& e) {
              std::lock_guard lock(mutex_);
              seen_.push_back(e);
              for (const auto& d : deny) {
                if (e.path.size() >= d.size() &&
                    e.path.compare(e.path.size() - d.size(), d.size(), d) == 0) {
                  return Verdict::kDeny;
                }
              }
              return Verdict::kAllow;
            },
            50);
        if (!n) ADD_FAILURE() << n.error().message();
      }
    });
  }

  // Runs argv in a child; returns its exit status, or 100 + errno when execv failed.
  // The child closes every inherited descriptor first: a child blocked in execve() while
  // it still holds the fanotify group would keep the group (and itself) waiting forever.
  static int run(const std::vector<std::string>& args) {
    std::vector<char*> argv;
    argv.reserve(args.size() + 1);
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    pid_t pid = ::fork();
    if (pid == 0) {
      ::close_range(3, ~0U, 0);
      ::execv(argv[0], argv.data());
      ::_exit(100 + errno);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  // Events seen so far for `path`.
  std::size_t seen_for(const std::string& path) {
    std::lock_guard lock(mutex_);
    return static_cast<std::size_t>(
        std::count_if(seen_.begin(), seen_.end(), [&](const auto& e) { return e.path == path; }));
  }

  testing::TempDir temp_;
  std::string mnt_;
  bool mounted_ = false;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mutex_;
  std::vector<PermissionEvent> seen_;
  std::optional<FanotifyMonitor> kept_;  // destroyed after TearDown() joined thread_
};

TEST_F(FanotifyTest, DeniedExecFailsWithEpermAndAllowedOneRuns) {
  auto monitor = FanotifyMonitor::create();
  ASSERT_TRUE(monitor) << monitor.error().message();
  ASSERT_TRUE(monitor->mark_filesystem(mnt_));
  serve(*monitor, {"/d/true"});
  EXPECT_EQ(run({mnt_ + "/a/true"}), 0);
  EXPECT_EQ(run({mnt_ + "/d/true"}), 100 + EPERM);
  stop_ = true;
  thread_.join();
  std::lock_guard lock(mutex_);
  ASSERT_EQ(seen_.size(), 2U);
  EXPECT_TRUE(seen_[0].exec);
  EXPECT_EQ(seen_[0].path, mnt_ + "/a/true");
  EXPECT_EQ(seen_[1].path, mnt_ + "/d/true");
  EXPECT_GT(seen_[1].pid, 0);
}

TEST_F(FanotifyTest, OpenEventsCoverScriptsReadByAShell) {
  MonitorOptions options;
  options.open = true;
  auto monitor = FanotifyMonitor::create(options);
  ASSERT_TRUE(monitor) << monitor.error().message();
  ASSERT_TRUE(monitor->mark_filesystem(mnt_));
  serve(*monitor, {"/script.sh"});
  EXPECT_EQ(run({kBusybox, "sh", mnt_ + "/ok.sh"}), 0);
  EXPECT_NE(run({kBusybox, "sh", mnt_ + "/script.sh"}), 0);
  stop_ = true;
  thread_.join();
  std::lock_guard lock(mutex_);
  bool saw_script = false;
  for (const auto& e : seen_) saw_script = saw_script || e.path == mnt_ + "/script.sh";
  EXPECT_TRUE(saw_script);
}

TEST_F(FanotifyTest, ClosingTheMonitorReleasesWaiters) {
  auto monitor = FanotifyMonitor::create();
  ASSERT_TRUE(monitor);
  ASSERT_TRUE(monitor->mark_filesystem(mnt_));
  // Nobody answers: the exec waits until the group is closed, then proceeds.
  std::string path = mnt_ + "/a/true";
  char* argv[] = {path.data(), nullptr};
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close_range(3, ~0U, 0);  // see run()
    ::execv(argv[0], argv);
    ::_exit(100 + errno);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  int status = 0;
  EXPECT_EQ(::waitpid(pid, &status, WNOHANG), 0);  // still waiting for a verdict
  { FanotifyMonitor closed = std::move(*monitor); }
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

// An ignore mark is a verdict the kernel keeps: while it is set the file runs without
// asking; removing it makes the next exec ask again. Other files are still judged.
TEST_F(FanotifyTest, AnIgnoredFileRunsWithoutAskingUntilUnignored) {
  auto created = FanotifyMonitor::create();
  ASSERT_TRUE(created) << created.error().message();
  // Kept by the fixture, so that TearDown() stops the serving thread before the monitor
  // closes, also when an assertion returns early.
  FanotifyMonitor* monitor = &kept_.emplace(std::move(*created));
  ASSERT_TRUE(monitor->mark_filesystem(mnt_));
  serve(*monitor, {"/d/true"});
  const std::string allowed = mnt_ + "/a/true";
  const std::string denied = mnt_ + "/d/true";

  EXPECT_EQ(run({allowed}), 0);
  ASSERT_EQ(seen_for(allowed), 1U);

  UniqueFd fd(::open(allowed.c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(fd.valid()) << std::strerror(errno);
  auto ignored = monitor->ignore(fd.get());
  ASSERT_TRUE(ignored) << ignored.error().message();
  for (int i = 0; i < 5; ++i) EXPECT_EQ(run({allowed}), 0) << "exec " << i;
  EXPECT_EQ(seen_for(allowed), 1U) << "the kernel asked about an ignored file";

  // The mark is for that inode only: the other file is still asked about, and denied.
  EXPECT_EQ(run({denied}), 100 + EPERM);
  EXPECT_EQ(seen_for(denied), 1U);
  EXPECT_EQ(seen_for(allowed), 1U);

  auto unignored = monitor->unignore(fd.get());
  ASSERT_TRUE(unignored) << unignored.error().message();
  EXPECT_EQ(run({allowed}), 0);
  EXPECT_EQ(seen_for(allowed), 2U) << "no event after unignore()";
  EXPECT_EQ(run({denied}), 100 + EPERM);

  // Removing a mark that is not there is not an error: again, and on a file never ignored.
  EXPECT_TRUE(monitor->unignore(fd.get()));
  UniqueFd other(::open(denied.c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(other.valid());
  auto none = monitor->unignore(other.get());
  EXPECT_TRUE(none) << none.error().message();
  EXPECT_EQ(run({allowed}), 0);
  EXPECT_EQ(seen_for(allowed), 3U);
}

TEST(FanotifyOptions, AMonitorMustAskAboutSomething) {
  MonitorOptions options;
  options.exec = false;
  EXPECT_FALSE(FanotifyMonitor::create(options));
}

}  // namespace
}  // namespace ctrust::events
