// /proc/PID/maps, parsed (proc(5)). The agent reads a container process's mappings to find
// the file behind an executable mapping the exec gate reported, and the processes that map
// a file executable when a writer comes. Paths in it are named by the container, so it is
// parsed as untrusted input, strictly.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.h"

namespace ctrust::agent {

struct Mapping {
  std::string range;  // "start-end" in hex, as /proc/PID/map_files/ names it
  bool exec = false;  // the 'x' permission
  unsigned major = 0;
  unsigned minor = 0;
  std::uint64_t ino = 0;
  std::string path;  // may be empty (anonymous) or end in " (deleted)"
};

// Lines that do not parse are an error naming the line; an empty text is no mappings.
Result<std::vector<Mapping>> parse_maps(std::string_view text);

// The mappings of process `pid` (an error when it is gone).
Result<std::vector<Mapping>> read_maps(int pid);

}  // namespace ctrust::agent
