#include "imalog/binary.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "support/temp_dir.h"
#include "test_util.h"
#include "util/endian.h"
#include "util/file.h"

namespace ctrust::imalog {
namespace {

using testing::ng_entry;

bool same(const Entry& a, const Entry& b) {
  return a.pcr == b.pcr && a.template_name == b.template_name && a.data == b.data &&
         a.template_digest == b.template_digest && a.order == b.order;
}

std::vector<Entry> sample(HashAlg header) {
  std::vector<Entry> v;
  v.push_back(ng_entry("/usr/bin/hello", "hello\n", header));
  v.push_back(ng_entry("/bin/true", "t", header, "ima-sig"));
  v.push_back(*make_violation("ima-ng", 10, "/tmp/v", HashAlg::kSha256, header));
  v.push_back(ng_entry("kexec-cmdline", "ro quiet", header, "ima-buf"));
  v.push_back(ng_entry("/bin/sh", "sh", header, "ima"));
  return v;
}

Result<std::vector<Entry>> read_all(ByteView data, std::optional<BinaryFormat> fmt = {}) {
  CTRUST_ASSIGN_OR_RETURN(BinaryReader r, BinaryReader::from_memory(data, fmt));
  std::vector<Entry> out;
  Entry e;
  for (;;) {
    CTRUST_ASSIGN_OR_RETURN(bool more, r.next(e));
    if (!more) break;
    out.push_back(e);
  }
  return out;
}

TEST(Binary, RoundTripAndDetectionForEveryHeaderSize) {
  for (HashAlg header : crypto::kAllHashAlgs) {
    Bytes bytes;
    auto entries = sample(header);
    for (const Entry& e : entries) ASSERT_TRUE(append_binary(bytes, e).ok());
    auto fmt = detect_binary_format(bytes);
    ASSERT_TRUE(fmt.has_value());
    EXPECT_EQ(fmt->header_alg, header);
    EXPECT_EQ(fmt->order, ByteOrder::kLittle);
    auto back = read_all(bytes);
    ASSERT_TRUE(back.ok()) << back.error().message();
    ASSERT_EQ(back->size(), entries.size());
    for (std::size_t i = 0; i < entries.size(); ++i) EXPECT_TRUE(same((*back)[i], entries[i])) << i;
  }
}

TEST(Binary, MalformedRecordsAreNeverWritten) {
  Entry e = ng_entry("/a", "a");
  e.data.pop_back();  // the name loses its NUL
  Bytes out;
  EXPECT_FALSE(append_binary(out, e).ok());
  EXPECT_TRUE(out.empty());
}

TEST(Binary, EmptyInputHasNoEntries) {
  auto back = read_all({});
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(back->empty());
}

TEST(Binary, EveryCutInsideARecordIsATruncationError) {
  Bytes bytes;
  std::vector<std::size_t> boundaries = {0};
  for (const Entry& e : sample(HashAlg::kSha1)) {
    ASSERT_TRUE(append_binary(bytes, e).ok());
    boundaries.push_back(bytes.size());
  }
  for (std::size_t cut = 0; cut <= bytes.size(); ++cut) {
    auto it = std::find(boundaries.begin(), boundaries.end(), cut);
    // Give the format: detection of a very short prefix is a different error.
    auto r = read_all(ByteView(bytes).first(cut), BinaryFormat{HashAlg::kSha1, ByteOrder::kLittle});
    if (it != boundaries.end()) {
      ASSERT_TRUE(r.ok()) << "cut " << cut;
      EXPECT_EQ(r->size(), static_cast<std::size_t>(it - boundaries.begin()));
    } else {
      ASSERT_FALSE(r.ok()) << "cut " << cut;
      EXPECT_EQ(r.error().code(), Errc::kTruncated) << r.error().message();
      EXPECT_NE(r.error().message().find("at offset"), std::string::npos);
    }
  }
}

TEST(Binary, AbsurdValuesAreRejected) {
  Bytes good;
  ASSERT_TRUE(append_binary(good, ng_entry("/a", "a")).ok());
  const BinaryFormat fmt{HashAlg::kSha1, ByteOrder::kLittle};
  auto expect = [&](Bytes b, Errc code, const std::string& needle) {
    auto r = read_all(b, fmt);
    ASSERT_FALSE(r.ok()) << needle;
    EXPECT_EQ(r.error().code(), code) << r.error().message();
    EXPECT_NE(r.error().message().find(needle), std::string::npos) << r.error().message();
  };
  Bytes b = good;
  store_le32(b.data(), 99);
  expect(b, Errc::kFormat, "PCR index 99");
  b = good;
  store_le32(b.data() + 24, 0);
  expect(b, Errc::kFormat, "template name length 0");
  b = good;
  store_le32(b.data() + 24, 0x7fffffff);
  expect(b, Errc::kFormat, "template name length");
  b = good;
  b[28] = 'X';  // "ima-ng" -> "Xma-ng"
  expect(b, Errc::kUnsupported, "unknown template 'Xma-ng'");
  b = good;
  store_le32(b.data() + 34, 0xffffffffu);
  expect(b, Errc::kLimit, "exceeds the limit");
  // Garbage that is no log at all is refused by detection.
  Bytes junk(64, 0xee);
  auto r = BinaryReader::from_memory(junk);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("not an IMA binary measurement list"), std::string::npos);
}

// A big-endian host-order log: integers and field lengths in big-endian, template digests
// over the big-endian data, as a big-endian kernel without ima_canonical_fmt writes them.
TEST(Binary, BigEndianHostOrderLogsAreRead) {
  Entry le = ng_entry("/usr/bin/hello", "hello\n");
  Entry be = le;
  be.order = ByteOrder::kBig;
  // Swap the two field lengths inside the data.
  std::uint32_t l0 = load_le32(be.data.data());
  store_be32(be.data.data(), l0);
  store_be32(be.data.data() + 4 + l0, load_le32(be.data.data() + 4 + l0));
  be.template_digest = *template_digest(be, HashAlg::kSha1);
  Bytes bytes(4);
  store_be32(bytes.data(), be.pcr);
  bytes.insert(bytes.end(), be.template_digest.view().begin(), be.template_digest.view().end());
  std::uint8_t n[4];
  store_be32(n, 6);
  bytes.insert(bytes.end(), n, n + 4);
  bytes.insert(bytes.end(), be.template_name.begin(), be.template_name.end());
  store_be32(n, static_cast<std::uint32_t>(be.data.size()));
  bytes.insert(bytes.end(), n, n + 4);
  bytes.insert(bytes.end(), be.data.begin(), be.data.end());

  auto fmt = detect_binary_format(bytes);
  ASSERT_TRUE(fmt.has_value());
  EXPECT_EQ(fmt->order, ByteOrder::kBig);
  auto back = read_all(bytes);
  ASSERT_TRUE(back.ok()) << back.error().message();
  ASSERT_EQ(back->size(), 1u);
  EXPECT_TRUE(same((*back)[0], be));
  auto f = parse_fields((*back)[0]);
  ASSERT_TRUE(f.ok()) << f.error().message();
  EXPECT_EQ(f->name, "/usr/bin/hello");
  // Writing it in canonical form would change its template digest: refused.
  Bytes out;
  EXPECT_EQ(append_binary(out, (*back)[0]).error().code(), Errc::kUnsupported);
}

TEST(Binary, StreamsFilesLargerThanItsBuffer) {
  ctrust::testing::TempDir tmp;
  std::string dir = tmp.path();
  Bytes bytes;
  const std::size_t n = 60000;  // about 6 MiB, three times the reader's buffer
  for (std::size_t i = 0; i < n; ++i) {
    Entry e = ng_entry("/usr/lib/lib" + std::to_string(i) + ".so", std::to_string(i));
    ASSERT_TRUE(append_binary(bytes, e).ok());
  }
  // One large ima-buf record spanning a refill boundary.
  Entry big = ng_entry("big", std::string(kMaxTemplateDataLen / 2, 'z'), HashAlg::kSha1, "ima-buf");
  ASSERT_TRUE(append_binary(bytes, big).ok());
  ASSERT_TRUE(write_file_atomic(dir + "/log", bytes, 0600).ok());
  auto r = BinaryReader::open(dir + "/log");
  ASSERT_TRUE(r.ok());
  Entry e;
  std::size_t count = 0;
  Entry last;
  std::size_t wrong_names = 0;
  while (*r->next(e)) {
    // Every record, not only the last: a reader that kept a pointer into its buffer across
    // a refill once returned garbage names here for logs over 4 MiB.
    if (e.template_name != (count < n ? "ima-ng" : "ima-buf")) ++wrong_names;
    if (count == 12345) {
      EXPECT_EQ(parse_fields(e)->name, "/usr/lib/lib12345.so");
    }
    ++count;
    last = e;
  }
  EXPECT_EQ(count, n + 1);
  EXPECT_EQ(wrong_names, 0u);
  EXPECT_TRUE(same(last, big));
  EXPECT_EQ(r->offset(), bytes.size());
}

}  // namespace
}  // namespace ctrust::imalog
