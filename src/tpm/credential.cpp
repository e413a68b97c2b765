#include "tpm/credential.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include <array>
#include <cstring>

#include "crypto/digest.h"
#include "tpm/pcr.h"
#include "util/unique_handle.h"

namespace ctrust::tpm {
namespace {

using Kdf = UniquePtr<EVP_KDF, EVP_KDF_free>;
using KdfCtx = UniquePtr<EVP_KDF_CTX, EVP_KDF_CTX_free>;
using PkeyCtx = UniquePtr<EVP_PKEY_CTX, EVP_PKEY_CTX_free>;
using Pkey = UniquePtr<EVP_PKEY, EVP_PKEY_free>;
using CipherCtx = UniquePtr<EVP_CIPHER_CTX, EVP_CIPHER_CTX_free>;

void append_u16(Bytes& out, std::size_t value) {
  out.push_back(static_cast<std::uint8_t>(value >> 8));
  out.push_back(static_cast<std::uint8_t>(value));
}

void append_sized(Bytes& out, ByteView data) {
  append_u16(out, data.size());
  out.insert(out.end(), data.begin(), data.end());
}

// OpenSSL wants mutable pointers in OSSL_PARAMs even for inputs it only reads.
char* param_str(const char* s) { return const_cast<char*>(s); }    // NOLINT
void* param_bytes(const void* p) { return const_cast<void*>(p); }  // NOLINT

// KDFe (TPM 2.0 Part 1, 11.4.10.3): Hash(counter || Z || label\0 || partyU || partyV), i.e.
// SP 800-56A single-step KDF with the label and party infos as fixed info.
Result<Bytes> kdfe(crypto::HashAlg alg, ByteView z, std::string_view label, ByteView party_u,
                   ByteView party_v, std::size_t bits) {
  Bytes info(label.begin(), label.end());
  info.push_back(0);
  info.insert(info.end(), party_u.begin(), party_u.end());
  info.insert(info.end(), party_v.begin(), party_v.end());
  Kdf kdf(EVP_KDF_fetch(nullptr, "SSKDF", nullptr));
  if (!kdf) return openssl_error("fetching SSKDF");
  KdfCtx ctx(EVP_KDF_CTX_new(kdf.get()));
  std::string digest(crypto::hash_name(alg));
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest.data(), 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, param_bytes(z.data()), z.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info.data(), info.size()),
      OSSL_PARAM_construct_end()};
  Bytes out(bits / 8);
  if (!ctx || EVP_KDF_derive(ctx.get(), out.data(), out.size(), params) != 1) {
    return openssl_error("KDFe");
  }
  return out;
}

struct Seed {
  Bytes seed;
  Bytes encrypted;  // the TPM2B_ENCRYPTED_SECRET's buffer
};

Result<Seed> rsa_seed(const crypto::PublicKey& ek, crypto::HashAlg name_alg) {
  Seed out;
  out.seed.resize(crypto::digest_size(name_alg));
  if (RAND_bytes(out.seed.data(), static_cast<int>(out.seed.size())) != 1) {
    return openssl_error("generating a credential seed");
  }
  PkeyCtx ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, ek.native(), nullptr));
  static constexpr char kLabel[] = "IDENTITY";  // sizeof includes the NUL the TPM expects
  std::string digest(crypto::hash_name(name_alg));
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_ASYM_CIPHER_PARAM_PAD_MODE,
                                       param_str(OSSL_PKEY_RSA_PAD_MODE_OAEP), 0),
      OSSL_PARAM_construct_utf8_string(OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST, digest.data(), 0),
      OSSL_PARAM_construct_utf8_string(OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST, digest.data(), 0),
      OSSL_PARAM_construct_octet_string(OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL, param_bytes(kLabel),
                                        sizeof(kLabel)),
      OSSL_PARAM_construct_end()};
  std::size_t len = 0;
  if (!ctx || EVP_PKEY_encrypt_init_ex(ctx.get(), params) != 1 ||
      EVP_PKEY_encrypt(ctx.get(), nullptr, &len, out.seed.data(), out.seed.size()) != 1) {
    return openssl_error("RSA-OAEP encryption of the credential seed");
  }
  out.encrypted.resize(len);
  if (EVP_PKEY_encrypt(ctx.get(), out.encrypted.data(), &len, out.seed.data(), out.seed.size()) !=
      1) {
    return openssl_error("RSA-OAEP encryption of the credential seed");
  }
  out.encrypted.resize(len);
  return out;
}

