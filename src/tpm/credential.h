// TPM2_MakeCredential in software (OpenSSL): wraps a secret so that only the TPM holding
// the EK `ek`, and only for the object named `object_name` loaded in that TPM, can recover
// it with TPM2_ActivateCredential. A verifier uses this to learn that an attestation key
// lives in the same TPM as an endorsement key it trusts.
//
// Follows TPM 2.0 Part 1, "Credential Protection" (24) and "Secret Sharing" (RSA-OAEP
// with label "IDENTITY", or ECDH with KDFe), with KDFa for the symmetric and HMAC keys.
//
// Thread safety: pure function.
#pragma once

#include "tpm/public.h"
#include "util/hex.h"
#include "util/result.h"

namespace ctrust::tpm {

struct Credential {
  Bytes credential_blob;  // marshalled TPM2B_ID_OBJECT
  Bytes secret;           // marshalled TPM2B_ENCRYPTED_SECRET
};

// `secret` is at most the EK name algorithm's digest size (32 bytes for the TCG EKs).
Result<Credential> make_credential(const TpmPublic& ek, ByteView object_name, ByteView secret);

// KDFa (SP 800-108 counter mode with HMAC), as the TPM defines it. Exposed for tests.
Result<Bytes> kdfa(crypto::HashAlg alg, ByteView key, std::string_view label, ByteView context_u,
                   ByteView context_v, std::size_t bits);

}  // namespace ctrust::tpm
