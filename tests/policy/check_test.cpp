// Judging measurement lists against a policy: one verdict per kind of entry, and counts.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "imalog/entry.h"
#include "imalog/log_writer.h"
#include "policy/check.h"
#include "policy/test_util.h"
#include "support/temp_dir.h"

namespace ctrust::policy {
namespace {

using crypto::Digest;
using crypto::HashAlg;
using imalog::Entry;
using testing::digest_of;
using testing::VectorSource;

Entry measured(const std::string& name, const std::string& content,
               const std::string& tmpl = "ima-ng", HashAlg file_alg = HashAlg::kSha256,
               HashAlg header = HashAlg::kSha1) {
  imalog::MeasurementSpec spec;
  spec.template_name = tmpl;
  spec.name = name;
  spec.file_digest = digest_of(content, tmpl == "ima" ? HashAlg::kSha1 : file_alg);
  if (tmpl == "ima-buf") spec.buf = Bytes(content.begin(), content.end());
  if (tmpl == "ima-sig") spec.sig = {0x03, 0x02, 0x04, 0xaa, 0xbb, 0xcc, 0xdd, 0x00, 0x01, 0x55};
  auto e = imalog::make_entry(spec, header);
  EXPECT_TRUE(e.ok()) << e.error().message();
  return *e;
}

Entry violation(const std::string& name) {
  auto e = imalog::make_violation("ima-ng", 10, name, HashAlg::kSha256, HashAlg::kSha1);
  EXPECT_TRUE(e.ok());
  return *e;
}

CompiledPolicy sample_compiled() {
  Policy p;
  p.name = "check";
  p.issuer = "tests";
  p.not_before = testing::kJan2026;
  p.not_after = testing::kJan2027;
  p.allow.push_back({digest_of("busybox"), {}});
  p.allow.push_back({digest_of("app"), {"/usr/bin/app"}});
  p.allow.push_back({digest_of("legacy", HashAlg::kSha1), {"/bin/legacy"}});
  p.allow.push_back({digest_of("big", HashAlg::kSha512), {"/bin/big"}});
  p.excludes = {"/tmp/"};
  auto c = CompiledPolicy::compile(p);
  EXPECT_TRUE(c.ok()) << c.error().message();
  return std::move(*c);
}

LogJudgement judge(std::vector<Entry> entries) {
  VectorSource src(std::move(entries));
  auto j = judge_log(src, sample_compiled());
  EXPECT_TRUE(j.ok()) << j.error().message();
  return j.ok() ? *j : LogJudgement{};
}

TEST(JudgeLog, EmptyLogConforms) {
  LogJudgement j = judge({});
  EXPECT_TRUE(j.conforms());
  EXPECT_EQ(j.entries, 0u);
}

TEST(JudgeLog, AllowedEntries) {
  LogJudgement j =
      judge({measured("/bin/busybox", "busybox"), measured("/bin/sh", "busybox"),
             measured("/usr/bin/app", "app"), measured("/bin/legacy", "legacy", "ima"),
             measured("/bin/big", "big", "ima-ng", HashAlg::kSha512),
             measured("/usr/bin/app", "app", "ima-sig"),
             measured("/bin/busybox", "busybox", "ima-ng", HashAlg::kSha256, HashAlg::kSha256)});
  EXPECT_TRUE(j.conforms()) << j.violations.front().rule << " " << j.violations.front().path;
  EXPECT_EQ(j.entries, 7u);
  EXPECT_EQ(j.allowed, 7u);
  EXPECT_EQ(j.excluded, 0u);
  EXPECT_EQ(j.skipped, 0u);
}

TEST(JudgeLog, EveryKindOfEntry) {
  Entry altered = measured("/usr/bin/app", "app");
  // Change one byte of the logged file digest: the template digest no longer matches.
  altered.data[4 + 8 + 3] ^= 0x01;
  Entry renamed = measured("/usr/bin/app", "app");
  renamed.data[renamed.data.size() - 2] ^= 0x01;  // last character of the name
  std::vector<Entry> log = {
      measured("boot_aggregate", "boot"),                       // 0 skipped
      measured("/bin/busybox", "busybox"),                      // 1 allowed
      measured("/tmp/build/x", "scratch"),                      // 2 excluded
      measured("/usr/bin/evil", "evil"),                        // 3 unknown-digest
      measured("/usr/local/bin/app", "app"),                    // 4 wrong-path
      violation("/usr/bin/app"),                                // 5 violation-record
      altered,                                                  // 6 template-digest
      measured("kernel_cmdline", "ro quiet", "ima-buf"),        // 7 skipped
      renamed,                                                  // 8 template-digest
      measured("/bin/legacy", "legacy", "ima"),                 // 9 allowed
      measured("/bin/legacy2", "legacy", "ima"),                // 10 wrong-path
      measured("/bin/big", "big", "ima-ng", HashAlg::kSha384),  // 11 unknown (other alg)
  };
  LogJudgement j = judge(log);
  EXPECT_FALSE(j.conforms());
  EXPECT_EQ(j.entries, 12u);
  EXPECT_EQ(j.allowed, 2u);
  EXPECT_EQ(j.excluded, 1u);
  EXPECT_EQ(j.skipped, 2u);
  ASSERT_EQ(j.violations.size(), 7u);
  struct Want {
    std::uint64_t index;
    std::string rule;
    std::string path;
    std::string reason_part;
  };
  std::vector<Want> want = {
      {3, "unknown-digest", "/usr/bin/evil", "not in the policy"},
      {4, "wrong-path", "/usr/local/bin/app", "only at /usr/bin/app"},
      {5, "violation-record", "/usr/bin/app", "violation"},
      {6, "template-digest", "/usr/bin/app", "altered"},
      {8, "template-digest", "/usr/bin/apq", "altered"},
      {10, "wrong-path", "/bin/legacy2", "/bin/legacy"},
      {11, "unknown-digest", "/bin/big", "not in the policy"},
  };
  for (std::size_t i = 0; i < want.size(); ++i) {
    SCOPED_TRACE(i);
    const Violation& v = j.violations[i];
    EXPECT_EQ(v.index, want[i].index);
    EXPECT_EQ(v.rule, want[i].rule);
    EXPECT_EQ(v.path, want[i].path);
    EXPECT_NE(v.reason.find(want[i].reason_part), std::string::npos) << v.reason;
  }
  EXPECT_EQ(j.violations[0].digest, "sha256:" + digest_of("evil").hex());
  EXPECT_EQ(j.violations[1].digest, "sha256:" + digest_of("app").hex());
  EXPECT_EQ(j.violations[5].digest, "sha1:" + digest_of("legacy", HashAlg::kSha1).hex());
  EXPECT_EQ(j.violations[6].digest, "sha384:" + digest_of("big", HashAlg::kSha384).hex());
}

TEST(JudgeLog, AlteredBootAggregateIsNotSkipped) {
  // The template digest is checked before an entry is skipped as not a file.
  Entry boot = measured("boot_aggregate", "boot");
  boot.data[4 + 8] ^= 0x80;
  LogJudgement j = judge({boot});
  ASSERT_EQ(j.violations.size(), 1u);
  EXPECT_EQ(j.violations[0].rule, "template-digest");
  EXPECT_EQ(j.skipped, 0u);
}

// BUG (reported, left failing on purpose): judge_log skips every entry named
// "boot_aggregate", wherever it is in the log and whatever its digest. The kernel logs the
// boot aggregate once, as the first entry; a later file measurement gets a bare name (the
// dentry name instead of the path) when d_path() fails, e.g. for a path longer than PATH_MAX,
// so a program called "boot_aggregate" run from a deep directory is never judged.
TEST(JudgeLog, OnlyTheFirstEntryIsTheBootAggregate) {
  LogJudgement j = judge({measured("boot_aggregate", "boot"), measured("/bin/busybox", "busybox"),
                          measured("boot_aggregate", "malware")});
  EXPECT_EQ(j.skipped, 1u) << "a second boot_aggregate entry was skipped, not judged";
  EXPECT_FALSE(j.conforms()) << "an unknown program named boot_aggregate passed the policy";
}

TEST(JudgeLog, AnExcludedPathDoesNotHideAViolationRecord) {
  LogJudgement j = judge({violation("/tmp/x")});
  ASSERT_EQ(j.violations.size(), 1u);
  EXPECT_EQ(j.violations[0].rule, "violation-record");
  EXPECT_EQ(j.excluded, 0u);
}

TEST(JudgeLog, MalformedEntryIsAnErrorNamingIt) {
  Entry bad = measured("/bin/busybox", "busybox");
  bad.data.resize(3);
  VectorSource src({measured("/bin/busybox", "busybox"), bad});
  auto j = judge_log(src, sample_compiled());
  ASSERT_FALSE(j.ok());
  EXPECT_NE(j.error().message().find("entry 1"), std::string::npos) << j.error().message();
}

TEST(JudgeLog, ReadsABinaryLogFile) {
  ctrust::testing::TempDir tmp;
  std::string path = tmp.file("log");
  imalog::LogWriterOptions o;
  o.header_alg = HashAlg::kSha1;
  auto w = imalog::LogWriter::open(path, o);
  ASSERT_TRUE(w.ok()) << w.error().message();
  std::vector<Entry> entries = {measured("/bin/busybox", "busybox"),
                                measured("/usr/bin/nope", "nope"), violation("/x")};
  ASSERT_TRUE(w->append(entries).ok());
  auto src = imalog::open_log(path);
  ASSERT_TRUE(src.ok()) << src.error().message();
  auto j = judge_log(**src, sample_compiled());
  ASSERT_TRUE(j.ok()) << j.error().message();
  EXPECT_EQ(j->entries, 3u);
  EXPECT_EQ(j->allowed, 1u);
  ASSERT_EQ(j->violations.size(), 2u);
  EXPECT_EQ(j->violations[0].rule, "unknown-digest");
  EXPECT_EQ(j->violations[0].index, 1u);
  EXPECT_EQ(j->violations[1].rule, "violation-record");
}

}  // namespace
}  // namespace ctrust::policy
