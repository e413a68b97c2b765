// Fuzzes the parsers of what an OCI runtime hands the agent: the runtime state (a hook's
// standard input), the bundle's config.json, and the annotations they carry, and the
// runtimes' own state files that discovery reads (runc's state.json, crun's status).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "agent/discovery.h"
#include "agent/oci.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto state = ctrust::agent::parse_oci_state(text)) {
    if (state->id.empty() || state->bundle.empty() || state->bundle[0] != '/') __builtin_trap();
    (void)ctrust::agent::settings_from_annotations(state->annotations);
  }
  if (auto config = ctrust::agent::parse_oci_config(text)) {
    for (const auto& m : config->mounts) {
      if (m.destination.empty() || m.destination[0] != '/') __builtin_trap();
    }
    (void)ctrust::agent::settings_from_annotations(config->annotations);
  }
  (void)ctrust::agent::parse_proc_stat_start_time(text);
  for (const char* file : {"state.json", "status"}) {
    if (auto s = ctrust::agent::parse_runtime_state("id", file, text)) {
      if (s->pid <= 0 || s->bundle.empty() || s->bundle[0] != '/') __builtin_trap();
    }
  }
  return 0;
}
