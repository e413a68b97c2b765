#include "agent/proc_maps.h"

#include <charconv>
#include <string>

#include "util/file.h"
#include "util/text.h"

namespace ctrust::agent {

namespace {

// The next space-separated field of `line`, and the spaces after it taken off too.
std::string_view next_field(std::string_view& line) {
  std::size_t sp = line.find(' ');
  std::string_view f = line.substr(0, sp);
  line = sp == std::string_view::npos ? std::string_view() : line.substr(sp);
  while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
  return f;
}

template <typename T>
bool parse_number(std::string_view s, T& out, int base) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out, base);
  return ec == std::errc() && p == s.data() + s.size();
}

bool is_hex_range(std::string_view r) {
  std::size_t dash = r.find('-');
  std::uint64_t a = 0;
  std::uint64_t b = 0;
  return dash != std::string_view::npos && parse_number(r.substr(0, dash), a, 16) &&
         parse_number(r.substr(dash + 1), b, 16) && a <= b;
}

}  // namespace

Result<std::vector<Mapping>> parse_maps(std::string_view text) {
  std::vector<Mapping> out;
  std::size_t number = 0;
  while (!text.empty()) {
    std::string_view line = next_line(text);
    ++number;
    if (line.empty()) continue;
    auto bad = [&](const char* why) {
      return Error(Errc::kFormat, "maps line " + std::to_string(number) + ": " + why);
    };
    Mapping m;
    std::string_view range = next_field(line);
    std::string_view perms = next_field(line);
    std::string_view offset = next_field(line);
    std::string_view dev = next_field(line);
    std::string_view ino = next_field(line);
    std::uint64_t off = 0;
    if (!is_hex_range(range)) return bad("bad address range");
    if (perms.size() != 4) return bad("bad permissions");
    if (!parse_number(offset, off, 16)) return bad("bad offset");
    std::size_t colon = dev.find(':');
    if (colon == std::string_view::npos || !parse_number(dev.substr(0, colon), m.major, 16) ||
        !parse_number(dev.substr(colon + 1), m.minor, 16)) {
      return bad("bad device");
    }
    if (!parse_number(ino, m.ino, 10)) return bad("bad inode");
    m.range = std::string(range);
    m.exec = perms[2] == 'x';
    m.path = std::string(line);
    out.push_back(std::move(m));
  }
  return out;
}

Result<std::vector<Mapping>> read_maps(int pid) {
  CTRUST_ASSIGN_OR_RETURN(
      Bytes bytes, read_file("/proc/" + std::to_string(pid) + "/maps", std::size_t{64} << 20));
  return parse_maps(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

}  // namespace ctrust::agent