Result<Seed> ecc_seed(const crypto::PublicKey& ek, const TPMT_PUBLIC& area,
                      crypto::HashAlg name_alg) {
  Pkey ephemeral(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  if (!ephemeral) return openssl_error("generating an ephemeral ECDH key");
  PkeyCtx ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, ephemeral.get(), nullptr));
  std::size_t z_len = 0;
  if (!ctx || EVP_PKEY_derive_init(ctx.get()) != 1 ||
      EVP_PKEY_derive_set_peer(ctx.get(), ek.native()) != 1 ||
      EVP_PKEY_derive(ctx.get(), nullptr, &z_len) != 1) {
    return openssl_error("ECDH with the EK");
  }
  Bytes z(z_len);
  if (EVP_PKEY_derive(ctx.get(), z.data(), &z_len) != 1) return openssl_error("ECDH with the EK");
  z.resize(z_len);
  std::array<std::uint8_t, 65> point{};
  std::size_t point_len = 0;
  if (EVP_PKEY_get_octet_string_param(ephemeral.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                      point.size(), &point_len) != 1 ||
      point_len != 65 || point[0] != 0x04) {
    return openssl_error("reading the ephemeral public point");
  }
  ByteView x(point.data() + 1, 32);
  ByteView y(point.data() + 33, 32);
  const TPMS_ECC_POINT& ek_point = area.unique.ecc;
  Seed out;
  CTRUST_ASSIGN_OR_RETURN(
      out.seed, kdfe(name_alg, z, "IDENTITY", x, ByteView(ek_point.x.buffer, ek_point.x.size),
                     crypto::digest_size(name_alg) * 8));
  append_sized(out.encrypted, x);
  append_sized(out.encrypted, y);
  return out;
}

Result<Bytes> hmac(crypto::HashAlg alg, ByteView key, ByteView a, ByteView b) {
  Bytes data(a.begin(), a.end());
  data.insert(data.end(), b.begin(), b.end());
  Bytes out(EVP_MAX_MD_SIZE);
  unsigned int len = 0;
  if (HMAC(crypto::evp_md(alg), key.data(), static_cast<int>(key.size()), data.data(), data.size(),
           out.data(), &len) == nullptr) {
    return openssl_error("HMAC");
  }
  out.resize(len);
  return out;
}

}  // namespace

Result<Bytes> kdfa(crypto::HashAlg alg, ByteView key, std::string_view label, ByteView context_u,
                   ByteView context_v, std::size_t bits) {
  if (bits == 0 || bits % 8 != 0) {
    return Error(Errc::kInvalidArgument, "KDFa output must be a whole number of bytes");
  }
  Bytes context(context_u.begin(), context_u.end());
  context.insert(context.end(), context_v.begin(), context_v.end());
  Kdf kdf(EVP_KDF_fetch(nullptr, "KBKDF", nullptr));
  if (!kdf) return openssl_error("fetching KBKDF");
  KdfCtx ctx(EVP_KDF_CTX_new(kdf.get()));
  std::string digest(crypto::hash_name(alg));
  // KBKDF's separator supplies the 0x00 after the label and its L field the 32-bit length,
  // exactly TPM 2.0 Part 1, 11.4.10.2.
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_MODE, param_str("COUNTER"), 0),
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_MAC, param_str("HMAC"), 0),
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest.data(), 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, param_bytes(key.data()), key.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, param_bytes(label.data()),
                                        label.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, context.data(), context.size()),
      OSSL_PARAM_construct_end()};
  Bytes out(bits / 8);
  if (!ctx || EVP_KDF_derive(ctx.get(), out.data(), out.size(), params) != 1) {
    return openssl_error("KDFa");
  }
  return out;
}

