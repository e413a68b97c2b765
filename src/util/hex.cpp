#include "util/hex.h"

#include <array>

namespace ctrust {
namespace {

constexpr char kDigits[] = "0123456789abcdef";

constexpr std::array<std::int8_t, 256> make_decode_table() {
  std::array<std::int8_t, 256> t{};
  for (auto& v : t) v = -1;
  for (int i = 0; i < 10; ++i) t['0' + i] = static_cast<std::int8_t>(i);
  for (int i = 0; i < 6; ++i) {
    t['a' + i] = static_cast<std::int8_t>(10 + i);
    t['A' + i] = static_cast<std::int8_t>(10 + i);
  }
  return t;
}
constexpr auto kDecode = make_decode_table();

}  // namespace

void append_hex(std::string& out, ByteView bytes) {
  std::size_t pos = out.size();
  out.resize(pos + bytes.size() * 2);
  for (std::uint8_t b : bytes) {
    out[pos++] = kDigits[b >> 4];
    out[pos++] = kDigits[b & 0xf];
  }
}

std::string to_hex(ByteView bytes) {
  std::string out;
  append_hex(out, bytes);
  return out;
}

Result<Bytes> from_hex(std::string_view text) {
  if (text.size() % 2 != 0) {
    return Error(Errc::kFormat, "hex string has odd length " + std::to_string(text.size()));
  }
  Bytes out(text.size() / 2);
  for (std::size_t i = 0; i < out.size(); ++i) {
    std::int8_t hi = kDecode[static_cast<std::uint8_t>(text[2 * i])];
    std::int8_t lo = kDecode[static_cast<std::uint8_t>(text[2 * i + 1])];
    if (hi < 0 || lo < 0) {
      std::size_t bad = hi < 0 ? 2 * i : 2 * i + 1;
      return Error(Errc::kFormat, "not a hex digit at position " + std::to_string(bad));
    }
    out[i] = static_cast<std::uint8_t>((hi << 4) | lo);
  }
  return out;
}

}  // namespace ctrust
