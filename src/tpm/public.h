// TPM public areas (TPMT_PUBLIC) as values: parsing from the TPM's marshalled forms, the
// object's Name, conversion to an OpenSSL public key, and the TCG templates ctrust uses
// for endorsement and attestation keys.
//
// No TPM connection is needed; the verifier links this. Thread safety: immutable values.
#pragma once

#include <tss2/tss2_tpm2_types.h>

#include <string_view>

#include "crypto/keys.h"
#include "util/hex.h"
#include "util/result.h"

namespace ctrust::tpm {

enum class KeyAlg : std::uint8_t { kRsa2048, kEccP256 };

std::string_view key_alg_name(KeyAlg alg);  // "rsa", "ecc"
Result<KeyAlg> parse_key_alg(std::string_view name);

class TpmPublic {
 public:
  TpmPublic() = default;
  explicit TpmPublic(const TPMT_PUBLIC& area) : area_(area) {}
  // A marshalled TPM2B_PUBLIC (what tpm2-tools writes with -u) or TPMT_PUBLIC; the whole
  // input must be consumed.
  static Result<TpmPublic> from_tpm2b(ByteView bytes);
  static Result<TpmPublic> from_tpmt(ByteView bytes);

  const TPMT_PUBLIC& area() const { return area_; }
  Bytes marshal_tpmt() const;
  Bytes marshal_tpm2b() const;
  // nameAlg (2 bytes, big-endian) || H_nameAlg(marshalled TPMT_PUBLIC).
  Result<Bytes> name() const;
  Result<crypto::PublicKey> public_key() const;
  bool is_restricted_signing() const;
  // The TCG EK Credential Profile's symmetric decrypt key shape (restricted decrypt, AES-128).
  bool is_restricted_decrypt() const;

 private:
  TPMT_PUBLIC area_{};
};

// The TCG EK Credential Profile default templates (L-1: RSA 2048, L-2: ECC NIST P-256),
// as tpm2_createek and swtpm_setup use, so the EK matches its certificate.
TPM2B_PUBLIC ek_template(KeyAlg alg);
// ctrust's attestation key: a restricted signing key (ECDSA/SHA-256 on P-256, or
// RSASSA/SHA-256 with RSA 2048), fixedTPM and fixedParent, user auth with an empty password.
TPM2B_PUBLIC ak_template(KeyAlg alg);
// The NV index where the EK certificate of that type lives (TCG: 0x01c00002 RSA,
// 0x01c0000a ECC).
TPM2_HANDLE ek_certificate_nv_index(KeyAlg alg);

}  // namespace ctrust::tpm
