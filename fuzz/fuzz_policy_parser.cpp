// Fuzzes the signed-policy parser: arbitrary bytes must parse or fail cleanly; whatever
// parses must serialise to a document that parses back to the same canonical bytes, and
// must compile into the lookup form (what the agent loads).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "policy/compiled.h"
#include "policy/policy.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto p = ctrust::policy::parse_policy(text);
  if (!p) return 0;
  std::string again = ctrust::policy::to_json(*p);
  auto q = ctrust::policy::parse_policy(again);
  if (!q) __builtin_trap();
  if (ctrust::policy::signed_bytes(*p) != ctrust::policy::signed_bytes(*q)) __builtin_trap();
  if (ctrust::policy::to_json(*q) != again) __builtin_trap();
  auto c = ctrust::policy::CompiledPolicy::compile(*p);
  if (!c) __builtin_trap();
  for (const auto& a : p->allow) {
    if (!c->contains(a.digest)) __builtin_trap();
    (void)c->check(a.digest, a.paths.empty() ? "/x" : a.paths.front());
  }
  return 0;
}
