// Fuzzes the attestation-result readers: arbitrary bytes as a compact JWS (verify_jwt()
// against a fixed ES256 key; the seed tokens are signed with its private half, so mutations
// start from tokens that verify), and as a JSON claims set (Ear::from_claims()). Nothing may
// crash; base64url decoding must be canonical (decode then encode gives the input back); any
// EAR that parses must validate and survive to_claims() / from_claims() unchanged.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "attest/ear.h"
#include "attest/jwt.h"
#include "crypto/keys.h"
#include "util/json.h"

namespace {

// The public half of a throwaway P-256 key used only to sign the seeds in
// corpus/fuzz_jwt/.
constexpr std::string_view kSeedKeyPem =
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEh/npsRSt9p+BhJfi3s7lK4AFcwSL\n"
    "sAcxpWqhP6Brk0F5/jChmvp4haBGiRWpSlku8AHQ7lCKfAlwwCWnOCPTcQ==\n"
    "-----END PUBLIC KEY-----\n";

const ctrust::crypto::PublicKey& seed_key() {
  static const ctrust::crypto::PublicKey kKey = [] {
    auto k = ctrust::crypto::PublicKey::from_pem(kSeedKeyPem);
    if (!k) std::abort();
    return std::move(k).value();
  }();
  return kKey;
}

void check_ear(const nlohmann::json& claims) {
  auto ear = ctrust::attest::Ear::from_claims(claims);
  if (!ear) return;
  if (!ctrust::attest::validate(*ear).ok()) __builtin_trap();
  auto again = ctrust::attest::Ear::from_claims(ear->to_claims());
  if (!again || !(*again == *ear)) __builtin_trap();
  (void)ear->overall();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);

  auto decoded = ctrust::attest::base64url_decode(text);
  if (decoded && ctrust::attest::base64url_encode(*decoded) != text) __builtin_trap();

  auto jwt = ctrust::attest::verify_jwt(text, seed_key());
  if (jwt) {
    if (!jwt->header.is_object() || !jwt->claims.is_object()) __builtin_trap();
    check_ear(jwt->claims);
  }

  auto json = ctrust::parse_json_strict(text, ctrust::attest::kMaxJwtJsonDepth);
  if (json) check_ear(*json);
  return 0;
}
