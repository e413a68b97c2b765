// Fuzzes the PCR-file parser (`PCR-NN: HEX` lines and tpm2_pcrread output), with the bank
// inferred from the digest length and with each bank given explicitly.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "imalog/replay.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto check = [](const ctrust::imalog::ExpectedPcrs& pcrs) {
    for (const auto& [alg, values] : pcrs) {
      for (const auto& [index, digest] : values) {
        if (index > ctrust::imalog::kMaxPcrIndex || digest.alg != alg) __builtin_trap();
      }
    }
  };
  if (auto r = ctrust::imalog::parse_pcr_file(text, std::nullopt)) check(*r);
  for (auto alg : ctrust::crypto::kAllHashAlgs) {
    if (auto r = ctrust::imalog::parse_pcr_file(text, alg)) check(*r);
  }
  return 0;
}
