// Fuzzes the parsers of /proc/PID/mountinfo, /proc/PID/maps and /proc/PID/cgroup
// (agent/mountinfo.h, agent/proc_maps.h, agent/cgroup.h): a container names its own mount
// points, mapped files, options and cgroups (and cgroup.events). A parse must never crash, every
// parsed mount has the fields the format promises, every mapping has a range map_files can name,
// and a cgroup path is absolute with no ".." component.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "agent/cgroup.h"
#include "agent/mountinfo.h"
#include "agent/proc_maps.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto mounts = ctrust::agent::parse_mountinfo(text)) {
    for (const auto& m : *mounts) {
      if (m.fstype.empty() || m.fstype.find(' ') != std::string::npos) __builtin_trap();
      (void)ctrust::agent::overlay_upperdir(m);
    }
  }
  if (auto maps = ctrust::agent::parse_maps(text)) {
    for (const auto& m : *maps) {
      if (m.range.find('-') == std::string::npos || m.range.find('/') != std::string::npos) {
        __builtin_trap();
      }
    }
  }
  if (auto path = ctrust::agent::parse_proc_cgroup_v2(text)) {
    if (path->empty() || (*path)[0] != '/') __builtin_trap();
    if (path->find("/../") != std::string::npos) __builtin_trap();
  }
  (void)ctrust::agent::parse_cgroup_populated(text);
  return 0;
}
