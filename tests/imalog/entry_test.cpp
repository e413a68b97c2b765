#include "imalog/entry.h"

#include <gtest/gtest.h>

#include <cstring>

#include "test_util.h"
#include "util/endian.h"

namespace ctrust::imalog {
namespace {

using testing::ng_entry;

// FORMATS.md, "Worked example (ima-ng, SHA-256)".
TEST(Entry, GoldenVectorFromFormats) {
  Entry e = ng_entry("/usr/bin/hello", "hello\n", HashAlg::kSha1);
  EXPECT_EQ(to_hex(e.data),
            "28000000"
            "7368613235363a00"
            "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
            "0f000000"
            "2f7573722f62696e2f68656c6c6f00");
  EXPECT_EQ(e.data.size(), 63u);
  EXPECT_EQ(e.template_digest.hex(), "c8acbfa06c0d5bf7696db445ba8489fa2393c0d5");
  EXPECT_EQ(template_digest(e, HashAlg::kSha256)->hex(),
            "dfa612432aebcb7ffb5ccea2b973b1de828d91e19f989f8dc99b2b414a99b26c");
  auto f = parse_fields(e);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->digest_alg, "sha256");
  EXPECT_EQ(f->name, "/usr/bin/hello");
  EXPECT_EQ(f->file_digest_value()->hex(),
            "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03");
}

TEST(Entry, SpacesInNamesBecomeUnderscoresAsInTheKernel) {
  Entry e = ng_entry("/opt/my app/run", "x");
  EXPECT_EQ(parse_fields(e)->name, "/opt/my_app/run");
}

TEST(Entry, LegacyImaTemplateHashesNamePaddedTo256) {
  Entry e = ng_entry("/bin/sh", "shell", HashAlg::kSha1, "ima");
  ASSERT_EQ(e.data.size(), 20u + 4u + 7u);
  std::uint8_t buf[276] = {};
  Digest fd = *crypto::digest_bytes(HashAlg::kSha1, as_bytes("shell"));
  std::memcpy(buf, fd.bytes.data(), 20);
  std::memcpy(buf + 20, "/bin/sh", 7);
  EXPECT_EQ(e.template_digest, *crypto::digest_bytes(HashAlg::kSha1, ByteView(buf, sizeof(buf))));
  auto f = parse_fields(e);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->name, "/bin/sh");
  EXPECT_EQ(f->digest_alg, "sha1");
  // The legacy template only carries SHA-1 file digests.
  MeasurementSpec spec;
  spec.template_name = "ima";
  spec.name = "x";
  EXPECT_FALSE(make_entry(spec, HashAlg::kSha1).ok());
}

TEST(Entry, SigAndBufFieldsParse) {
  Entry sig = ng_entry("/bin/true", "t", HashAlg::kSha256, "ima-sig");
  auto f = parse_fields(sig);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->sig.size(), 10u);
  Entry buf = ng_entry("kexec-cmdline", "root=/dev/sda1", HashAlg::kSha256, "ima-buf");
  f = parse_fields(buf);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(std::string(f->buf.begin(), f->buf.end()), "root=/dev/sda1");
}

TEST(Entry, ViolationRecordsHaveZeroDigests) {
  auto v = make_violation("ima-ng", 10, "/tmp/x", HashAlg::kSha256, HashAlg::kSha1);
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->is_violation());
  auto f = parse_fields(*v);
  ASSERT_TRUE(f.ok());
  EXPECT_TRUE(f->file_digest_value()->is_zero());
  EXPECT_EQ(f->digest_alg, "sha256");
}

TEST(Entry, MalformedTemplateDataIsRejectedWithTheField) {
  Entry good = ng_entry("/a", "a");
  auto expect_bad = [](Entry e, const std::string& needle) {
    auto f = parse_fields(e);
    ASSERT_FALSE(f.ok()) << needle;
    EXPECT_NE(f.error().message().find(needle), std::string::npos) << f.error().message();
  };
  Entry e = good;
  e.data.pop_back();  // name loses its NUL and the length runs past the end
  expect_bad(e, "n-ng");
  e = good;
  e.data.push_back(0);
  expect_bad(e, "after the last field");
  e = good;
  e.data[4 + 6] = 'X';  // "sha256:" loses its colon
  expect_bad(e, "d-ng");
  e = good;
  store_le32(e.data.data(), 0xffffffffu);
  expect_bad(e, "runs past");
  e = good;
  e.data[e.data.size() - 2] = 0;  // embedded NUL in the name
  expect_bad(e, "embedded NUL");
  e = good;
  e.template_name = "ima-foo";
  expect_bad(e, "unknown template");
  // A known algorithm with the wrong digest length.
  e = good;
  e.data.clear();
  append_le32(e.data, 8 + 20);
  for (char c : std::string("sha256:")) e.data.push_back(static_cast<std::uint8_t>(c));
  e.data.push_back(0);
  e.data.insert(e.data.end(), 20, 0xab);
  append_le32(e.data, 3);
  for (char c : std::string("/x")) e.data.push_back(static_cast<std::uint8_t>(c));
  e.data.push_back(0);
  expect_bad(e, "expected 32");
  // An algorithm we do not know is carried, not rejected (the kernel has more than four).
  e.data[4 + 3] = 'X';  // "shaX56:"
  EXPECT_TRUE(parse_fields(e).ok());
}

// ima-ngv2: "type:alg:" NUL digest. An empty type once printed as "alg:hex" in the ASCII
// form, which then did not parse back (found by fuzz_ascii_reader).
TEST(Entry, DigestTypeOfNgV2MustBeAWord) {
  auto make = [](const std::string& prefix) {
    Entry e;
    e.template_name = "ima-ngv2";
    append_le32(e.data, static_cast<std::uint32_t>(prefix.size() + 1 + 32));
    e.data.insert(e.data.end(), prefix.begin(), prefix.end());
    e.data.push_back(0);
    e.data.insert(e.data.end(), 32, 0x11);
    append_le32(e.data, 3);
    e.data.insert(e.data.end(), {'/', 'x', 0});
    return e;
  };
  Entry ng = make("ima:sha256:");  // Fields are views into it: keep it alive
  auto good = parse_fields(ng);
  ASSERT_TRUE(good.ok()) << good.error().message();
  EXPECT_EQ(good->digest_type, "ima");
  EXPECT_EQ(good->digest_alg, "sha256");
  EXPECT_TRUE(parse_fields(make("verity:sha256:")).ok());
  for (const char* bad : {":sha256:", "i a:sha256:", "ima::", "sha256:"}) {
    EXPECT_FALSE(parse_fields(make(bad)).ok()) << bad;
  }
}

TEST(Entry, BuildersRejectBadInput) {
  MeasurementSpec spec;
  spec.name = "/x";
  spec.pcr = 24;
  EXPECT_FALSE(make_entry(spec, HashAlg::kSha1).ok());
  spec.pcr = 10;
  spec.name = std::string(5000, 'a');
  EXPECT_FALSE(make_entry(spec, HashAlg::kSha1).ok());
  spec.name = "a\nb";
  EXPECT_FALSE(make_entry(spec, HashAlg::kSha1).ok());
  spec.name = "/x";
  spec.template_name = "nope";
  EXPECT_FALSE(make_entry(spec, HashAlg::kSha1).ok());
}

}  // namespace
}  // namespace ctrust::imalog
