#include "imalog/ascii.h"

#include <gtest/gtest.h>

#include "imalog/binary.h"
#include "test_util.h"

namespace ctrust::imalog {
namespace {

using testing::ng_entry;

bool same(const Entry& a, const Entry& b) {
  return a.pcr == b.pcr && a.template_name == b.template_name && a.data == b.data &&
         a.template_digest == b.template_digest;
}

TEST(Ascii, GoldenLineIsWhatTheKernelPrints) {
  std::string line;
  ASSERT_TRUE(append_ascii(line, ng_entry("/usr/bin/hello", "hello\n")).ok());
  EXPECT_EQ(line,
            "10 c8acbfa06c0d5bf7696db445ba8489fa2393c0d5 ima-ng "
            "sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03 "
            "/usr/bin/hello\n");
}

TEST(Ascii, RoundTripsEveryTemplateThroughBinary) {
  std::vector<Entry> entries = {
      ng_entry("/usr/bin/hello", "hello\n"),
      ng_entry("/bin/true", "t", HashAlg::kSha1, "ima-sig"),
      ng_entry("kexec-cmdline", "ro quiet", HashAlg::kSha1, "ima-buf"),
      ng_entry("/bin/sh", "sh", HashAlg::kSha1, "ima"),
      *make_violation("ima-ng", 10, "/tmp/v", HashAlg::kSha256, HashAlg::kSha1),
      *make_violation("ima-sig", 11, "/tmp/w", HashAlg::kSha512, HashAlg::kSha512),
  };
  std::string text;
  for (const Entry& e : entries) ASSERT_TRUE(append_ascii(text, e).ok());
  AsciiReader r = AsciiReader::from_memory(as_bytes(text));
  Entry e;
  Bytes binary;
  for (const Entry& want : entries) {
    auto more = r.next(e);
    ASSERT_TRUE(more.ok()) << more.error().message();
    ASSERT_TRUE(*more);
    EXPECT_TRUE(same(e, want)) << e.template_name;
    ASSERT_TRUE(append_binary(binary, e).ok());
  }
  EXPECT_FALSE(*r.next(e));
  // ASCII -> binary -> ASCII gives the same text.
  auto br = BinaryReader::from_memory(binary, BinaryFormat{HashAlg::kSha1, ByteOrder::kLittle});
  ASSERT_TRUE(br.ok());
  // Mixed header sizes cannot share one binary file; the first five use SHA-1 headers.
  std::string again;
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(*br->next(e));
    ASSERT_TRUE(append_ascii(again, e).ok());
  }
  EXPECT_EQ(again, text.substr(0, again.size()));
}

TEST(Ascii, ParsesKernelQuirks) {
  // "%2d" pads single-digit PCRs; an empty signature leaves a trailing space.
  MeasurementSpec spec;
  spec.template_name = "ima-sig";
  spec.pcr = 8;
  spec.name = "/bin/x";
  spec.file_digest = *crypto::digest_bytes(HashAlg::kSha256, as_bytes("x"));
  Entry e = *make_entry(spec, HashAlg::kSha1);
  std::string line;
  ASSERT_TRUE(append_ascii(line, e).ok());
  EXPECT_EQ(line.substr(0, 3), " 8 ");
  EXPECT_EQ(line.substr(line.size() - 2), " \n");
  auto back = parse_ascii_line(std::string_view(line).substr(0, line.size() - 1));
  ASSERT_TRUE(back.ok()) << back.error().message();
  EXPECT_TRUE(same(*back, e));
  // The same line without the trailing space is accepted as an empty signature too.
  back = parse_ascii_line(std::string_view(line).substr(0, line.size() - 2));
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(same(*back, e));
}

TEST(Ascii, NamesTheAsciiFormCannotHoldAreRefused) {
  Entry e = ng_entry("/a", "a");
  // A name with a raw space (not written by the kernel, which stores '_').
  e.data[e.data.size() - 2] = ' ';
  std::string out;
  auto r = append_ascii(out, e);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("cannot represent"), std::string::npos);
}

TEST(Ascii, MalformedLinesAreRejected) {
  const std::string digest = "c8acbfa06c0d5bf7696db445ba8489fa2393c0d5";
  const std::string d = "sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";
  struct Case {
    std::string line;
    std::string needle;
  };
  std::vector<Case> cases = {
      {"", "PCR"},
      {"x " + digest + " ima-ng " + d + " /a", "PCR"},
      {"99 " + digest + " ima-ng " + d + " /a", "out of range"},
      {"10 " + digest.substr(1) + " ima-ng " + d + " /a", "hex digits"},
      {"10 " + digest.substr(0, 38) + "zz ima-ng " + d + " /a", "not a hex digit"},
      {"10 " + digest + " ima-xx " + d + " /a", "unknown template"},
      {"10 " + digest + " ima-ng " + d, "missing field n-ng"},
      {"10 " + digest + " ima-ng sha256:abc /a", "odd length"},
      {"10 " + digest + " ima-ng 5891b5 /a", "expected ALG:HEX"},
      {"10 " + digest + " ima-ng sha256:5891 /a", "expected 32"},
      {"10 " + digest + " ima-ng " + d + " /a b", "contains a space"},
      {"10 " + digest + " ima-sig " + d + " /a 0302 extra", "contains a space"},
      {"10 " + digest + " ima-ng " + d + " " + std::string(5000, 'n'), "longer than"},
      {"10 " + digest, "missing template name"},
  };
  for (const Case& c : cases) {
    auto r = parse_ascii_line(c.line);
    ASSERT_FALSE(r.ok()) << c.line.substr(0, 120);
    EXPECT_NE(r.error().message().find(c.needle), std::string::npos)
        << "line: " << c.line.substr(0, 120) << "\nerror: " << r.error().message();
  }
}

TEST(Ascii, ReaderReportsLineNumbersAndMissingFinalNewline) {
  std::string text;
  ASSERT_TRUE(append_ascii(text, ng_entry("/a", "a")).ok());
  std::string bad = text + "10 zz ima-ng\n";
  AsciiReader r = AsciiReader::from_memory(as_bytes(bad));
  Entry e;
  ASSERT_TRUE(*r.next(e));
  auto err = r.next(e);
  ASSERT_FALSE(err.ok());
  EXPECT_EQ(err.error().message().rfind("line 2:", 0), 0u) << err.error().message();

  std::string cut = text + text.substr(0, text.size() - 1);
  AsciiReader r2 = AsciiReader::from_memory(as_bytes(cut));
  ASSERT_TRUE(*r2.next(e));
  auto torn = r2.next(e);
  ASSERT_FALSE(torn.ok());
  EXPECT_EQ(torn.error().code(), Errc::kTruncated);
}

TEST(Ascii, DetectionTellsTheFormsApart) {
  std::string text;
  ASSERT_TRUE(append_ascii(text, ng_entry("/a", "a")).ok());
  EXPECT_TRUE(looks_ascii(as_bytes(text)));
  Bytes bin;
  ASSERT_TRUE(append_binary(bin, ng_entry("/a", "a")).ok());
  EXPECT_FALSE(looks_ascii(bin));
  EXPECT_TRUE(looks_ascii(as_bytes(" 8 abc")));
  EXPECT_FALSE(looks_ascii({}));
}

}  // namespace
}  // namespace ctrust::imalog
