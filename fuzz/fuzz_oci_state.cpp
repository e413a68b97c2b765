// Fuzzes the parsers of what an OCI runtime hands the agent: the runtime state (a hook's
// standard input) and the bundle's config.json, and the annotations they carry.
#include <cstddef>
#include <cstdint>
#include <string_view>

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
  return 0;
}
