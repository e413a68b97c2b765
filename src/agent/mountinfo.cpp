#include "agent/mountinfo.h"

#include <charconv>

#include "util/text.h"

namespace ctrust::agent {

namespace {

constexpr std::size_t kMaxLines = 1 << 20;

bool parse_u64(std::string_view s, std::uint64_t& out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

bool parse_uint(std::string_view s, unsigned& out) {
  std::uint64_t v = 0;
  if (!parse_u64(s, v) || v > 0xffffffffULL) return false;
  out = static_cast<unsigned>(v);
  return true;
}

// Splits on single spaces (mountinfo never has empty fields: they are escaped).
std::vector<std::string_view> fields(std::string_view line) {
  std::vector<std::string_view> out;
  while (!line.empty()) {
    std::size_t sp = line.find(' ');
    out.push_back(line.substr(0, sp));
    if (sp == std::string_view::npos) break;
    line = line.substr(sp + 1);
  }
  return out;
}

}  // namespace

std::string unescape_mountinfo(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    auto octal = [&](std::size_t k) { return k < s.size() && s[k] >= '0' && s[k] <= '7'; };
    if (s[i] == '\\' && octal(i + 1) && octal(i + 2) && octal(i + 3)) {
      out.push_back(
          static_cast<char>(((s[i + 1] - '0') << 6) | ((s[i + 2] - '0') << 3) | (s[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

Result<std::vector<MountInfo>> parse_mountinfo(std::string_view text) {
  std::vector<MountInfo> mounts;
  std::size_t number = 0;
  while (!text.empty()) {
    std::string_view line = next_line(text);
    ++number;
    if (number > kMaxLines) return Error(Errc::kFormat, "mountinfo: too many lines");
    if (line.empty()) continue;
    auto bad = [&](const char* why) {
      return Error(Errc::kFormat, "mountinfo line " + std::to_string(number) + ": " + why);
    };
    auto f = fields(line);
    // id parent major:minor root mount-point options [optional...] - fstype source super
    if (f.size() < 10) return bad("too few fields");
    for (auto field : f) {
      if (field.empty()) return bad("an empty field (the kernel escapes spaces)");
    }
    MountInfo m;
    if (!parse_u64(f[0], m.mnt_id) || !parse_u64(f[1], m.parent_id)) return bad("bad mount id");
    std::size_t colon = f[2].find(':');
    if (colon == std::string_view::npos || !parse_uint(f[2].substr(0, colon), m.major) ||
        !parse_uint(f[2].substr(colon + 1), m.minor)) {
      return bad("bad major:minor");
    }
    m.root = unescape_mountinfo(f[3]);
    m.mount_point = unescape_mountinfo(f[4]);
    m.options = std::string(f[5]);
    std::size_t sep = 6;
    while (sep < f.size() && f[sep] != "-") ++sep;
    if (sep + 4 != f.size()) return bad("no ' - fstype source options' tail");
    m.fstype = std::string(f[sep + 1]);
    m.source = unescape_mountinfo(f[sep + 2]);
    m.super_options = std::string(f[sep + 3]);
    mounts.push_back(std::move(m));
  }
  return mounts;
}

std::string overlay_upperdir(const MountInfo& m) {
  if (m.fstype != "overlay") return "";
  std::string_view options = m.super_options;
  std::string current;
  for (std::size_t i = 0; i <= options.size(); ++i) {
    if (i == options.size() || options[i] == ',') {
      if (current.rfind("upperdir=", 0) == 0) return unescape_mountinfo(current.substr(9));
      current.clear();
    } else if (options[i] == '\\' && i + 1 < options.size() && options[i + 1] == ',') {
      current.push_back(',');
      ++i;
    } else {
      current.push_back(options[i]);
    }
  }
  return "";
}

}  // namespace ctrust::agent
