// Fuzzes the parsers of TPM evidence a verifier receives from the network: the quoted
// TPMS_ATTEST, the TPMT_SIGNATURE, the tpm2-tools PCR file and a TPM2B_PUBLIC, and runs
// the whole quote verification on the pieces. The first input byte picks the split.
#include <cstddef>
#include <cstdint>

#include "tpm/attest.h"
#include "tpm/public.h"

namespace {

const ctrust::crypto::PublicKey& test_key() {
  static const ctrust::crypto::PublicKey key = [] {
    auto k = ctrust::crypto::PrivateKey::generate(ctrust::crypto::KeyType::kEcdsaP256);
    if (!k) __builtin_trap();
    return *k->public_key();
  }();
  return key;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ctrust;
  ByteView all(data, size);
  (void)tpm::parse_attestation(all);
  (void)tpm::parse_signature(all);
  (void)tpm::decode_pcr_file(all);
  if (auto pub = tpm::TpmPublic::from_tpm2b(all)) {
    (void)pub->name();
    (void)pub->public_key();
  }
  if (size < 2) return 0;
  // Split the rest into message | signature | PCR file at two points from the header.
  std::size_t rest = size - 2;
  std::size_t a = rest == 0 ? 0 : data[0] % (rest + 1);
  std::size_t b = rest - a == 0 ? 0 : data[1] % (rest - a + 1);
  ByteView message = all.subspan(2, a);
  ByteView signature = all.subspan(2 + a, b);
  ByteView pcr_bytes = all.subspan(2 + a + b);
  auto pcrs = tpm::decode_pcr_file(pcr_bytes);
  auto verdict =
      tpm::verify_quote(test_key(), message, signature, ByteView{}, pcrs ? &*pcrs : nullptr);
  // Random bytes never carry a valid signature by our fresh key.
  if (verdict && verdict->ok()) __builtin_trap();
  return 0;
}
