// Hex encoding and decoding of byte strings (lowercase out, either case in).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.h"

namespace ctrust {

using Bytes = std::vector<std::uint8_t>;
using ByteView = std::span<const std::uint8_t>;

std::string to_hex(ByteView bytes);
// Appends to `out`, to avoid a temporary on hot paths.
void append_hex(std::string& out, ByteView bytes);
// Rejects odd lengths and non-hex characters, naming the first bad position.
Result<Bytes> from_hex(std::string_view text);

inline ByteView as_bytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

}  // namespace ctrust
