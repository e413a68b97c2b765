// The exec decision end to end, for real (root, as in CI): fanotify on a tmpfs, a policy
// listing one binary, a container log bound to a swtpm vTPM. Each mode is checked for
// what runs, what is denied (EPERM) and what the log and PCR 10 hold.
#include "agent/exec_guard.h"

#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "imalog/binary.h"
#include "imalog/replay.h"
#include "tpm/swtpm_fixture.h"

namespace ctrust::agent {
namespace {

namespace fs = std::filesystem;
using crypto::HashAlg;

constexpr const char* kBusybox = "/bin/busybox";

class ExecGuardTest : public testing::SwtpmTest {
 protected:
  void SetUp() override {
    std::string why;
    if (::geteuid() != 0) why = "needs root (fanotify permission events, mount)";
    if (why.empty() && ::access(kBusybox, X_OK) != 0) why = "needs busybox-static";
    if (!why.empty()) {
      if (testing::in_ci()) FAIL() << why;
      GTEST_SKIP() << why;
    }
    root_ = temp_.file("rootfs");
    fs::create_directory(root_);
    ASSERT_EQ(::mount("tmpfs", root_.c_str(), "tmpfs", 0, "size=32m"), 0) << std::strerror(errno);
    mounted_ = true;
    // Two binaries that run `true` (busybox names its applet after the file) with
    // different contents: the policy lists only the first.
    for (const char* dir : {"listed", "unlisted"}) {
      fs::create_directories(root_ + "/" + dir);
      fs::copy_file(kBusybox, root_ + "/" + dir + "/true");
      fs::permissions(root_ + "/" + dir + "/true", fs::perms(0755));
    }
    std::ofstream(root_ + "/unlisted/true", std::ios::app) << "not in the policy";
    auto listed = crypto::digest_file(HashAlg::kSha256, root_ + "/listed/true");
    ASSERT_TRUE(listed);
    policy::Policy p;
    p.name = "test";
    p.issuer = "test";
    p.not_before = 0;
    p.not_after = 4102444800;  // 2100-01-01
    p.allow.push_back(policy::Allow{*listed, {}});
    auto normalized = policy::normalize(p);
    ASSERT_TRUE(normalized) << normalized.error().message();
    auto compiled = policy::CompiledPolicy::compile(p);
    ASSERT_TRUE(compiled);
    policy_.emplace(std::move(*compiled));
  }
  void TearDown() override {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    if (mounted_) ::umount2(root_.c_str(), MNT_DETACH);
  }

  void serve(events::FanotifyMonitor& monitor, ExecGuard& guard) {
    thread_ = std::thread([this, &monitor, &guard] {
      while (!stop_) {
        auto n = monitor.poll_once(
            [&](const events::PermissionEvent& e) { return guard.decide(e).verdict; }, 50);
        if (!n) ADD_FAILURE() << n.error().message();
      }
    });
  }

  static int run(const std::string& path) {
    char* argv[] = {const_cast<char*>(path.c_str()), nullptr};
    pid_t pid = ::fork();
    if (pid == 0) {
      ::close_range(3, ~0U, 0);
      ::execv(argv[0], argv);
      ::_exit(100 + errno);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  // Runs both binaries (twice each) under `mode`; returns the log's entry names.
  std::vector<std::string> exercise(policy::Mode mode, int* listed_rc, int* unlisted_rc,
                                    ExecCounters* counters) {
    std::string tcti = start_swtpm();
    if (tcti.empty()) return {};
    auto vtpm = tpm::Tpm::open(tcti);
    EXPECT_TRUE(vtpm);
    auto log = ContainerLog::open(temp_.file("container.log"), std::move(*vtpm));
    EXPECT_TRUE(log) << log.error().message();
    ExecGuard guard(*policy_, mode, &*log, root_);
    auto monitor = events::FanotifyMonitor::create();
    EXPECT_TRUE(monitor);
    EXPECT_TRUE(monitor->mark_filesystem(root_));
    serve(*monitor, guard);
    *listed_rc = run(root_ + "/listed/true");
    *unlisted_rc = run(root_ + "/unlisted/true");
    run(root_ + "/listed/true");
    run(root_ + "/unlisted/true");
    stop_ = true;
    thread_.join();
    *counters = guard.counters();

    // The log replays to the vTPM's PCR 10 in every bank.
    imalog::Replayer replayer(log->banks());
    std::vector<std::string> names;
    auto reader = imalog::BinaryReader::open(temp_.file("container.log"));
    EXPECT_TRUE(reader);
    imalog::Entry e;
    while (reader && *reader->next(e)) {
      EXPECT_TRUE(replayer.add(e));
      auto fields = imalog::parse_fields(e);
      EXPECT_TRUE(fields);
      names.emplace_back(fields->name);
    }
    for (auto alg : log->banks()) {
      auto values = log->vtpm().pcr_read({tpm::PcrBank{alg, {10}}});
      EXPECT_TRUE(values);
      EXPECT_EQ(values->values[0], replayer.bank(alg)->values[10]);
    }
    return names;
  }

  std::string root_;
  bool mounted_ = false;
  std::optional<policy::CompiledPolicy> policy_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

TEST_F(ExecGuardTest, EnforceRunsListedDeniesUnlistedAndLogsWhatRan) {
  int listed = -1;
  int unlisted = -1;
  ExecCounters c;
  auto names = exercise(policy::Mode::kEnforce, &listed, &unlisted, &c);
  if (IsSkipped()) return;
  EXPECT_EQ(listed, 0);
  EXPECT_EQ(unlisted, 100 + EPERM);
  EXPECT_EQ(names, std::vector<std::string>{"/listed/true"});  // once: de-duplicated
  EXPECT_EQ(c.events, 4U);
  EXPECT_EQ(c.denied, 2U);
  EXPECT_EQ(c.logged, 1U);
}

TEST_F(ExecGuardTest, AuditRunsEverythingAndCountsWhatEnforceWouldDeny) {
  int listed = -1;
  int unlisted = -1;
  ExecCounters c;
  auto names = exercise(policy::Mode::kAudit, &listed, &unlisted, &c);
  if (IsSkipped()) return;
  EXPECT_EQ(listed, 0);
  EXPECT_EQ(unlisted, 0);
  EXPECT_EQ(names, (std::vector<std::string>{"/listed/true", "/unlisted/true"}));
  EXPECT_EQ(c.would_deny, 1U);  // one unlisted file, run twice: counted once
  EXPECT_EQ(c.denied, 0U);
}

TEST_F(ExecGuardTest, MeasureLogsEverythingOffLogsNothing) {
  int listed = -1;
  int unlisted = -1;
  ExecCounters c;
  auto names = exercise(policy::Mode::kMeasure, &listed, &unlisted, &c);
  if (IsSkipped()) return;
  EXPECT_EQ(unlisted, 0);
  EXPECT_EQ(names.size(), 2U);
  EXPECT_EQ(c.would_deny, 0U);
}

TEST_F(ExecGuardTest, OffAllowsWithoutLogging) {
  int listed = -1;
  int unlisted = -1;
  ExecCounters c;
  auto names = exercise(policy::Mode::kOff, &listed, &unlisted, &c);
  if (IsSkipped()) return;
  EXPECT_EQ(unlisted, 0);
  EXPECT_TRUE(names.empty());
  EXPECT_EQ(c.logged, 0U);
}

}  // namespace
}  // namespace ctrust::agent
