#include "tpm/public.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>
#include <tss2/tss2_mu.h>

#include <algorithm>
#include <cstring>

#include "crypto/digest.h"
#include "tpm/pcr.h"
#include "util/unique_handle.h"

namespace ctrust::tpm {
namespace {

using PkeyCtx = UniquePtr<EVP_PKEY_CTX, EVP_PKEY_CTX_free>;
using Pkey = UniquePtr<EVP_PKEY, EVP_PKEY_free>;
using ParamBld = UniquePtr<OSSL_PARAM_BLD, OSSL_PARAM_BLD_free>;
using Params = UniquePtr<OSSL_PARAM, OSSL_PARAM_free>;
using Bn = UniquePtr<BIGNUM, BN_free>;

// PolicySecret(TPM_RH_ENDORSEMENT) with SHA-256: the authPolicy of the TCG default EKs.
constexpr std::uint8_t kEkPolicy[32] = {
    0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc, 0x8d, 0x46, 0xa5, 0xd7, 0x24,
    0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52, 0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa};

Result<crypto::PublicKey> to_public_key(Pkey pkey) {
  unsigned char* der = nullptr;
  int len = i2d_PUBKEY(pkey.get(), &der);
  if (len <= 0) return openssl_error("encoding a TPM public key");
  Bytes bytes(der, der + len);
  OPENSSL_free(der);
  return crypto::PublicKey::from_der(bytes);
}

Result<crypto::PublicKey> rsa_key(const TPMT_PUBLIC& area) {
  const TPM2B_PUBLIC_KEY_RSA& n = area.unique.rsa;
  if (n.size == 0 || n.size > sizeof(n.buffer)) {
    return Error(Errc::kFormat, "TPM RSA public key has no modulus");
  }
  std::uint32_t exponent = area.parameters.rsaDetail.exponent;
  if (exponent == 0) exponent = 65537;
  Bn bn_n(BN_bin2bn(n.buffer, n.size, nullptr));
  Bn bn_e(BN_new());
  if (!bn_n || !bn_e || BN_set_word(bn_e.get(), exponent) != 1) {
    return openssl_error("building an RSA key");
  }
  ParamBld bld(OSSL_PARAM_BLD_new());
  if (!bld || OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn_n.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, bn_e.get()) != 1) {
    return openssl_error("building an RSA key");
  }
  Params params(OSSL_PARAM_BLD_to_param(bld.get()));
  PkeyCtx ctx(EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr));
  EVP_PKEY* raw = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    return openssl_error("building an RSA key from a TPM public area");
  }
  return to_public_key(Pkey(raw));
}

Result<crypto::PublicKey> ecc_key(const TPMT_PUBLIC& area) {
  const char* group = nullptr;
  std::size_t size = 0;
  switch (area.parameters.eccDetail.curveID) {
    case TPM2_ECC_NIST_P256:
      group = "prime256v1";
      size = 32;
      break;
    case TPM2_ECC_NIST_P384:
      group = "secp384r1";
      size = 48;
      break;
    default:
      return Error(Errc::kUnsupported, "unsupported TPM ECC curve " +
                                           std::to_string(area.parameters.eccDetail.curveID));
  }
  const TPMS_ECC_POINT& p = area.unique.ecc;
  if (p.x.size != size || p.y.size != size) {
    return Error(Errc::kFormat, "TPM ECC public point has the wrong size for its curve");
  }
  Bytes point(1 + 2 * size);
  point[0] = 0x04;
  std::memcpy(point.data() + 1, p.x.buffer, size);
  std::memcpy(point.data() + 1 + size, p.y.buffer, size);
  ParamBld bld(OSSL_PARAM_BLD_new());
  if (!bld ||
      OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, group, 0) != 1 ||
      OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                       point.size()) != 1) {
    return openssl_error("building an EC key");
  }
  Params params(OSSL_PARAM_BLD_to_param(bld.get()));
  PkeyCtx ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
  EVP_PKEY* raw = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    return openssl_error("building an EC key from a TPM public area (point not on the curve?)");
  }
  return to_public_key(Pkey(raw));
}

}  // namespace

std::string_view key_alg_name(KeyAlg alg) { return alg == KeyAlg::kRsa2048 ? "rsa" : "ecc"; }

Result<KeyAlg> parse_key_alg(std::string_view name) {
  if (name == "rsa" || name == "rsa2048") return KeyAlg::kRsa2048;
  if (name == "ecc" || name == "ecc256" || name == "ecdsa-p256") return KeyAlg::kEccP256;
  return Error(Errc::kInvalidArgument,
               "unknown key algorithm '" + std::string(name) + "' (expected rsa or ecc)");
}

Result<TpmPublic> TpmPublic::from_tpm2b(ByteView bytes) {
  TPM2B_PUBLIC pub{};
  std::size_t offset = 0;
  TSS2_RC rc = Tss2_MU_TPM2B_PUBLIC_Unmarshal(bytes.data(), bytes.size(), &offset, &pub);
  if (rc != TSS2_RC_SUCCESS) return Error(Errc::kFormat, "malformed TPM2B_PUBLIC", rc);
  if (offset != bytes.size()) return Error(Errc::kFormat, "TPM2B_PUBLIC has trailing bytes");
  return TpmPublic(pub.publicArea);
}

Result<TpmPublic> TpmPublic::from_tpmt(ByteView bytes) {
  TPMT_PUBLIC pub{};
  std::size_t offset = 0;
  TSS2_RC rc = Tss2_MU_TPMT_PUBLIC_Unmarshal(bytes.data(), bytes.size(), &offset, &pub);
  if (rc != TSS2_RC_SUCCESS) return Error(Errc::kFormat, "malformed TPMT_PUBLIC", rc);
  if (offset != bytes.size()) return Error(Errc::kFormat, "TPMT_PUBLIC has trailing bytes");
  return TpmPublic(pub);
}

