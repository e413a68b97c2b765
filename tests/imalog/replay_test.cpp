#include "imalog/replay.h"

#include <gtest/gtest.h>

#include "imalog/binary.h"
#include "test_util.h"

namespace ctrust::imalog {
namespace {

using testing::ng_entry;

Digest extend(HashAlg alg, const Digest& pcr, const Digest& td) {
  return *crypto::digest_concat(alg, pcr.view(), td.view());
}

TEST(Replay, GoldenPcrFromFormats) {
  Replayer r({HashAlg::kSha256, HashAlg::kSha1});
  ASSERT_EQ(*r.add(ng_entry("/usr/bin/hello", "hello\n")), EntryStatus::kOk);
  EXPECT_EQ(r.bank(HashAlg::kSha256)->values[10].hex(),
            "3ebd492c3dbe72cb38ee9970cd9314733898a89672d261c81fcf23bdf974faa5");
  EXPECT_EQ(r.bank(HashAlg::kSha256)->extended, 1u << 10);
  // SHA-1 bank: H(zero20 || sha1 template digest).
  Digest td = Digest::from_hex(HashAlg::kSha1, "c8acbfa06c0d5bf7696db445ba8489fa2393c0d5").value();
  EXPECT_EQ(r.bank(HashAlg::kSha1)->values[10],
            extend(HashAlg::kSha1, Digest::zero(HashAlg::kSha1), td));
  EXPECT_TRUE(r.bank(HashAlg::kSha1)->values[0].is_zero());
}

TEST(Replay, ViolationsExtendAllOnes) {
  Replayer r({HashAlg::kSha256, HashAlg::kSha384});
  auto v = make_violation("ima-ng", 11, "/tmp/x", HashAlg::kSha256, HashAlg::kSha1);
  ASSERT_EQ(*r.add(*v), EntryStatus::kViolation);
  for (HashAlg alg : {HashAlg::kSha256, HashAlg::kSha384}) {
    Digest ff = Digest::zero(alg);
    std::fill(ff.bytes.begin(), ff.bytes.begin() + static_cast<std::ptrdiff_t>(ff.size()), 0xff);
    EXPECT_EQ(r.bank(alg)->values[11], extend(alg, Digest::zero(alg), ff));
  }
  // A "violation" whose file digest is not zero is a forged record.
  Entry forged = ng_entry("/a", "a");
  forged.template_digest = Digest::zero(HashAlg::kSha1);
  EXPECT_FALSE(r.add(forged).ok());
}

TEST(Replay, TamperedRecordsAreFlaggedByTheTemplateRecheck) {
  Replayer r({HashAlg::kSha256});
  Entry e = ng_entry("/usr/bin/hello", "hello\n");
  e.data[20] ^= 1;  // one bit of the file digest
  EXPECT_EQ(*r.add(e), EntryStatus::kBadTemplateDigest);
  Entry h = ng_entry("/usr/bin/hello", "hello\n");
  h.template_digest.bytes[0] ^= 1;  // the logged digest instead
  EXPECT_EQ(*r.add(h), EntryStatus::kBadTemplateDigest);
}

Bytes log_bytes(const std::vector<Entry>& entries) {
  Bytes out;
  for (const Entry& e : entries) EXPECT_TRUE(append_binary(out, e).ok());
  return out;
}

SourceFactory memory_source(const Bytes& bytes) {
  return [&bytes]() -> Result<std::unique_ptr<EntrySource>> {
    CTRUST_ASSIGN_OR_RETURN(BinaryReader r, BinaryReader::from_memory(bytes));
    return std::unique_ptr<EntrySource>(std::make_unique<BinaryReader>(std::move(r)));
  };
}

ExpectedPcrs expected_from(const Replayer& r) {
  ExpectedPcrs out;
  for (const PcrBank& b : r.banks()) {
    for (std::uint32_t i = 0; i < kNumPcrs; ++i) out[b.alg][i] = b.values[i];
  }
  return out;
}

TEST(Verify, AcceptsAMatchingLogAndExplainsMismatches) {
  std::vector<Entry> entries = {
      ng_entry("/a", "a"), ng_entry("/b", "b"),
      *make_violation("ima-ng", 10, "/v", HashAlg::kSha256, HashAlg::kSha1)};
  MeasurementSpec spec;
  spec.pcr = 11;
  spec.name = "/c";
  entries.push_back(*make_entry(spec, HashAlg::kSha1));
  Bytes bytes = log_bytes(entries);
  Replayer truth({HashAlg::kSha1, HashAlg::kSha256});
  for (const Entry& e : entries) ASSERT_TRUE(truth.add(e).ok());
  ExpectedPcrs expected = expected_from(truth);

  auto rep = verify_log(memory_source(bytes), expected);
  ASSERT_TRUE(rep.ok()) << rep.error().message();
  EXPECT_TRUE(rep->ok());
  EXPECT_EQ(rep->entries, 4u);
  EXPECT_EQ(rep->violations, 1u);
  EXPECT_EQ(rep->violation_entries, std::vector<std::uint64_t>{3});

  // A wrong expected value names the bank and the PCR.
  expected[HashAlg::kSha256][11].bytes[5] ^= 1;
  rep = verify_log(memory_source(bytes), expected);
  ASSERT_TRUE(rep.ok());
  EXPECT_FALSE(rep->ok());
  ASSERT_EQ(rep->mismatches.size(), 1u);
  EXPECT_EQ(rep->mismatches[0].bank, HashAlg::kSha256);
  EXPECT_EQ(rep->mismatches[0].pcr, 11u);
  EXPECT_TRUE(rep->sha1_padded_banks.empty());

  // A PCR the log extends but the PCR file lacks is a failure, not a pass.
  expected = expected_from(truth);
  expected[HashAlg::kSha1].erase(10);
  rep = verify_log(memory_source(bytes), expected);
  ASSERT_TRUE(rep.ok());
  ASSERT_EQ(rep->mismatches.size(), 1u);
  EXPECT_FALSE(rep->mismatches[0].expected.has_value());
}

// A PCR the log is the record of, given by the PCR file but never extended by the log,
// must be all zeros: an emptied log against an extended PCR 10 fails (as evmctl's does).
TEST(Verify, APcrTheLogNeverExtendsMustBeZero) {
  std::vector<Entry> entries = {ng_entry("/a", "a")};
  Replayer truth({HashAlg::kSha256});
  for (const Entry& e : entries) ASSERT_TRUE(truth.add(e).ok());
  ExpectedPcrs expected = expected_from(truth);  // PCR 10 extended, the others zero
  Bytes empty;
  auto rep = verify_log(memory_source(empty), expected);
  ASSERT_TRUE(rep.ok()) << rep.error().message();
  EXPECT_FALSE(rep->ok());
  ASSERT_EQ(rep->mismatches.size(), 1u);
  EXPECT_EQ(rep->mismatches[0].pcr, 10u);
  EXPECT_TRUE(rep->mismatches[0].never_extended);
  EXPECT_TRUE(rep->mismatches[0].replayed.is_zero());
  ASSERT_TRUE(rep->mismatches[0].expected.has_value());
  EXPECT_EQ(*rep->mismatches[0].expected, expected[HashAlg::kSha256][10]);
  // Zero values for it are what an empty log means: fine.
  expected[HashAlg::kSha256][10] = Digest::zero(HashAlg::kSha256);
  rep = verify_log(memory_source(empty), expected);
  ASSERT_TRUE(rep.ok());
  EXPECT_TRUE(rep->ok());
  // A PCR that is not the log's (a boot PCR of a tpm2_pcrread file) is not its business,
  // unless the caller says it is.
  expected = expected_from(truth);
  expected[HashAlg::kSha256][0].bytes[0] = 1;
  rep = verify_log(memory_source(log_bytes(entries)), expected);
  ASSERT_TRUE(rep.ok());
  EXPECT_TRUE(rep->ok());
  rep = verify_log(memory_source(log_bytes(entries)), expected, {}, {}, kImaPcrMask | 1u);
  ASSERT_TRUE(rep.ok());
  EXPECT_FALSE(rep->ok());
  ASSERT_EQ(rep->mismatches.size(), 1u);
  EXPECT_EQ(rep->mismatches[0].pcr, 0u);
  EXPECT_TRUE(rep->mismatches[0].never_extended);
}

TEST(Verify, DroppedOrReorderedEntriesFail) {
  std::vector<Entry> entries = {ng_entry("/a", "a"), ng_entry("/b", "b"), ng_entry("/c", "c")};
  Replayer truth({HashAlg::kSha256});
  for (const Entry& e : entries) ASSERT_TRUE(truth.add(e).ok());
  ExpectedPcrs expected = expected_from(truth);
  Bytes dropped = log_bytes({entries[0], entries[2]});
  EXPECT_FALSE(verify_log(memory_source(dropped), expected)->ok());
  Bytes swapped = log_bytes({entries[1], entries[0], entries[2]});
  EXPECT_FALSE(verify_log(memory_source(swapped), expected)->ok());
  Bytes flipped = log_bytes(entries);
  flipped[flipped.size() - 3] ^= 0x20;  // one byte of the last name
  auto rep = verify_log(memory_source(flipped), expected);
  ASSERT_TRUE(rep.ok());
  EXPECT_FALSE(rep->ok());
  EXPECT_EQ(rep->bad_template_entries, std::vector<std::uint64_t>{3});
}

// Kernels that lack a bank's hash extend it with the SHA-1 template digest zero-padded.
TEST(Verify, AcceptsTheSha1PaddedVariantAndSaysSo) {
  std::vector<Entry> entries = {ng_entry("/a", "a"), ng_entry("/b", "b")};
  Replayer padded({HashAlg::kSha256}, {HashAlg::kSha256});
  for (const Entry& e : entries) ASSERT_TRUE(padded.add(e).ok());
  Digest manual = Digest::zero(HashAlg::kSha256);
  for (const Entry& e : entries) {
    Digest td = Digest::zero(HashAlg::kSha256);
    std::copy_n(e.template_digest.bytes.begin(), 20, td.bytes.begin());
    manual = extend(HashAlg::kSha256, manual, td);
  }
  EXPECT_EQ(padded.bank(HashAlg::kSha256)->values[10], manual);

  Bytes bytes = log_bytes(entries);
  auto rep = verify_log(memory_source(bytes), expected_from(padded));
  ASSERT_TRUE(rep.ok());
  EXPECT_TRUE(rep->ok());
  EXPECT_EQ(rep->sha1_padded_banks, std::vector<HashAlg>{HashAlg::kSha256});
}

TEST(PcrFile, ParsesEvmctlAndTpm2PcrreadForms) {
  Replayer r({HashAlg::kSha256});
  ASSERT_TRUE(r.add(ng_entry("/a", "a")).ok());
  std::string lines = format_pcr_lines(*r.bank(HashAlg::kSha256));
  EXPECT_EQ(lines.substr(0, 8), "PCR-00: ");
  auto parsed = parse_pcr_file(lines, std::nullopt);
  ASSERT_TRUE(parsed.ok()) << parsed.error().message();
  EXPECT_EQ(parsed->at(HashAlg::kSha256).size(), 24u);
  EXPECT_EQ(parsed->at(HashAlg::kSha256).at(10), r.bank(HashAlg::kSha256)->values[10]);

  std::string pcrread =
      "sha1:\n"
      "  10: 0x" +
      std::string(40, 'A') +
      "\n"
      "sha256:\n"
      "  0 : 0x" +
      std::string(64, '0') +
      "\n"
      "  10: 0x" +
      std::string(64, 'b') + "\n";
  parsed = parse_pcr_file(pcrread, std::nullopt);
  ASSERT_TRUE(parsed.ok()) << parsed.error().message();
  EXPECT_EQ(parsed->at(HashAlg::kSha1).at(10).hex(), std::string(40, 'a'));
  EXPECT_EQ(parsed->at(HashAlg::kSha256).size(), 2u);
}

TEST(PcrFile, RejectsMalformedFiles) {
  const std::string h64(64, 'a');
  struct Case {
    std::string text;
    std::optional<HashAlg> bank;
    std::string needle;
  };
  std::vector<Case> cases = {
      {"", std::nullopt, "no PCR values"},
      {"PCR-10 " + h64, std::nullopt, "expected PCR-NN"},
      {"PCR-xx: " + h64, std::nullopt, "bad PCR number"},
      {"PCR-24: " + h64, std::nullopt, "out of range"},
      {"PCR-10: " + h64 + "\nPCR-10: " + h64, std::nullopt, "given twice"},
      {"PCR-10: abc", std::nullopt, "does not fit"},
      {"PCR-10: " + h64, HashAlg::kSha1, "does not fit the sha1 bank"},
      {"PCR-10: " + std::string(62, 'a') + "zz", std::nullopt, "not a hex digit"},
      {"md5:\n  1: 0x00", std::nullopt, "unknown bank"},
      {"hello world", std::nullopt, "expected"},
  };
  for (const Case& c : cases) {
    auto r = parse_pcr_file(c.text, c.bank);
    ASSERT_FALSE(r.ok()) << c.text.substr(0, 80);
    EXPECT_NE(r.error().message().find(c.needle), std::string::npos)
        << c.text.substr(0, 80) << " -> " << r.error().message();
  }
}

}  // namespace
}  // namespace ctrust::imalog
