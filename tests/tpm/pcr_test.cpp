#include "tpm/pcr.h"

#include <gtest/gtest.h>

namespace ctrust::tpm {
namespace {

using crypto::HashAlg;

TEST(PcrList, ParsesBanksIndicesAndRanges) {
  auto sel = parse_pcr_list("sha256:16,10+sha1:0-2");
  ASSERT_TRUE(sel) << sel.error().message();
  ASSERT_EQ(sel->size(), 2U);
  EXPECT_EQ((*sel)[0].alg, HashAlg::kSha256);
  EXPECT_EQ((*sel)[0].pcrs, (std::vector<unsigned>{10, 16}));
  EXPECT_EQ((*sel)[1].pcrs, (std::vector<unsigned>{0, 1, 2}));
  EXPECT_EQ(format_pcr_list(*sel), "sha256:10,16+sha1:0,1,2");
  auto all = parse_pcr_list("sha384:all");
  ASSERT_TRUE(all);
  EXPECT_EQ((*all)[0].pcrs.size(), 24U);
}

TEST(PcrList, RejectsMalformedLists) {
  for (const char* bad : {"", "sha256", "sha256:24", "md5:1", "sha256:1,,2", "sha256:3-1",
                          "sha256:1+sha256:2", "sha256:-1", "sha256:1x"}) {
    EXPECT_FALSE(parse_pcr_list(bad)) << bad;
  }
}

TEST(PcrList, TpmlRoundTrip) {
  auto sel = parse_pcr_list("sha1:0,7,23+sha256:10");
  ASSERT_TRUE(sel);
  TPML_PCR_SELECTION tpml = to_tpml(*sel);
  EXPECT_EQ(tpml.count, 2U);
  EXPECT_EQ(tpml.pcrSelections[0].pcrSelect[0], 0x81);
  EXPECT_EQ(tpml.pcrSelections[0].pcrSelect[2], 0x80);
  auto back = from_tpml(tpml);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, *sel);
}

PcrValues sample_values(std::size_t n) {
  PcrValues v;
  PcrBank bank{HashAlg::kSha256, {}};
  for (unsigned i = 0; i < n; ++i) bank.pcrs.push_back(i);
  v.selection = {bank, PcrBank{HashAlg::kSha1, {23}}};
  for (unsigned i = 0; i < n; ++i) {
    crypto::Digest d = crypto::Digest::zero(HashAlg::kSha256);
    d.bytes[0] = static_cast<std::uint8_t>(i + 1);
    v.values.push_back(d);
  }
  crypto::Digest sha1 = crypto::Digest::zero(HashAlg::kSha1);
  sha1.bytes[19] = 0xee;
  v.values.push_back(sha1);
  return v;
}

TEST(PcrFile, RoundTripsAndHasTpm2ToolsLayout) {
  for (std::size_t n : {1U, 7U, 8U, 17U}) {
    PcrValues v = sample_values(n);
    Bytes file = encode_pcr_file(v);
    std::size_t lists = (n + 1 + 7) / 8;
    EXPECT_EQ(file.size(), 4 + 16 * 8 + 4 + lists * (4 + 8 * 66)) << n;
    auto back = decode_pcr_file(file);
    ASSERT_TRUE(back) << back.error().message();
    EXPECT_EQ(*back, v);
  }
}

TEST(PcrFile, RejectsMalformedFiles) {
  PcrValues v = sample_values(3);
  Bytes file = encode_pcr_file(v);
  // Truncated anywhere.
  for (std::size_t cut : {0UL, 3UL, 100UL, file.size() - 1}) {
    EXPECT_FALSE(decode_pcr_file(ByteView(file.data(), cut))) << cut;
  }
  // Trailing bytes.
  Bytes longer = file;
  longer.push_back(0);
  EXPECT_FALSE(decode_pcr_file(longer));
  // A digest of the wrong size for its bank.
  Bytes wrong = file;
  wrong[4 + 128 + 4 + 4] = 20;
  EXPECT_FALSE(decode_pcr_file(wrong));
  // More values than selected PCRs.
  Bytes more = file;
  more[4 + 128 + 4] = 5;
  EXPECT_FALSE(decode_pcr_file(more));
  // Too many banks.
  Bytes banks = file;
  banks[0] = 17;
  EXPECT_FALSE(decode_pcr_file(banks));
}

TEST(PcrDigest, HashesValuesInOrder) {
  PcrValues v = sample_values(2);
  auto d = pcr_digest(HashAlg::kSha256, v);
  ASSERT_TRUE(d);
  Bytes concat;
  for (const auto& value : v.values)
    concat.insert(concat.end(), value.view().begin(), value.view().end());
  auto want = crypto::digest_bytes(HashAlg::kSha256, concat);
  ASSERT_TRUE(want);
  EXPECT_EQ(*d, *want);
}

}  // namespace
}  // namespace ctrust::tpm
