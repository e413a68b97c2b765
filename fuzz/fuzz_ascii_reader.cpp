// Fuzzes the ASCII measurement-list reader and the line parser. A line that parses must
// survive append_ascii and a second parse with the same PCR, template, data and template
// digest (checked with a trap, so that libFuzzer reports it as a crash).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "imalog/ascii.h"
#include "imalog/entry.h"

namespace {

using ctrust::ByteView;
using ctrust::imalog::AsciiReader;
using ctrust::imalog::Entry;

void check_round_trip(const Entry& e) {
  std::string line;
  if (!ctrust::imalog::append_ascii(line, e)) __builtin_trap();  // it was parsed from ASCII
  if (line.empty() || line.back() != '\n') __builtin_trap();
  line.pop_back();
  if (line.find('\n') != std::string::npos) __builtin_trap();
  auto again = ctrust::imalog::parse_ascii_line(line);
  if (!again) __builtin_trap();
  if (again->pcr != e.pcr || again->template_name != e.template_name || again->data != e.data ||
      !(again->template_digest == e.template_digest)) {
    __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // The stream reader over the whole input.
  AsciiReader reader = AsciiReader::from_memory(ByteView(data, size));
  Entry e;
  for (;;) {
    auto more = reader.next(e);
    if (!more || !*more) break;
    if (reader.offset() > size) __builtin_trap();
    check_round_trip(e);
  }
  // The line parser on every line, including ones after a line the reader rejected.
  std::string_view text(reinterpret_cast<const char*>(data), size);
  while (!text.empty()) {
    std::size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    auto parsed = ctrust::imalog::parse_ascii_line(line);
    if (parsed) check_round_trip(*parsed);
  }
  return 0;
}
