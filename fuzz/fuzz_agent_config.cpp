// Fuzzes the agent's configuration parser (TOML through toml++, which reports errors by
// throwing): any bytes give a config or an Error, never a crash or an escaping exception,
// and an accepted config keeps the invariants the agent relies on.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "agent/config.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto config = ctrust::agent::parse_config(text, "fuzz.toml");
  if (config) {
    if (config->state_dir.empty() || config->state_dir[0] != '/') __builtin_trap();
    if (config->socket.empty() || config->socket[0] != '/') __builtin_trap();
    if (!config->policy_dir.empty() && config->policy_dir[0] != '/') __builtin_trap();
    if (config->host_pcr > 23 || config->host_pcr == 10) __builtin_trap();
    if (config->hash_threads == 0 || config->cache_entries == 0 || config->vtpm_max == 0) {
      __builtin_trap();
    }
    (void)config->policies();
  } else if (config.error().message().empty()) {
    __builtin_trap();
  }
  return 0;
}
