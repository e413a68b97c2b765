#include "tpm/attest.h"

#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <tss2/tss2_mu.h>

#include <algorithm>

#include "util/unique_handle.h"

namespace ctrust::tpm {
namespace {

using EcdsaSig = UniquePtr<ECDSA_SIG, ECDSA_SIG_free>;

Bytes from_tpm2b(const std::uint8_t* data, std::size_t size) { return Bytes(data, data + size); }

bool is_rsa(const crypto::PublicKey& key) {
  return key.type() == crypto::KeyType::kRsa2048 || key.type() == crypto::KeyType::kRsa3072 ||
         key.type() == crypto::KeyType::kRsa4096;
}

// Checks the signature; appends the reason to `problems` when it does not verify.
Result<void> check_signature(const crypto::PublicKey& key, ByteView message,
                             ByteView signature_bytes, std::vector<std::string>& problems,
                             crypto::HashAlg* hash_out) {
  auto signature = parse_signature(signature_bytes);
  if (!signature) {
    problems.emplace_back("signature: " + signature.error().message());
    return ok_result();
  }
  *hash_out = signature->hash;
  crypto::SignOptions options;
  options.hash = signature->hash;
  bool rsa_scheme = signature->scheme != TPM2_ALG_ECDSA;
  if (rsa_scheme != is_rsa(key)) {
    problems.emplace_back("signature scheme does not match the key type");
    return ok_result();
  }
  options.rsa_padding = signature->scheme == TPM2_ALG_RSAPSS ? crypto::RsaPadding::kPss
                                                             : crypto::RsaPadding::kPkcs1v15;
  CTRUST_ASSIGN_OR_RETURN(bool good, key.verify(message, signature->signature, options));
  if (!good) problems.emplace_back("signature does not verify with the given public key");
  return ok_result();
}

// The checks every verification starts with: the signature, then the message parsed and
// of the expected type. Returns false when the verdict is already final.
Result<bool> check_signed_attestation(const crypto::PublicKey& key, ByteView message,
                                      ByteView signature, std::uint16_t type, const char* type_name,
                                      AttestVerdict& verdict, crypto::HashAlg* hash) {
  CTRUST_TRY(check_signature(key, message, signature, verdict.problems, hash));
  auto attest = parse_attestation(message);
  if (!attest) {
    verdict.problems.emplace_back("message: " + attest.error().message());
    return false;
  }
  verdict.attestation = *attest;
  if (attest->type != type) {
    verdict.problems.emplace_back(std::string("message is not a ") + type_name + " (type " +
                                  std::to_string(attest->type) + ")");
    return false;
  }
  return true;
}

}  // namespace

Result<Attestation> parse_attestation(ByteView message) {
  TPMS_ATTEST attest{};
  std::size_t offset = 0;
  TSS2_RC rc = Tss2_MU_TPMS_ATTEST_Unmarshal(message.data(), message.size(), &offset, &attest);
  if (rc != TSS2_RC_SUCCESS) {
    return Error(Errc::kFormat, "malformed attestation (TPMS_ATTEST)", rc);
  }
  if (offset != message.size()) {
    return Error(Errc::kFormat,
                 "attestation has " + std::to_string(message.size() - offset) + " trailing bytes");
  }
  if (attest.magic != TPM2_GENERATED_VALUE) {
    return Error(Errc::kFormat, "attestation lacks the TPM_GENERATED magic");
  }
  Attestation out;
  out.type = attest.type;
  out.qualified_signer = from_tpm2b(attest.qualifiedSigner.name, attest.qualifiedSigner.size);
  out.extra_data = from_tpm2b(attest.extraData.buffer, attest.extraData.size);
  out.clock = attest.clockInfo.clock;
  out.reset_count = attest.clockInfo.resetCount;
  out.restart_count = attest.clockInfo.restartCount;
  out.safe = attest.clockInfo.safe == TPM2_YES;
  out.firmware_version = attest.firmwareVersion;
  if (attest.type == TPM2_ST_ATTEST_QUOTE) {
    CTRUST_ASSIGN_OR_RETURN(out.pcr_selection, from_tpml(attest.attested.quote.pcrSelect));
    out.pcr_digest =
        from_tpm2b(attest.attested.quote.pcrDigest.buffer, attest.attested.quote.pcrDigest.size);
  } else if (attest.type == TPM2_ST_ATTEST_CERTIFY) {
    const TPMS_CERTIFY_INFO& c = attest.attested.certify;
    out.certified_name = from_tpm2b(c.name.name, c.name.size);
    out.certified_qualified_name = from_tpm2b(c.qualifiedName.name, c.qualifiedName.size);
  }
  return out;
}

Result<TpmSignature> parse_signature(ByteView bytes) {
  TPMT_SIGNATURE sig{};
  std::size_t offset = 0;
  TSS2_RC rc = Tss2_MU_TPMT_SIGNATURE_Unmarshal(bytes.data(), bytes.size(), &offset, &sig);
  if (rc != TSS2_RC_SUCCESS) return Error(Errc::kFormat, "malformed TPMT_SIGNATURE", rc);
  if (offset != bytes.size()) return Error(Errc::kFormat, "signature has trailing bytes");
  TpmSignature out;
  out.scheme = sig.sigAlg;
  switch (sig.sigAlg) {
    case TPM2_ALG_ECDSA: {
      const TPMS_SIGNATURE_ECC& ecc = sig.signature.ecdsa;
      CTRUST_ASSIGN_OR_RETURN(out.hash, hash_alg_from_tpm(ecc.hash));
      EcdsaSig s(ECDSA_SIG_new());
      BIGNUM* r = BN_bin2bn(ecc.signatureR.buffer, ecc.signatureR.size, nullptr);
      BIGNUM* ss = BN_bin2bn(ecc.signatureS.buffer, ecc.signatureS.size, nullptr);
      if (!s || !r || !ss || ECDSA_SIG_set0(s.get(), r, ss) != 1) {
        BN_free(r);
        BN_free(ss);
        return openssl_error("decoding an ECDSA signature");
      }
      unsigned char* der = nullptr;
      int len = i2d_ECDSA_SIG(s.get(), &der);
      if (len <= 0) return openssl_error("encoding an ECDSA signature");
      out.signature.assign(der, der + len);
      OPENSSL_free(der);
      return out;
    }
    case TPM2_ALG_RSASSA:
    case TPM2_ALG_RSAPSS: {
      const TPMS_SIGNATURE_RSA& rsa = sig.signature.rsassa;
      CTRUST_ASSIGN_OR_RETURN(out.hash, hash_alg_from_tpm(rsa.hash));
      out.signature = from_tpm2b(rsa.sig.buffer, rsa.sig.size);
      return out;
    }
    default:
      return Error(Errc::kUnsupported,
                   "unsupported signature scheme " + std::to_string(sig.sigAlg));
  }
}

Result<Bytes> marshal_signature(const TpmSignature& signature) {
  TPMT_SIGNATURE sig{};
  sig.sigAlg = signature.scheme;
  if (signature.scheme == TPM2_ALG_ECDSA) {
    const unsigned char* p = signature.signature.data();
    EcdsaSig s(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(signature.signature.size())));
    if (!s) return Error(Errc::kFormat, "malformed DER ECDSA signature");
    TPMS_SIGNATURE_ECC& ecc = sig.signature.ecdsa;
    ecc.hash = tpm_alg(signature.hash);
    const BIGNUM* r = ECDSA_SIG_get0_r(s.get());
    const BIGNUM* ss = ECDSA_SIG_get0_s(s.get());
    if (BN_num_bytes(r) > static_cast<int>(sizeof(ecc.signatureR.buffer)) ||
        BN_num_bytes(ss) > static_cast<int>(sizeof(ecc.signatureS.buffer))) {
      return Error(Errc::kFormat, "ECDSA signature too large");
    }
    ecc.signatureR.size = static_cast<UINT16>(BN_bn2bin(r, ecc.signatureR.buffer));
    ecc.signatureS.size = static_cast<UINT16>(BN_bn2bin(ss, ecc.signatureS.buffer));
  } else {
    TPMS_SIGNATURE_RSA& rsa = sig.signature.rsassa;
    rsa.hash = tpm_alg(signature.hash);
    if (signature.signature.size() > sizeof(rsa.sig.buffer)) {
      return Error(Errc::kFormat, "RSA signature too large");
    }
    rsa.sig.size = static_cast<UINT16>(signature.signature.size());
    std::copy(signature.signature.begin(), signature.signature.end(), rsa.sig.buffer);
  }
  Bytes out(sizeof(TPMT_SIGNATURE));
  std::size_t offset = 0;
  TSS2_RC rc = Tss2_MU_TPMT_SIGNATURE_Marshal(&sig, out.data(), out.size(), &offset);
  if (rc != TSS2_RC_SUCCESS) return Error(Errc::kFormat, "cannot marshal the signature", rc);
  out.resize(offset);
  return out;
}

