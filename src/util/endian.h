// Explicit byte-order loads and stores for parsing and writing wire formats.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

namespace ctrust {

inline std::uint32_t load_le32(const std::uint8_t* p) {
  return static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
         (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
}
inline std::uint32_t load_be32(const std::uint8_t* p) {
  return static_cast<std::uint32_t>(p[3]) | (static_cast<std::uint32_t>(p[2]) << 8) |
         (static_cast<std::uint32_t>(p[1]) << 16) | (static_cast<std::uint32_t>(p[0]) << 24);
}
inline void store_le32(std::uint8_t* p, std::uint32_t v) {
  p[0] = static_cast<std::uint8_t>(v);
  p[1] = static_cast<std::uint8_t>(v >> 8);
  p[2] = static_cast<std::uint8_t>(v >> 16);
  p[3] = static_cast<std::uint8_t>(v >> 24);
}
inline void store_be32(std::uint8_t* p, std::uint32_t v) {
  p[3] = static_cast<std::uint8_t>(v);
  p[2] = static_cast<std::uint8_t>(v >> 8);
  p[1] = static_cast<std::uint8_t>(v >> 16);
  p[0] = static_cast<std::uint8_t>(v >> 24);
}
inline std::uint32_t load32(bool big_endian, const std::uint8_t* p) {
  return big_endian ? load_be32(p) : load_le32(p);
}
inline void append_le32(std::vector<std::uint8_t>& out, std::uint32_t v) {
  std::uint8_t b[4];
  store_le32(b, v);
  out.insert(out.end(), b, b + 4);
}

}  // namespace ctrust
