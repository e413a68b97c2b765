// Asymmetric keys, signatures and certificates (OpenSSL 3 EVP underneath).
//
// Keys are PrivateKey / PublicKey values owning an EVP_PKEY. Supported key types: ECDSA
// on P-256 and P-384, Ed25519, RSA (2048, 3072, 4096 bits). Signatures: ECDSA (DER, as
// OpenSSL and X.509 use), Ed25519 (pure, 64 bytes), RSA PKCS#1 v1.5 or PSS (salt length
// = digest length). Keys and certificates are read and written in PEM; private keys are
// written unencrypted with mode 0600 (protect them with file permissions or a TPM).
//
// A signature that does not verify is a normal `false`, not an Error; Errors are for
// unusable inputs (unreadable PEM, a key type that cannot use the asked-for scheme).
//
// Thread safety: keys are immutable after creation and may be shared between threads.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/digest.h"

struct evp_pkey_st;
struct x509_st;

namespace ctrust::crypto {

enum class KeyType : std::uint8_t {
  kEcdsaP256,
  kEcdsaP384,
  kEd25519,
  kRsa2048,
  kRsa3072,
  kRsa4096
};

// "ecdsa-p256", "ecdsa-p384", "ed25519", "rsa2048", "rsa3072", "rsa4096".
std::string_view key_type_name(KeyType type);
std::optional<KeyType> parse_key_type(std::string_view name);

enum class RsaPadding : std::uint8_t { kPkcs1v15, kPss };

struct SignOptions {
  // Ignored for Ed25519 (which hashes internally). Default: sha256 for P-256 and RSA,
  // sha384 for P-384 (see default_sign_options()).
  HashAlg hash = HashAlg::kSha256;
  RsaPadding rsa_padding = RsaPadding::kPss;
};

class PublicKey;

class PrivateKey {
 public:
  static Result<PrivateKey> generate(KeyType type);
  static Result<PrivateKey> from_pem(std::string_view pem);
  static Result<PrivateKey> load_pem_file(const std::string& path);

  KeyType type() const { return type_; }
  // PKCS#8 PEM ("-----BEGIN PRIVATE KEY-----").
  Result<std::string> to_pem() const;
  // Writes the PEM atomically with mode 0600.
  Result<void> save_pem_file(const std::string& path) const;
  Result<PublicKey> public_key() const;

  Result<Bytes> sign(ByteView message, const SignOptions& options) const;

  evp_pkey_st* native() const { return pkey_.get(); }

 private:
  PrivateKey(KeyType type, std::shared_ptr<evp_pkey_st> pkey)
      : type_(type), pkey_(std::move(pkey)) {}
  KeyType type_;
  std::shared_ptr<evp_pkey_st> pkey_;
};

class PublicKey {
 public:
  // SubjectPublicKeyInfo PEM ("-----BEGIN PUBLIC KEY-----").
  static Result<PublicKey> from_pem(std::string_view pem);
  static Result<PublicKey> load_pem_file(const std::string& path);
  // DER SubjectPublicKeyInfo.
  static Result<PublicKey> from_der(ByteView der);

  KeyType type() const { return type_; }
  Result<std::string> to_pem() const;
  Result<Bytes> to_der() const;
  // SHA-256 of the DER SubjectPublicKeyInfo: a stable key identifier.
  Result<Digest> fingerprint() const;

  // true if `signature` is valid for `message`; false if it is not (including malformed
  // signatures); an Error only if the options cannot apply to this key type.
  Result<bool> verify(ByteView message, ByteView signature, const SignOptions& options) const;

  evp_pkey_st* native() const { return pkey_.get(); }

 private:
  friend class PrivateKey;
  friend class Certificate;
  PublicKey(KeyType type, std::shared_ptr<evp_pkey_st> pkey)
      : type_(type), pkey_(std::move(pkey)) {}
  KeyType type_;
  std::shared_ptr<evp_pkey_st> pkey_;
};

SignOptions default_sign_options(KeyType type);

class Certificate {
 public:
  static Result<Certificate> from_pem(std::string_view pem);
  static Result<Certificate> from_der(ByteView der);
  // Every certificate in a PEM bundle, in order; an error if there is none.
  static Result<std::vector<Certificate>> bundle_from_pem(std::string_view pem);
  static Result<Certificate> load_pem_file(const std::string& path);

  Result<std::string> to_pem() const;
  Result<PublicKey> public_key() const;
  std::string subject() const;  // one-line RFC 2253 form
  std::string issuer() const;

  x509_st* native() const { return cert_.get(); }

 private:
  explicit Certificate(std::shared_ptr<x509_st> cert) : cert_(std::move(cert)) {}
  std::shared_ptr<x509_st> cert_;
};

// Checks that `leaf` chains through `intermediates` to one of `anchors` (which may be
// roots or intermediate CAs) at time `at` (seconds since the epoch): signatures, validity
// periods, CA constraints (X509_V_FLAG_X509_STRICT), and for `leaf` a key usage that allows
// digital signatures and an extended key usage (if any) that includes code signing. Returns an
// empty string when it does, else the reason; an Error only when OpenSSL itself fails.
Result<std::string> verify_certificate_chain(const Certificate& leaf,
                                             const std::vector<Certificate>& intermediates,
                                             const std::vector<Certificate>& anchors,
                                             std::int64_t at);

}  // namespace ctrust::crypto
