// Fuzzes the binary measurement-list reader and everything that consumes its entries:
// field parsing, template digests, both writers and a two-bank replay. Every record the
// reader accepts must survive a binary round trip unchanged (checked with a trap, so that
// libFuzzer reports it as a crash).
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "imalog/ascii.h"
#include "imalog/binary.h"
#include "imalog/entry.h"
#include "imalog/replay.h"

namespace {

using ctrust::Bytes;
using ctrust::ByteView;
using ctrust::imalog::BinaryFormat;
using ctrust::imalog::BinaryReader;
using ctrust::imalog::ByteOrder;
using ctrust::imalog::Entry;
using ctrust::imalog::HashAlg;

bool same_entry(const Entry& a, const Entry& b) {
  return a.pcr == b.pcr && a.order == b.order && a.template_digest == b.template_digest &&
         a.template_name == b.template_name && a.data == b.data;
}

// Writes `e` in the binary form and reads it back with the format it was written in: the
// reader must give the same entry, consume every byte and then report a clean end.
void check_round_trip(const Entry& e) {
  Bytes bin;
  if (!ctrust::imalog::append_binary(bin, e)) return;  // e.g. a big-endian record
  BinaryFormat format{e.template_digest.alg, ByteOrder::kLittle};
  auto reader = BinaryReader::from_memory(ByteView(bin), format);
  if (!reader) __builtin_trap();
  Entry back;
  auto first = reader->next(back);
  if (!first || !*first) __builtin_trap();
  if (!same_entry(e, back)) __builtin_trap();
  if (reader->offset() != bin.size() || reader->count() != 1) __builtin_trap();
  auto second = reader->next(back);
  if (!second || *second) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto reader = BinaryReader::from_memory(ByteView(data, size), std::nullopt);
  if (!reader) return 0;
  ctrust::imalog::Replayer replayer({HashAlg::kSha1, HashAlg::kSha256});
  Entry e;
  std::string text;
  Bytes bin;
  std::uint64_t last_offset = 0;
  for (;;) {
    auto more = reader->next(e);
    if (!more || !*more) break;
    // The reader only moves forward, by at least a minimal record.
    if (reader->offset() <= last_offset || reader->offset() > size) __builtin_trap();
    last_offset = reader->offset();

    auto fields = ctrust::imalog::parse_fields(e);
    if (fields) (void)fields->file_digest_value();
    (void)ctrust::imalog::template_digest(e, e.template_digest.alg);
    (void)ctrust::imalog::template_digest(e, HashAlg::kSha256);
    bin.clear();
    (void)ctrust::imalog::append_binary(bin, e);
    text.clear();
    (void)ctrust::imalog::append_ascii(text, e);
    (void)replayer.add(e);
    check_round_trip(e);
  }
  return 0;
}
