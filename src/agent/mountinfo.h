// /proc/PID/mountinfo, parsed (proc(5)). The agent reads it to find a container's overlay
// upper directory; its text comes from the kernel, but the mount points and options in it
// are named by the container (root in a container mounts what it likes), so it is parsed
// as untrusted input: bounded, strict, never trusted to be well-formed.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.h"

namespace ctrust::agent {

struct MountInfo {
  std::uint64_t mnt_id = 0;
  std::uint64_t parent_id = 0;
  unsigned major = 0;
  unsigned minor = 0;
  std::string root;         // unescaped
  std::string mount_point;  // unescaped
  std::string options;      // per-mount options
  std::string fstype;
  std::string source;         // unescaped
  std::string super_options;  // per-superblock options (overlay: lowerdir=,upperdir=,...)
};

// Lines that do not parse are an error naming the line; an empty text is no mounts.
Result<std::vector<MountInfo>> parse_mountinfo(std::string_view text);

// mountinfo escapes space, tab, newline and backslash as \NNN (octal).
std::string unescape_mountinfo(std::string_view s);

// The upperdir= of an overlay mount's super options (overlay escapes commas in paths with
// a backslash), or "" when it is not an overlay or has none.
std::string overlay_upperdir(const MountInfo& m);

}  // namespace ctrust::agent
