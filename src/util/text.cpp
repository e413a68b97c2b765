#include "util/text.h"

namespace ctrust {

std::string escape_bytes_if(std::string_view raw, bool (*keep)(unsigned char)) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(raw.size());
  for (char ch : raw) {
    auto c = static_cast<unsigned char>(ch);
    if (keep(c)) {
      out += ch;
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    }
  }
  return out;
}

std::string printable(std::string_view s, std::size_t max) {
  std::string out = escape_bytes_if(
      s.substr(0, max), [](unsigned char c) { return c >= 0x20 && c < 0x7f && c != '\\'; });
  if (s.size() > max) out += "...";
  return out;
}

}  // namespace ctrust
