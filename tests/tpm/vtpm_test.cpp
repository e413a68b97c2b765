// The vTPM manager against real swtpm and swtpm_setup: per-container vTPMs with EK
// certificates from the local CA, the warm pool, adoption after a restart, suspend and
// resume with PCRs intact, dead vTPMs reported (never replaced), limits, and no leaks.
#include "tpm/vtpm.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <openssl/x509.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "swtpm_fixture.h"
#include "tpm/tpm.h"

namespace ctrust::tpm {
namespace {

namespace fs = std::filesystem;
using testing::in_ci;
using testing::TempDir;

Bytes bytes_of(std::string_view s) { return Bytes(s.begin(), s.end()); }

bool have_tools() {
  return ::access("/usr/bin/swtpm", X_OK) == 0 && ::access("/usr/bin/swtpm_setup", X_OK) == 0;
}

// Every swtpm process serving a socket under `root`.
std::size_t swtpm_processes_under(const std::string& root) {
  std::size_t n = 0;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    std::ifstream in(entry.path() / "cmdline");
    std::string cmd((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (cmd.rfind("swtpm", 0) != std::string::npos || cmd.find("/swtpm") != std::string::npos) {
      if (cmd.find(root) != std::string::npos && cmd.find("socket") != std::string::npos) ++n;
    }
  }
  return n;
}

class VtpmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!have_tools()) {
      if (in_ci()) FAIL() << "swtpm and swtpm_setup are required in CI";
      GTEST_SKIP() << "swtpm or swtpm_setup missing (scripts/setup installs them)";
    }
    config_.root = temp_.file("vtpm");
    config_.pool_size = 0;
  }
  void TearDown() override {
    // Whatever a failed test left behind: stop it so no swtpm outlives the test.
    if (fs::exists(config_.root)) {
      auto manager = VtpmManager::open(VtpmConfig{config_.root, 1000, 0});
      if (manager) {
        (*manager)->drain_pool();
        for (const auto& info : (*manager)->list()) (void)(*manager)->destroy(info.container);
      }
      EXPECT_EQ(swtpm_processes_under(config_.root), 0U);
    }
  }
  std::unique_ptr<VtpmManager> open_manager() {
    auto manager = VtpmManager::open(config_);
    EXPECT_TRUE(manager) << manager.error().message();
    return manager ? std::move(*manager) : nullptr;
  }

  TempDir temp_;
  VtpmConfig config_;
};

