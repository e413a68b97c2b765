// Verifying TPM attestations in software: quotes (TPM2_Quote) and certifications
// (TPM2_Certify), from the bytes the TPM produced and the signer's public key.
//
// The message is a marshalled TPMS_ATTEST (tpm2_quote --message), the signature a
// marshalled TPMT_SIGNATURE (tpm2_quote --signature, "tss" format). Everything is
// untrusted: a malformed message or signature is a rejection with a reason, not an Error;
// Errors are reserved for failures of our own machinery (OpenSSL).
//
// Shared by `ctrust tpm checkquote`, the agent and the verifier. Thread safety: pure
// functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "crypto/keys.h"
#include "tpm/pcr.h"
#include "util/hex.h"
#include "util/result.h"

namespace ctrust::tpm {

struct Attestation {
  std::uint16_t type = 0;  // TPM2_ST_ATTEST_QUOTE, TPM2_ST_ATTEST_CERTIFY, ...
  Bytes qualified_signer;
  Bytes extra_data;  // the qualifying data (nonce) given to the TPM
  std::uint64_t clock = 0;
  std::uint32_t reset_count = 0;
  std::uint32_t restart_count = 0;
  bool safe = false;
  std::uint64_t firmware_version = 0;
  // TPM2_ST_ATTEST_QUOTE
  PcrSelection pcr_selection;
  Bytes pcr_digest;
  // TPM2_ST_ATTEST_CERTIFY
  Bytes certified_name;
  Bytes certified_qualified_name;
};

// Checks the TPM_GENERATED magic and that every byte is consumed.
Result<Attestation> parse_attestation(ByteView message);

struct TpmSignature {
  std::uint16_t scheme = 0;  // TPM2_ALG_ECDSA, TPM2_ALG_RSASSA, TPM2_ALG_RSAPSS
  crypto::HashAlg hash = crypto::HashAlg::kSha256;
  Bytes signature;  // DER for ECDSA, raw for RSA
};
Result<TpmSignature> parse_signature(ByteView tpmt_signature);
// Marshals a DER ECDSA or raw RSA signature back into TPMT_SIGNATURE.
Result<Bytes> marshal_signature(const TpmSignature& signature);

// A verdict: ok() or the list of reasons it is not.
struct AttestVerdict {
  std::vector<std::string> problems;
  Attestation attestation;  // valid when the message parsed
  bool ok() const { return problems.empty(); }
};

// Verifies a quote: signature by `ak` over `message`; message is a quote; its qualifying
// data equals `nonce` (not checked when nullopt, as tpm2_checkquote without -q: the caller
// then accepts that the quote may be a replay); and, when `pcrs` is given, its PCR
// selection equals the values' selection and its PCR digest equals the hash (signature's
// hash) of the values.
Result<AttestVerdict> verify_quote(const crypto::PublicKey& ak, ByteView message,
                                   ByteView signature, std::optional<ByteView> nonce,
                                   const PcrValues* pcrs);

// Verifies a TPM2_Certify: signature by `signer`; type certify; qualifying data equals
// `nonce`; the certified object's Name equals `certified_name`.
Result<AttestVerdict> verify_certify(const crypto::PublicKey& signer, ByteView message,
                                     ByteView signature, ByteView nonce, ByteView certified_name);

}  // namespace ctrust::tpm
