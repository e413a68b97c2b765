// Fuzzes what ctrust-runtime reads before a container starts: the bundle's config.json (the
// engine writes it from the image's and the user's input) and its own runtime.toml. A
// rewritten config.json must be a JSON object with ctrust's createRuntime hook first and no
// ctrust hook at poststop (an empty stage is dropped), and a second pass must change nothing.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string_view>

#include "runtime/shim.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  (void)ctrust::runtime::parse_shim_config(text, "runtime.toml");
  ctrust::runtime::ShimConfig config;
  auto spec = ctrust::runtime::hook_spec(config, "/usr/libexec/ctrust/ctrust-hook");
  auto once = ctrust::runtime::add_hooks(text, spec);
  if (!once) return 0;
  auto doc = nlohmann::json::parse(*once, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) __builtin_trap();
  const auto& hooks = doc["hooks"];
  auto create = hooks.find("createRuntime");
  if (create == hooks.end() || !create->is_array() || create->empty() ||
      (*create)[0].value("path", std::string()) != spec.path) {
    __builtin_trap();
  }
  if (auto poststop = hooks.find("poststop"); poststop != hooks.end()) {
    if (!poststop->is_array() || poststop->empty()) __builtin_trap();
    for (const auto& h : *poststop) {
      auto path = h.is_object() ? h.find("path") : h.end();
      if (path != h.end() && *path == spec.path) __builtin_trap();
    }
  }
  auto twice = ctrust::runtime::add_hooks(*once, spec);
  if (!twice || *twice != *once) __builtin_trap();
  return 0;
}
