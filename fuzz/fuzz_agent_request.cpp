// Fuzzes what ctrustd does with a control-socket request line before it acts on it: the
// strict JSON parse (depth 64, as serve_connection does), the "op" dispatch checks, and
// the OCI state that a "create" request carries as a string.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "agent/oci.h"
#include "util/json.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto request = ctrust::parse_json_strict(text, 64);
  if (!request) return 0;
  const nlohmann::json& r = *request;
  if (!r.is_object()) return 0;
  if (r.contains("op") && r["op"].is_string()) (void)r["op"].get<std::string>();
  for (const char* member : {"id", "path"}) {
    if (r.contains(member) && r[member].is_string()) (void)r[member].get<std::string>();
  }
  if (r.contains("state") && r["state"].is_string()) {
    if (auto state = ctrust::agent::parse_oci_state(r["state"].get<std::string>())) {
      if (state->id.empty() || state->bundle.empty() || state->bundle[0] != '/') __builtin_trap();
      (void)ctrust::agent::settings_from_annotations(state->annotations);
    }
  }
  return 0;
}