TEST_F(VtpmTest, EachContainerGetsAVtpmWithEkCertificateAndAk) {
  auto manager = open_manager();
  ASSERT_TRUE(manager);
  auto info = manager->create("c1");
  ASSERT_TRUE(info) << info.error().message();
  EXPECT_EQ(info->container, "c1");
  EXPECT_EQ(info->status, VtpmStatus::kRunning);
  struct stat st {};
  ASSERT_EQ(::stat(info->state_dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700U);
  ASSERT_EQ(::stat(config_.root.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700U);

  auto tpm = Tpm::open(info->tcti);
  ASSERT_TRUE(tpm) << tpm.error().message();
  auto ak = tpm->attestation_key(KeyAlg::kEccP256);
  ASSERT_TRUE(ak);
  EXPECT_EQ(to_hex(ak->name()), info->ak_name);
  auto ek = tpm->endorsement_key(KeyAlg::kRsa2048);
  ASSERT_TRUE(ek);
  EXPECT_EQ(to_hex(ek->name()), info->ek_name);
  auto cert_der = tpm->ek_certificate(KeyAlg::kRsa2048);
  ASSERT_TRUE(cert_der) << cert_der.error().message();
  ASSERT_TRUE(cert_der->has_value());
  auto cert = crypto::Certificate::from_der(**cert_der);
  ASSERT_TRUE(cert);
  // The certificate is for this EK and is signed by the local vTPM CA.
  auto cert_key = cert->public_key();
  auto ek_key = ek->public_area().public_key();
  ASSERT_TRUE(cert_key && ek_key);
  EXPECT_EQ(cert_key->fingerprint()->hex(), ek_key->fingerprint()->hex());
  auto issuer = crypto::Certificate::load_pem_file(manager->ca_certificates()[1]);
  ASSERT_TRUE(issuer) << issuer.error().message();
  auto issuer_key = issuer->public_key();
  ASSERT_TRUE(issuer_key);
  EXPECT_EQ(X509_verify(cert->native(), issuer_key->native()), 1);

  // A second container gets a different TPM.
  auto other = manager->create("c2");
  ASSERT_TRUE(other);
  EXPECT_NE(other->ek_name, info->ek_name);
  EXPECT_NE(other->uuid, info->uuid);

  auto again = manager->create("c1");
  ASSERT_FALSE(again);
  EXPECT_NE(again.error().message().find("already has a vTPM"), std::string::npos);
  EXPECT_FALSE(manager->create("../etc"));
  EXPECT_FALSE(manager->create(""));
  EXPECT_EQ(manager->list().size(), 2U);

  ASSERT_TRUE(manager->destroy("c1"));
  ASSERT_TRUE(manager->destroy("c2"));
  EXPECT_TRUE(manager->list().empty());
  EXPECT_FALSE(manager->destroy("c1"));
  EXPECT_EQ(swtpm_processes_under(config_.root), 0U);
}

TEST_F(VtpmTest, PoolHandsOutPrestartedVtpmsAndRefills) {
  config_.pool_size = 2;
  auto manager = open_manager();
  ASSERT_TRUE(manager);
  errno = 0;
  int before = ::getpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()));
  ASSERT_EQ(errno, 0);
  ASSERT_TRUE(manager->fill_pool());
  EXPECT_EQ(manager->pool_ready(), 2U);
  // Made at nice 19 (this thread's, while it made them), then back to normal: the thread,
  // and each pool vTPM's swtpm, for the container it will serve.
  EXPECT_EQ(::getpriority(PRIO_PROCESS, static_cast<id_t>(::gettid())), before);
  auto pooled = manager->list(true);
  ASSERT_EQ(pooled.size(), 2U);
  for (const auto& p : pooled) {
    std::ifstream stat("/proc/" + std::to_string(p.pid) + "/stat");
    std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    auto fields = text.substr(text.rfind(')') + 2);
    std::istringstream in(fields);
    std::string f;
    for (int i = 3; i <= 19 && in >> f; ++i) {
    }
    EXPECT_EQ(f, "0") << "nice of swtpm " << p.pid;
  }
  auto info = manager->create("c1");
  ASSERT_TRUE(info) << info.error().message();
  EXPECT_TRUE(info->uuid == pooled[0].uuid || info->uuid == pooled[1].uuid);
  // The refill thread brings the pool back to two.
  for (int i = 0; i < 200 && manager->pool_ready() < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(manager->pool_ready(), 2U);
  // A restarted manager adopts the running pool.
  manager.reset();
  manager = open_manager();
  ASSERT_TRUE(manager);
  EXPECT_GE(manager->pool_ready(), 2U);
  manager->drain_pool();
  ASSERT_TRUE(manager->destroy("c1"));
}

TEST_F(VtpmTest, RestartedManagerAdoptsRunningVtpmsWithTheirPcrs) {
  auto manager = open_manager();
  ASSERT_TRUE(manager);
  auto info = manager->create("c1");
  ASSERT_TRUE(info);
  auto sel = parse_pcr_list("sha256:10");
  crypto::Digest before;
  {
    auto tpm = Tpm::open(info->tcti);
    ASSERT_TRUE(tpm);
    ASSERT_TRUE(tpm->pcr_extend_data(10, bytes_of("measured")));
    auto values = tpm->pcr_read(*sel);
    ASSERT_TRUE(values);
    before = values->values[0];
  }
  manager.reset();  // the agent goes away; its vTPMs keep running
  manager = open_manager();
  ASSERT_TRUE(manager);
  auto adopted = manager->get("c1");
  ASSERT_TRUE(adopted);
  EXPECT_EQ(adopted->status, VtpmStatus::kRunning);
  EXPECT_EQ(adopted->pid, info->pid);
  auto tpm = Tpm::open(adopted->tcti);
  ASSERT_TRUE(tpm);
  auto values = tpm->pcr_read(*sel);
  ASSERT_TRUE(values);
  EXPECT_EQ(values->values[0], before);
  EXPECT_FALSE(before.is_zero());
}

TEST_F(VtpmTest, SuspendedVtpmsResumeWithPcrsIntact) {
  auto manager = open_manager();
  ASSERT_TRUE(manager);
  auto info = manager->create("c1");
  ASSERT_TRUE(info);
  auto sel = parse_pcr_list("sha256:10+sha1:10");
  PcrValues before;
  {
    auto tpm = Tpm::open(info->tcti);
    ASSERT_TRUE(tpm);
    ASSERT_TRUE(tpm->pcr_extend_data(10, bytes_of("measured")));
    before = *tpm->pcr_read(*sel);
  }
  ASSERT_TRUE(manager->suspend("c1"));
  EXPECT_EQ(manager->get("c1")->status, VtpmStatus::kSuspended);
  EXPECT_EQ(swtpm_processes_under(config_.root), 0U);
  manager.reset();
  manager = open_manager();  // host came back: suspended vTPMs restart from saved state
  ASSERT_TRUE(manager);
  auto resumed = manager->get("c1");
  ASSERT_TRUE(resumed);
  EXPECT_EQ(resumed->status, VtpmStatus::kRunning);
  EXPECT_NE(resumed->pid, info->pid);
  auto tpm = Tpm::open(resumed->tcti);
  ASSERT_TRUE(tpm);
  EXPECT_EQ(tpm->pcr_read(*sel)->values, before.values);
  EXPECT_FALSE(before.values[0].is_zero());
}

TEST_F(VtpmTest, AKilledSwtpmIsReportedDeadAndNeverReplaced) {
  auto manager = open_manager();
  ASSERT_TRUE(manager);
  auto info = manager->create("c1");
  ASSERT_TRUE(info);
  ASSERT_EQ(::kill(info->pid, SIGKILL), 0);
  for (int i = 0; i < 100 && ::kill(info->pid, 0) == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  auto dead = manager->get("c1");
  ASSERT_TRUE(dead);
  EXPECT_EQ(dead->status, VtpmStatus::kDead);
  EXPECT_NE(dead->detail.find("is gone"), std::string::npos) << dead->detail;
  manager.reset();
  manager = open_manager();
  ASSERT_TRUE(manager);
  auto listed = manager->list();
  ASSERT_EQ(listed.size(), 1U);
  EXPECT_EQ(listed[0].status, VtpmStatus::kDead);
  EXPECT_FALSE(manager->create("c1"));  // no fresh TPM under the old name
  EXPECT_FALSE(manager->suspend("c1"));
  ASSERT_TRUE(manager->destroy("c1"));
  EXPECT_TRUE(manager->list().empty());
}

TEST_F(VtpmTest, ADeadPoolVtpmIsNeverHandedOut) {
  config_.pool_size = 1;
  auto manager = open_manager();
  ASSERT_TRUE(manager);
  ASSERT_TRUE(manager->fill_pool());
  auto pooled = manager->list(true);
  ASSERT_EQ(pooled.size(), 1U);
  ASSERT_EQ(::kill(pooled[0].pid, SIGKILL), 0);
  for (int i = 0; i < 100 && swtpm_alive(pooled[0].pid, pooled[0].state_dir + "/tpm.sock"); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  auto info = manager->create("c1");
  ASSERT_TRUE(info) << info.error().message();
  EXPECT_NE(info->uuid, pooled[0].uuid);
  EXPECT_FALSE(fs::exists(pooled[0].state_dir));
  auto tpm = Tpm::open(info->tcti);
  ASSERT_TRUE(tpm);
  EXPECT_TRUE(tpm->pcr_extend_data(10, bytes_of("alive")));
  manager->drain_pool();
  ASSERT_TRUE(manager->destroy("c1"));
}

TEST_F(VtpmTest, AForeignContainerLinkIsRefusedNotFollowed) {
  auto manager = open_manager();
  ASSERT_TRUE(manager);
  ASSERT_TRUE(manager->create("c1"));
  // A link that would make destroy delete the root (or anything outside tpms/).
  ASSERT_EQ(::symlink("../tpms/..", (config_.root + "/containers/evil").c_str()), 0);
  auto evil = manager->get("evil");
  ASSERT_FALSE(evil);
  EXPECT_EQ(evil.error().code(), Errc::kFormat);
  EXPECT_FALSE(manager->destroy("evil"));
  EXPECT_TRUE(fs::exists(config_.root + "/ca"));
  EXPECT_TRUE(manager->get("c1"));
  auto listed = manager->list();
  ASSERT_EQ(listed.size(), 2U);  // reported, with the reason
  fs::remove(config_.root + "/containers/evil");
  ASSERT_TRUE(manager->destroy("c1"));
}

TEST_F(VtpmTest, OnlyOneManagerOwnsThePool) {
  config_.pool_size = 1;
  auto agent = open_manager();
  ASSERT_TRUE(agent);
  ASSERT_TRUE(agent->fill_pool());
  std::string pooled = agent->list(true).at(0).uuid;

  // A second pool manager on the same root is refused, with the reason.
  auto second = VtpmManager::open(config_);
  ASSERT_FALSE(second);
  EXPECT_NE(second.error().message().find("another process manages the vTPM pool"),
            std::string::npos);

  // The CLI's manager leaves the pool alone: it manufactures instead of taking from it.
  VtpmConfig cli = config_;
  cli.manage_pool = false;
  cli.pool_size = 0;
  auto other = VtpmManager::open(cli);
  ASSERT_TRUE(other) << other.error().message();
  EXPECT_EQ((*other)->pool_ready(), 0U);
  auto info = (*other)->create("from-cli");
  ASSERT_TRUE(info);
  EXPECT_NE(info->uuid, pooled);
  EXPECT_EQ(agent->pool_ready(), 1U);
  auto mine = agent->create("from-agent");
  ASSERT_TRUE(mine);
  EXPECT_EQ(mine->uuid, pooled);
  ASSERT_TRUE((*other)->destroy("from-cli"));
  ASSERT_TRUE(agent->destroy("from-agent"));
  agent->drain_pool();
}

TEST_F(VtpmTest, AVtpmBeingManufacturedIsNotDiscarded) {
  {
    auto manager = open_manager();  // creates the layout
    ASSERT_TRUE(manager);
  }
  // Another process is half-way through making this one: no vtpm.json yet, lock held.
  std::string dir = config_.root + "/tpms/0123456789abcdef0123456789abcdef";
  ASSERT_TRUE(fs::create_directory(dir));
  int fd = ::open((dir + "/manufacture.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX), 0);
  {
    auto manager = open_manager();
    ASSERT_TRUE(manager);
  }
  EXPECT_TRUE(fs::exists(dir));
  ::close(fd);  // that process died: the half-made vTPM is debris now
  {
    auto manager = open_manager();
    ASSERT_TRUE(manager);
  }
  EXPECT_FALSE(fs::exists(dir));
}

TEST_F(VtpmTest, MaximumAndArchive) {
  config_.max = 1;
  config_.archive_on_destroy = true;
  auto manager = open_manager();
  ASSERT_TRUE(manager);
  ASSERT_TRUE(manager->create("c1"));
  auto over = manager->create("c2");
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().code(), Errc::kLimit);
  ASSERT_TRUE(manager->destroy("c1"));
  std::size_t archived = 0;
  for (const auto& entry : fs::directory_iterator(config_.root + "/archive")) {
    EXPECT_EQ(entry.path().filename().string().rfind("c1-", 0), 0U);
    EXPECT_TRUE(fs::exists(entry.path() / "tpm2-00.permall"));
    ++archived;
  }
  EXPECT_EQ(archived, 1U);
  EXPECT_TRUE(manager->create("c2"));  // the slot is free again
}

TEST_F(VtpmTest, MissingToolsAreClearErrors) {
  config_.swtpm_setup = "ctrust-no-such-swtpm_setup";
  auto manager = open_manager();
  ASSERT_TRUE(manager);
  auto info = manager->create("c1");
  ASSERT_FALSE(info);
  EXPECT_NE(info.error().message().find("not installed"), std::string::npos)
      << info.error().message();
  EXPECT_TRUE(manager->list().empty());
  EXPECT_TRUE(fs::is_empty(config_.root + "/tpms"));
}

TEST_F(VtpmTest, FiftyVtpmsCreatedAndDestroyedConcurrentlyWithoutLeaks) {
  config_.max = 50;
  auto manager = open_manager();
  ASSERT_TRUE(manager);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  constexpr int kThreads = 10;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 5; ++i) {
        std::string id = "c" + std::to_string(t) + "-" + std::to_string(i);
        auto info = manager->create(id);
        if (!info) {
          ADD_FAILURE() << id << ": " << info.error().message();
          ++failures;
          continue;
        }
        auto tpm = Tpm::open(info->tcti);
        if (!tpm || !tpm->pcr_extend_data(10, bytes_of(id))) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(manager->list().size(), 50U);
  EXPECT_EQ(swtpm_processes_under(config_.root), 50U);
  threads.clear();
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 5; ++i) {
        std::string id = "c" + std::to_string(t) + "-" + std::to_string(i);
        if (!manager->destroy(id)) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_TRUE(manager->list().empty());
  EXPECT_EQ(swtpm_processes_under(config_.root), 0U);
  EXPECT_TRUE(fs::is_empty(config_.root + "/tpms"));
  EXPECT_TRUE(fs::is_empty(config_.root + "/containers"));
}

}  // namespace
}  // namespace ctrust::tpm