Result<Credential> make_credential(const TpmPublic& ek, ByteView object_name, ByteView secret) {
  const TPMT_PUBLIC& area = ek.area();
  if (!ek.is_restricted_decrypt()) {
    return Error(Errc::kInvalidArgument, "MakeCredential needs a restricted decryption key (EK)");
  }
  CTRUST_ASSIGN_OR_RETURN(crypto::HashAlg name_alg, hash_alg_from_tpm(area.nameAlg));
  if (secret.empty() || secret.size() > crypto::digest_size(name_alg)) {
    return Error(Errc::kInvalidArgument, "credential secret must be 1 to " +
                                             std::to_string(crypto::digest_size(name_alg)) +
                                             " bytes");
  }
  if (object_name.size() < 2) return Error(Errc::kInvalidArgument, "object name too short");
  const TPMT_SYM_DEF_OBJECT& sym = area.type == TPM2_ALG_RSA ? area.parameters.rsaDetail.symmetric
                                                             : area.parameters.eccDetail.symmetric;
  if (sym.algorithm != TPM2_ALG_AES || sym.mode.aes != TPM2_ALG_CFB ||
      (sym.keyBits.aes != 128 && sym.keyBits.aes != 256)) {
    return Error(Errc::kUnsupported, "EK symmetric algorithm is not AES-128/256-CFB");
  }
  CTRUST_ASSIGN_OR_RETURN(crypto::PublicKey key, ek.public_key());
  Seed seed;
  if (area.type == TPM2_ALG_RSA) {
    CTRUST_ASSIGN_OR_RETURN(seed, rsa_seed(key, name_alg));
  } else if (area.type == TPM2_ALG_ECC && area.parameters.eccDetail.curveID == TPM2_ECC_NIST_P256) {
    CTRUST_ASSIGN_OR_RETURN(seed, ecc_seed(key, area, name_alg));
  } else {
    return Error(Errc::kUnsupported, "EK must be RSA or ECC P-256");
  }

  CTRUST_ASSIGN_OR_RETURN(Bytes sym_key,
                          kdfa(name_alg, seed.seed, "STORAGE", object_name, {}, sym.keyBits.aes));
  Bytes plain;
  append_sized(plain, secret);  // TPM2B_DIGEST
  Bytes enc_identity(plain.size());
  CipherCtx cipher(EVP_CIPHER_CTX_new());
  std::array<std::uint8_t, 16> iv{};
  int out_len = 0;
  const EVP_CIPHER* aes = sym.keyBits.aes == 128 ? EVP_aes_128_cfb128() : EVP_aes_256_cfb128();
  if (!cipher || EVP_EncryptInit_ex(cipher.get(), aes, nullptr, sym_key.data(), iv.data()) != 1 ||
      EVP_EncryptUpdate(cipher.get(), enc_identity.data(), &out_len, plain.data(),
                        static_cast<int>(plain.size())) != 1) {
    return openssl_error("AES-CFB encryption of the credential");
  }
  CTRUST_ASSIGN_OR_RETURN(Bytes hmac_key, kdfa(name_alg, seed.seed, "INTEGRITY", {}, {},
                                               crypto::digest_size(name_alg) * 8));
  CTRUST_ASSIGN_OR_RETURN(Bytes outer_hmac, hmac(name_alg, hmac_key, enc_identity, object_name));

  Credential out;
  Bytes id_object;
  append_sized(id_object, outer_hmac);
  id_object.insert(id_object.end(), enc_identity.begin(), enc_identity.end());
  append_sized(out.credential_blob, id_object);
  append_sized(out.secret, seed.encrypted);
  return out;
}

}  // namespace ctrust::tpm
