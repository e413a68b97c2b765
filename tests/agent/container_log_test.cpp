// A container's log bound to a real swtpm vTPM: the PCR always replays from the log
// (checked by ctrust's replayer and by evmctl ima_measurement on values read from the
// vTPM), a crash between the write and the extend is repaired on open, and a vTPM or log
// changed behind the agent's back is refused.
#include "agent/container_log.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

#include "imalog/binary.h"
#include "imalog/replay.h"
#include "tpm/swtpm_fixture.h"

namespace ctrust::agent {
namespace {

using crypto::HashAlg;

imalog::Entry measurement(const std::string& name, std::uint8_t fill) {
  imalog::MeasurementSpec spec;
  spec.name = name;
  spec.file_digest.bytes.fill(fill);
  auto e = imalog::make_entry(spec, HashAlg::kSha1);
  EXPECT_TRUE(e);
  return *e;
}

// The vTPM's PCR 10, and the replay of the log file, per bank.
void expect_pcr_replays(tpm::Tpm& vtpm, const std::string& path,
                        const std::vector<HashAlg>& banks) {
  imalog::Replayer replayer(banks);
  auto reader = imalog::BinaryReader::open(path);
  ASSERT_TRUE(reader) << reader.error().message();
  imalog::Entry e;
  while (*reader->next(e)) ASSERT_TRUE(replayer.add(e));
  for (auto alg : banks) {
    auto values = vtpm.pcr_read({tpm::PcrBank{alg, {10}}});
    ASSERT_TRUE(values);
    EXPECT_EQ(values->values[0], replayer.bank(alg)->values[10]) << crypto::hash_name(alg);
  }
}

class ContainerLogTest : public testing::SwtpmTest {
 protected:
  std::string log_path() const { return temp_.file("container.log"); }
  // The log reopened on the vTPM at `tcti`, as a restarted agent opens it: what open()
  // found and extended, and the PCR replaying from the file.
  void expect_reopened(const std::string& tcti, std::uint64_t entries, std::uint64_t extended) {
    auto reopened = tpm::Tpm::open(tcti);
    ASSERT_TRUE(reopened);
    auto log = ContainerLog::open(log_path(), std::move(*reopened));
    ASSERT_TRUE(log) << log.error().message();
    EXPECT_EQ(log->reconciliation().entries, entries);
    EXPECT_EQ(log->reconciliation().extended_on_open, extended);
    expect_pcr_replays(log->vtpm(), log_path(), log->banks());
  }
};

TEST_F(ContainerLogTest, EveryEntryIsInTheLogAndInPcr10) {
  CTRUST_OPEN_SWTPM(vtpm);
  auto host_banks = vtpm.active_banks();
  ASSERT_TRUE(host_banks);
  auto aggregate = boot_aggregate(vtpm, HashAlg::kSha256);
  ASSERT_TRUE(aggregate);
  auto first = boot_aggregate_entry(*aggregate, HashAlg::kSha1);
  ASSERT_TRUE(first);

  auto log = ContainerLog::open(log_path(), std::move(vtpm));
  ASSERT_TRUE(log) << log.error().message();
  EXPECT_EQ(log->reconciliation().entries, 0U);
  ASSERT_TRUE(log->append(*first));
  ASSERT_TRUE(log->append(
      std::vector<imalog::Entry>{measurement("/bin/sh", 1), measurement("/bin/ls", 2)}));
  auto violation =
      imalog::make_violation("ima-ng", 10, "/tmp/changing", HashAlg::kSha256, HashAlg::kSha1);
  ASSERT_TRUE(violation);
  ASSERT_TRUE(log->append(*violation));
  EXPECT_EQ(log->entries(), 4U);
  expect_pcr_replays(log->vtpm(), log_path(), log->banks());

  // evmctl, independently, on PCR values read from the vTPM (all 24, as evmctl wants).
  std::ofstream sha1(temp_.file("sha1.pcrs"));
  std::ofstream sha256(temp_.file("sha256.pcrs"));
  for (auto [alg, out] : {std::pair{HashAlg::kSha1, &sha1}, std::pair{HashAlg::kSha256, &sha256}}) {
    auto sel = tpm::parse_pcr_list(std::string(crypto::hash_name(alg)) + ":all");
    ASSERT_TRUE(sel);
    auto values = log->vtpm().pcr_read(*sel);
    ASSERT_TRUE(values);
    for (unsigned i = 0; i < 24; ++i) {
      *out << "PCR-" << (i < 10 ? "0" : "") << i << ": " << values->values[i].hex() << "\n";
    }
    out->close();
  }
  if (std::system("command -v evmctl >/dev/null") != 0) {
    if (testing::in_ci()) FAIL() << "evmctl is required in CI";
    GTEST_SKIP() << "evmctl missing";
  }
  std::string cmd = "evmctl ima_measurement --ignore-violations --pcrs sha1," +
                    temp_.file("sha1.pcrs") + " --pcrs sha256," + temp_.file("sha256.pcrs") + " " +
                    log_path() + " >" + temp_.file("evmctl.out") + " 2>&1";
  int rc = std::system(cmd.c_str());
  std::ifstream out(temp_.file("evmctl.out"));
  std::string text((std::istreambuf_iterator<char>(out)), std::istreambuf_iterator<char>());
  EXPECT_EQ(rc, 0) << "evmctl rejected the log:\n" << text;
}

TEST_F(ContainerLogTest, ACrashBetweenWriteAndExtendIsRepairedOnOpen) {
  CTRUST_OPEN_SWTPM(vtpm);
  std::string tcti = vtpm.tcti();
  {
    auto log = ContainerLog::open(log_path(), std::move(vtpm));
    ASSERT_TRUE(log);
    ASSERT_TRUE(log->append(measurement("/bin/a", 1)));
  }
  {
    // The agent wrote two entries durably and died before extending them.
    auto writer = imalog::LogWriter::open(log_path());
    ASSERT_TRUE(writer);
    ASSERT_TRUE(writer->append(
        std::vector<imalog::Entry>{measurement("/bin/b", 2), measurement("/bin/c", 3)}));
  }
  expect_reopened(tcti, 3, 2);
}

TEST_F(ContainerLogTest, AVtpmOrLogChangedBehindTheAgentIsRefused) {
  CTRUST_OPEN_SWTPM(vtpm);
  std::string tcti = vtpm.tcti();
  {
    auto log = ContainerLog::open(log_path(), std::move(vtpm));
    ASSERT_TRUE(log);
    ASSERT_TRUE(log->append(measurement("/bin/a", 1)));
  }
  auto other = tpm::Tpm::open(tcti);
  ASSERT_TRUE(other);
  ASSERT_TRUE(other->pcr_extend_data(10, Bytes{1, 2, 3}));  // not in the log
  auto log = ContainerLog::open(log_path(), std::move(*other));
  ASSERT_FALSE(log);
  EXPECT_NE(log.error().message().find("matches no prefix"), std::string::npos)
      << log.error().message();
}

TEST_F(ContainerLogTest, AFreshLogOnAFreshVtpmReplaysAndIsReopenedLikeAnyOther) {
  CTRUST_OPEN_SWTPM(vtpm);
  std::string tcti = vtpm.tcti();
  {
    auto log = ContainerLog::create_fresh(log_path(), std::move(vtpm));
    ASSERT_TRUE(log) << log.error().message();
    ASSERT_TRUE(log->append(measurement("/bin/a", 1)));
    expect_pcr_replays(log->vtpm(), log_path(), log->banks());
  }
  auto again = tpm::Tpm::open(tcti);
  ASSERT_TRUE(again);
  // Never over an existing log: that one is reconciled by open().
  auto twice = ContainerLog::create_fresh(log_path(), std::move(*again));
  ASSERT_FALSE(twice);
  EXPECT_NE(twice.error().message().find("exists"), std::string::npos);
  auto third = tpm::Tpm::open(tcti);
  ASSERT_TRUE(third);
  auto reopened = ContainerLog::open(log_path(), std::move(*third));
  ASSERT_TRUE(reopened) << reopened.error().message();
  EXPECT_EQ(reopened->reconciliation().entries, 1U);
  EXPECT_EQ(reopened->reconciliation().extended_on_open, 0U);
}

// A start's entries (ContainerLog::defer): in the file at once, in the PCR only once
// settled, and always in log order, whoever appends next.
TEST_F(ContainerLogTest, DeferredEntriesAreWrittenAtOnceAndExtendedInOrderWhenSettled) {
  CTRUST_OPEN_SWTPM(vtpm);
  std::string tcti = vtpm.tcti();
  auto log = ContainerLog::create_fresh(log_path(), std::move(vtpm));
  ASSERT_TRUE(log) << log.error().message();
  auto zero = log->vtpm().pcr_read({tpm::PcrBank{HashAlg::kSha256, {10}}});
  ASSERT_TRUE(zero);
  log->defer();
  ASSERT_TRUE(
      log->append(std::vector<imalog::Entry>{measurement("/bin/a", 1), measurement("/bin/b", 2)}));
  ASSERT_TRUE(log->append(measurement("/bin/c", 3)));
  // Written, readable by anyone who reads the file, not yet vouched for by the PCR.
  EXPECT_EQ(log->written(), 3U);
  EXPECT_EQ(log->unsettled(), 3U);
  EXPECT_EQ(log->entries(), 0U);
  auto reader = imalog::BinaryReader::open(log_path());
  ASSERT_TRUE(reader);
  imalog::Entry e;
  int in_file = 0;
  while (*reader->next(e)) ++in_file;
  EXPECT_EQ(in_file, 3);
  auto still = log->vtpm().pcr_read({tpm::PcrBank{HashAlg::kSha256, {10}}});
  ASSERT_TRUE(still);
  EXPECT_EQ(still->values[0], zero->values[0]);

  ASSERT_TRUE(log->settle());
  EXPECT_EQ(log->unsettled(), 0U);
  EXPECT_EQ(log->entries(), 3U);
  expect_pcr_replays(log->vtpm(), log_path(), log->banks());
  // After settle(), appends are durable and extended at once again.
  ASSERT_TRUE(log->append(measurement("/bin/d", 4)));
  EXPECT_EQ(log->unsettled(), 0U);
  expect_pcr_replays(log->vtpm(), log_path(), log->banks());
  ASSERT_TRUE(log->settle());  // nothing left: a no-op

  // A second deferred start on the same log (an agent may defer again) settles the same way.
  log->defer();
  ASSERT_TRUE(log->append(measurement("/bin/e", 5)));
  EXPECT_EQ(log->unsettled(), 1U);
  ASSERT_TRUE(log->settle());
  EXPECT_EQ(log->entries(), 5U);
  expect_pcr_replays(log->vtpm(), log_path(), log->banks());
}

// The agent dies between writing a start's deferred entries and settling them: the next
// open() finds the log ahead of the PCR and extends the rest, as after any crash.
TEST_F(ContainerLogTest, DeferredEntriesOfAnAgentThatDiedAreExtendedOnOpen) {
  CTRUST_OPEN_SWTPM(vtpm);
  std::string tcti = vtpm.tcti();
  {
    auto log = ContainerLog::create_fresh(log_path(), std::move(vtpm));
    ASSERT_TRUE(log);
    ASSERT_TRUE(log->append(measurement("/bin/a", 1)));
    log->defer();
    ASSERT_TRUE(log->append(
        std::vector<imalog::Entry>{measurement("/bin/b", 2), measurement("/bin/c", 3)}));
    // Destroyed unsettled: what a crash leaves.
  }
  expect_reopened(tcti, 3, 2);
}

TEST_F(ContainerLogTest, EntriesForAnotherPcrAreRefused) {
  CTRUST_OPEN_SWTPM(vtpm);
  auto log = ContainerLog::open(log_path(), std::move(vtpm));
  ASSERT_TRUE(log);
  imalog::Entry e = measurement("/bin/a", 1);
  e.pcr = 11;
  EXPECT_FALSE(log->append(e));
  EXPECT_EQ(log->entries(), 0U);
}

TEST_F(ContainerLogTest, BootAggregateIsTheHashOfPcrs0To9) {
  CTRUST_OPEN_SWTPM(host);
  ASSERT_TRUE(host.pcr_extend_data(0, Bytes{'f', 'w'}));
  ASSERT_TRUE(host.pcr_extend_data(9, Bytes{'k'}));
  auto values = host.pcr_read({tpm::PcrBank{HashAlg::kSha256, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}}});
  ASSERT_TRUE(values);
  Bytes concat;
  for (const auto& v : values->values)
    concat.insert(concat.end(), v.view().begin(), v.view().end());
  auto want = crypto::digest_bytes(HashAlg::kSha256, concat);
  auto got = boot_aggregate(host, HashAlg::kSha256);
  ASSERT_TRUE(want && got);
  EXPECT_EQ(*got, *want);
  // SHA-1 covers PCR 0-7 only: PCR 9 does not change it.
  auto sha1_before = boot_aggregate(host, HashAlg::kSha1);
  ASSERT_TRUE(host.pcr_extend_data(9, Bytes{'x'}));
  auto sha1_after = boot_aggregate(host, HashAlg::kSha1);
  ASSERT_TRUE(sha1_before && sha1_after);
  EXPECT_EQ(*sha1_before, *sha1_after);
  EXPECT_NE(*boot_aggregate(host, HashAlg::kSha256), *got);
}

}  // namespace
}  // namespace ctrust::agent
