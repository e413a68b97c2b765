// Fuzzes the importers of foreign allowlists: Keylime runtime policies (JSON) and
// sha256sum-style checksum lists. The first byte picks the importer. Whatever imports
// must be a valid policy: it serialises, parses back and exports again.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "policy/interop.h"
#include "policy/policy.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  ctrust::policy::Policy p;
  p.name = "fuzz";
  p.issuer = "fuzz";
  p.not_before = 0;
  p.not_after = 1;
  auto r = (data[0] & 1) != 0 ? ctrust::policy::import_keylime(text, p)
                              : ctrust::policy::import_checksums(text, std::nullopt, "/", p);
  if (!r) return 0;
  auto q = ctrust::policy::parse_policy(ctrust::policy::to_json(p));
  if (!q) __builtin_trap();
  ctrust::policy::ExportReport report;
  // Imported entries are literal paths, so an export never needs to skip one; names that
  // are not UTF-8 cannot be written as JSON and fail cleanly.
  auto out = ctrust::policy::export_keylime(p, false, report);
  if (out && !report.skipped.empty()) __builtin_trap();
  return 0;
}