Bytes TpmPublic::marshal_tpmt() const {
  Bytes out(sizeof(TPMT_PUBLIC));
  std::size_t offset = 0;
  if (Tss2_MU_TPMT_PUBLIC_Marshal(&area_, out.data(), out.size(), &offset) != TSS2_RC_SUCCESS) {
    return {};
  }
  out.resize(offset);
  return out;
}

Bytes TpmPublic::marshal_tpm2b() const {
  Bytes out = marshal_tpmt();
  std::size_t size = out.size();
  out.insert(out.begin(), 2, 0);
  out[0] = static_cast<std::uint8_t>(size >> 8);
  out[1] = static_cast<std::uint8_t>(size);
  return out;
}

Result<Bytes> TpmPublic::name() const {
  CTRUST_ASSIGN_OR_RETURN(crypto::HashAlg alg, hash_alg_from_tpm(area_.nameAlg));
  Bytes area = marshal_tpmt();
  if (area.empty()) return Error(Errc::kFormat, "TPM public area cannot be marshalled");
  CTRUST_ASSIGN_OR_RETURN(crypto::Digest digest, crypto::digest_bytes(alg, area));
  Bytes name(2 + digest.size());
  name[0] = static_cast<std::uint8_t>(area_.nameAlg >> 8);
  name[1] = static_cast<std::uint8_t>(area_.nameAlg);
  std::copy(digest.view().begin(), digest.view().end(), name.begin() + 2);
  return name;
}

Result<crypto::PublicKey> TpmPublic::public_key() const {
  switch (area_.type) {
    case TPM2_ALG_RSA:
      return rsa_key(area_);
    case TPM2_ALG_ECC:
      return ecc_key(area_);
    default:
      return Error(Errc::kUnsupported,
                   "TPM object type " + std::to_string(area_.type) + " has no public key");
  }
}

bool TpmPublic::is_restricted_signing() const {
  TPMA_OBJECT attrs = area_.objectAttributes;
  return (attrs & TPMA_OBJECT_RESTRICTED) && (attrs & TPMA_OBJECT_SIGN_ENCRYPT) &&
         !(attrs & TPMA_OBJECT_DECRYPT) && (attrs & TPMA_OBJECT_FIXEDTPM);
}

bool TpmPublic::is_restricted_decrypt() const {
  TPMA_OBJECT attrs = area_.objectAttributes;
  return (attrs & TPMA_OBJECT_RESTRICTED) && (attrs & TPMA_OBJECT_DECRYPT) &&
         !(attrs & TPMA_OBJECT_SIGN_ENCRYPT);
}

TPM2B_PUBLIC ek_template(KeyAlg alg) {
  TPM2B_PUBLIC t{};
  TPMT_PUBLIC& a = t.publicArea;
  a.nameAlg = TPM2_ALG_SHA256;
  a.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                       TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_ADMINWITHPOLICY |
                       TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT;
  a.authPolicy.size = sizeof(kEkPolicy);
  std::memcpy(a.authPolicy.buffer, kEkPolicy, sizeof(kEkPolicy));
  if (alg == KeyAlg::kRsa2048) {
    a.type = TPM2_ALG_RSA;
    TPMS_RSA_PARMS& p = a.parameters.rsaDetail;
    p.symmetric.algorithm = TPM2_ALG_AES;
    p.symmetric.keyBits.aes = 128;
    p.symmetric.mode.aes = TPM2_ALG_CFB;
    p.scheme.scheme = TPM2_ALG_NULL;
    p.keyBits = 2048;
    p.exponent = 0;
    a.unique.rsa.size = 256;
  } else {
    a.type = TPM2_ALG_ECC;
    TPMS_ECC_PARMS& p = a.parameters.eccDetail;
    p.symmetric.algorithm = TPM2_ALG_AES;
    p.symmetric.keyBits.aes = 128;
    p.symmetric.mode.aes = TPM2_ALG_CFB;
    p.scheme.scheme = TPM2_ALG_NULL;
    p.curveID = TPM2_ECC_NIST_P256;
    p.kdf.scheme = TPM2_ALG_NULL;
    a.unique.ecc.x.size = 32;
    a.unique.ecc.y.size = 32;
  }
  t.size = 0;  // computed by the marshaller
  return t;
}

TPM2B_PUBLIC ak_template(KeyAlg alg) {
  TPM2B_PUBLIC t{};
  TPMT_PUBLIC& a = t.publicArea;
  a.nameAlg = TPM2_ALG_SHA256;
  a.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                       TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
                       TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_SIGN_ENCRYPT;
  if (alg == KeyAlg::kRsa2048) {
    a.type = TPM2_ALG_RSA;
    TPMS_RSA_PARMS& p = a.parameters.rsaDetail;
    p.symmetric.algorithm = TPM2_ALG_NULL;
    p.scheme.scheme = TPM2_ALG_RSASSA;
    p.scheme.details.rsassa.hashAlg = TPM2_ALG_SHA256;
    p.keyBits = 2048;
    p.exponent = 0;
  } else {
    a.type = TPM2_ALG_ECC;
    TPMS_ECC_PARMS& p = a.parameters.eccDetail;
    p.symmetric.algorithm = TPM2_ALG_NULL;
    p.scheme.scheme = TPM2_ALG_ECDSA;
    p.scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
    p.curveID = TPM2_ECC_NIST_P256;
    p.kdf.scheme = TPM2_ALG_NULL;
  }
  return t;
}

TPM2_HANDLE ek_certificate_nv_index(KeyAlg alg) {
  return alg == KeyAlg::kRsa2048 ? 0x01c00002 : 0x01c0000a;
}

}  // namespace ctrust::tpm