Result<AttestVerdict> verify_quote(const crypto::PublicKey& ak, ByteView message,
                                   ByteView signature, std::optional<ByteView> nonce,
                                   const PcrValues* pcrs) {
  AttestVerdict verdict;
  crypto::HashAlg hash = crypto::HashAlg::kSha256;
  CTRUST_ASSIGN_OR_RETURN(
      bool go_on, check_signed_attestation(ak, message, signature, TPM2_ST_ATTEST_QUOTE, "quote",
                                           verdict, &hash));
  if (!go_on) return verdict;
  const Attestation* attest = &verdict.attestation;
  if (nonce && !std::equal(attest->extra_data.begin(), attest->extra_data.end(), nonce->begin(),
                           nonce->end())) {
    verdict.problems.emplace_back("qualifying data (nonce) " + to_hex(attest->extra_data) +
                                  " differs from the expected " + to_hex(*nonce));
  }
  if (pcrs != nullptr) {
    if (attest->pcr_selection != pcrs->selection) {
      verdict.problems.emplace_back("quote covers PCRs " + format_pcr_list(attest->pcr_selection) +
                                    " but the PCR values are for " +
                                    format_pcr_list(pcrs->selection));
    } else {
      CTRUST_ASSIGN_OR_RETURN(crypto::Digest digest, pcr_digest(hash, *pcrs));
      if (!std::equal(attest->pcr_digest.begin(), attest->pcr_digest.end(), digest.view().begin(),
                      digest.view().end())) {
        verdict.problems.emplace_back("PCR digest in the quote does not match the PCR values");
      }
    }
  }
  return verdict;
}

Result<AttestVerdict> verify_certify(const crypto::PublicKey& signer, ByteView message,
                                     ByteView signature, ByteView nonce, ByteView certified_name) {
  AttestVerdict verdict;
  crypto::HashAlg hash = crypto::HashAlg::kSha256;
  CTRUST_ASSIGN_OR_RETURN(
      bool go_on, check_signed_attestation(signer, message, signature, TPM2_ST_ATTEST_CERTIFY,
                                           "certification", verdict, &hash));
  if (!go_on) return verdict;
  const Attestation* attest = &verdict.attestation;
  if (!std::equal(attest->extra_data.begin(), attest->extra_data.end(), nonce.begin(),
                  nonce.end())) {
    verdict.problems.emplace_back("qualifying data (nonce) differs from the expected one");
  }
  if (!std::equal(attest->certified_name.begin(), attest->certified_name.end(),
                  certified_name.begin(), certified_name.end())) {
    verdict.problems.emplace_back("certified object's name " + to_hex(attest->certified_name) +
                                  " differs from the expected " + to_hex(certified_name));
  }
  return verdict;
}

}  // namespace ctrust::tpm
