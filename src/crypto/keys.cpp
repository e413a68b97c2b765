#include "crypto/keys.h"

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <climits>
#include <utility>

#include "util/file.h"
#include "util/unique_handle.h"

namespace ctrust::crypto {
namespace {

// Keys and certificates are small; a CA bundle is a few hundred KiB. Anything bigger is
// not a key file, and refusing it early keeps a mistaken path from being read whole.
constexpr std::size_t kMaxPemFileSize = 1 << 20;

using UniqueBio = UniquePtr<BIO, BIO_free_all>;
using UniqueMdCtx = UniquePtr<EVP_MD_CTX, EVP_MD_CTX_free>;

struct KeyTypeInfo {
  KeyType type;
  std::string_view name;
};

constexpr std::array<KeyTypeInfo, 6> kKeyTypes = {{
    {KeyType::kEcdsaP256, "ecdsa-p256"},
    {KeyType::kEcdsaP384, "ecdsa-p384"},
    {KeyType::kEd25519, "ed25519"},
    {KeyType::kRsa2048, "rsa2048"},
    {KeyType::kRsa3072, "rsa3072"},
    {KeyType::kRsa4096, "rsa4096"},
}};

bool is_rsa(KeyType type) {
  return type == KeyType::kRsa2048 || type == KeyType::kRsa3072 || type == KeyType::kRsa4096;
}

std::shared_ptr<EVP_PKEY> share_pkey(EVP_PKEY* raw) {
  return std::shared_ptr<EVP_PKEY>(raw, EVP_PKEY_free);
}

// A read-only memory BIO over `data` (which must outlive it).
Result<UniqueBio> input_bio(std::string_view data, const char* what) {
  if (data.empty()) {
    return Error(Errc::kFormat, std::string("no ") + what + " found: the input is empty");
  }
  if (data.size() > static_cast<std::size_t>(INT_MAX)) {
    return Error(Errc::kLimit, std::string(what) + " input is too large");
  }
  UniqueBio bio(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
  if (!bio) return openssl_error("BIO_new_mem_buf");
  return bio;
}

// A writable memory BIO; `secure` keeps the buffer in OpenSSL's secure heap when one is
// set up (and zeroes it on free either way), for private key material.
Result<UniqueBio> output_bio(bool secure) {
  UniqueBio bio(BIO_new(secure ? BIO_s_secmem() : BIO_s_mem()));
  if (!bio) return openssl_error("BIO_new");
  return bio;
}

std::string bio_contents(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  if (data == nullptr || len <= 0) return {};
  return std::string(data, static_cast<std::size_t>(len));
}

// A parse failure: `message` says what was expected; the OpenSSL reason (taken off its
// queue) follows in parentheses for whoever has to dig deeper.
Error parse_error(const std::string& message) {
  Error detail = openssl_error("openssl");
  if (detail.native() == 0) return Error(Errc::kFormat, message);
  return Error(Errc::kFormat, message + " (" + detail.message() + ")", detail.native());
}

// The PEM readers must never prompt on the terminal for a passphrase: this callback
// refuses, and records that the key was encrypted so that the error can say so.
int refuse_passphrase(char* /*buf*/, int /*size*/, int /*rwflag*/, void* userdata) {
  if (userdata != nullptr) *static_cast<bool*>(userdata) = true;
  return -1;
}

Result<KeyType> ec_key_type(const EVP_PKEY* pkey) {
  std::array<char, 80> group{};
  std::size_t len = 0;
  if (EVP_PKEY_get_group_name(pkey, group.data(), group.size(), &len) != 1) {
    ERR_clear_error();
    return Error(Errc::kUnsupported,
                 "EC key without a named curve is not supported; use a P-256 or P-384 key");
  }
  std::string_view name(group.data(), std::min(len, group.size()));
  if (name == "prime256v1" || name == "P-256" || name == "secp256r1") return KeyType::kEcdsaP256;
  if (name == "secp384r1" || name == "P-384") return KeyType::kEcdsaP384;
  return Error(Errc::kUnsupported,
               "EC curve " + std::string(name) + " is not supported; use a P-256 or P-384 key");
}

Result<KeyType> rsa_key_type(const EVP_PKEY* pkey) {
  int bits = EVP_PKEY_get_bits(pkey);
  switch (bits) {
    case 2048:
      return KeyType::kRsa2048;
    case 3072:
      return KeyType::kRsa3072;
    case 4096:
      return KeyType::kRsa4096;
    default:
      return Error(Errc::kUnsupported, "RSA key of " + std::to_string(bits) +
                                           " bits is not supported; use 2048, 3072 or 4096 bits");
  }
}

Result<KeyType> key_type_of(const EVP_PKEY* pkey) {
  switch (EVP_PKEY_get_base_id(pkey)) {
    case EVP_PKEY_EC:
      return ec_key_type(pkey);
    case EVP_PKEY_ED25519:
      return KeyType::kEd25519;
    case EVP_PKEY_RSA:
      return rsa_key_type(pkey);
    case EVP_PKEY_RSA_PSS:
      return Error(Errc::kUnsupported,
                   "RSA-PSS restricted keys (id-RSASSA-PSS) are not supported; use a plain RSA "
                   "key (the padding is chosen per signature)");
    default: {
      const char* name = EVP_PKEY_get0_type_name(pkey);
      return Error(
          Errc::kUnsupported,
          std::string("key type ") + (name != nullptr ? name : "(unknown)") +
              " is not supported; use ecdsa-p256, ecdsa-p384, ed25519 or rsa2048/3072/4096");
    }
  }
}

// The digest a signature over `type` uses, or nullptr for Ed25519 (which hashes internally).
Result<const EVP_MD*> signature_md(KeyType type, const SignOptions& options) {
  if (type == KeyType::kEd25519) return static_cast<const EVP_MD*>(nullptr);
  if (options.hash == HashAlg::kSha1) {
    // Chosen-prefix collisions make SHA-1 signatures forgeable; never make or accept one.
    return Error(Errc::kUnsupported,
                 "SHA-1 signatures are not supported; use sha256, sha384 or sha512");
  }
  const EVP_MD* md = evp_md(options.hash);
  if (md == nullptr) {
    return openssl_error(std::string("digest ") + std::string(hash_name(options.hash)) +
                         " unavailable");
  }
  return md;
}

Result<void> configure_padding(EVP_PKEY_CTX* pctx, KeyType type, const EVP_MD* md,
                               const SignOptions& options) {
  if (!is_rsa(type)) return ok_result();
  if (options.rsa_padding == RsaPadding::kPkcs1v15) {
    if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) != 1) {
      return openssl_error("setting RSA PKCS#1 v1.5 padding");
    }
    return ok_result();
  }
  if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
      EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1 ||
      EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md) != 1) {
    return openssl_error("setting RSA PSS padding");
  }
  return ok_result();
}

Result<Bytes> spki_der(EVP_PKEY* pkey) {
  int len = i2d_PUBKEY(pkey, nullptr);
  if (len <= 0) return openssl_error("encoding the public key (i2d_PUBKEY)");
  Bytes der(static_cast<std::size_t>(len));
  unsigned char* out = der.data();
  if (i2d_PUBKEY(pkey, &out) != len) return openssl_error("encoding the public key (i2d_PUBKEY)");
  return der;
}

std::string name_rfc2253(const X509_NAME* name) {
  auto bio = output_bio(false);
  if (!bio || name == nullptr) return {};
  if (X509_NAME_print_ex(bio->get(), name, 0, XN_FLAG_RFC2253) < 0) {
    ERR_clear_error();
    return {};
  }
  return bio_contents(bio->get());
}

std::string_view as_text(const Bytes& bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

}  // namespace

std::string_view key_type_name(KeyType type) {
  for (const auto& info : kKeyTypes) {
    if (info.type == type) return info.name;
  }
  return "unknown";
}

std::optional<KeyType> parse_key_type(std::string_view name) {
  std::string lower(name);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  for (const auto& info : kKeyTypes) {
    if (lower == info.name) return info.type;
  }
  return std::nullopt;
}

SignOptions default_sign_options(KeyType type) {
  SignOptions options;
  options.hash = type == KeyType::kEcdsaP384 ? HashAlg::kSha384 : HashAlg::kSha256;
  options.rsa_padding = RsaPadding::kPss;
  return options;
}

// ---------------------------------------------------------------------------------------
// PrivateKey

Result<PrivateKey> PrivateKey::generate(KeyType type) {
  EVP_PKEY* raw = nullptr;
  switch (type) {
    case KeyType::kEcdsaP256:
      raw = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
      break;
    case KeyType::kEcdsaP384:
      raw = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384");
      break;
    case KeyType::kEd25519:
      raw = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
      break;
    case KeyType::kRsa2048:
      raw = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", std::size_t{2048});
      break;
    case KeyType::kRsa3072:
      raw = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", std::size_t{3072});
      break;
    case KeyType::kRsa4096:
      raw = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", std::size_t{4096});
      break;
  }
  if (raw == nullptr) {
    return openssl_error("generating a " + std::string(key_type_name(type)) + " key");
  }
  return PrivateKey(type, share_pkey(raw));
}

Result<PrivateKey> PrivateKey::from_pem(std::string_view pem) {
  CTRUST_ASSIGN_OR_RETURN(UniqueBio bio, input_bio(pem, "private key"));
  bool encrypted = false;
  EVP_PKEY* raw = PEM_read_bio_PrivateKey(bio.get(), nullptr, refuse_passphrase, &encrypted);
  if (raw == nullptr) {
    if (encrypted) {
      ERR_clear_error();
      return Error(Errc::kUnsupported,
                   "the private key is encrypted, which is not supported; decrypt it with "
                   "`openssl pkey -in KEY -out PLAIN_KEY` and protect the file with mode 0600");
    }
    return parse_error(
        "no usable private key found: expected a PEM \"PRIVATE KEY\" block, as `ctrust key "
        "generate` writes");
  }
  auto pkey = share_pkey(raw);
  CTRUST_ASSIGN_OR_RETURN(KeyType type, key_type_of(pkey.get()));
  return PrivateKey(type, std::move(pkey));
}

Result<PrivateKey> PrivateKey::load_pem_file(const std::string& path) {
  CTRUST_ASSIGN_OR_RETURN(Bytes data, read_file(path, kMaxPemFileSize));
  auto key = from_pem(as_text(data));
  OPENSSL_cleanse(data.data(), data.size());
  if (!key) return std::move(key).error().with_context("private key " + path);
  return key;
}

Result<std::string> PrivateKey::to_pem() const {
  CTRUST_ASSIGN_OR_RETURN(UniqueBio bio, output_bio(true));
  if (PEM_write_bio_PKCS8PrivateKey(bio.get(), pkey_.get(), nullptr, nullptr, 0, nullptr,
                                    nullptr) != 1) {
    return openssl_error("encoding the private key as PKCS#8 PEM");
  }
  return bio_contents(bio.get());
}

Result<void> PrivateKey::save_pem_file(const std::string& path) const {
  CTRUST_ASSIGN_OR_RETURN(std::string pem, to_pem());
  auto written = write_file_atomic(path, as_bytes(pem), 0600);
  OPENSSL_cleanse(pem.data(), pem.size());
  if (!written) return std::move(written).error().with_context("saving private key " + path);
  return ok_result();
}

Result<PublicKey> PrivateKey::public_key() const {
  // Round trip through SubjectPublicKeyInfo so that the PublicKey holds no private part.
  CTRUST_ASSIGN_OR_RETURN(Bytes der, spki_der(pkey_.get()));
  return PublicKey::from_der(der);
}

Result<Bytes> PrivateKey::sign(ByteView message, const SignOptions& options) const {
  CTRUST_ASSIGN_OR_RETURN(const EVP_MD* md, signature_md(type_, options));
  UniqueMdCtx ctx(EVP_MD_CTX_new());
  if (!ctx) return openssl_error("EVP_MD_CTX_new");
  EVP_PKEY_CTX* pctx = nullptr;  // owned by ctx
  if (EVP_DigestSignInit(ctx.get(), &pctx, md, nullptr, pkey_.get()) != 1) {
    return openssl_error("starting a " + std::string(key_type_name(type_)) + " signature");
  }
  CTRUST_TRY(configure_padding(pctx, type_, md, options));
  std::size_t len = 0;
  if (EVP_DigestSign(ctx.get(), nullptr, &len, message.data(), message.size()) != 1) {
    return openssl_error("signing");
  }
  Bytes signature(len);
  if (EVP_DigestSign(ctx.get(), signature.data(), &len, message.data(), message.size()) != 1) {
    return openssl_error("signing");
  }
  signature.resize(len);
  return signature;
}

// ---------------------------------------------------------------------------------------
// PublicKey

Result<PublicKey> PublicKey::from_pem(std::string_view pem) {
  CTRUST_ASSIGN_OR_RETURN(UniqueBio bio, input_bio(pem, "public key"));
  EVP_PKEY* raw = PEM_read_bio_PUBKEY(bio.get(), nullptr, refuse_passphrase, nullptr);
  if (raw == nullptr) {
    return parse_error(
        "no usable public key found: expected a PEM \"PUBLIC KEY\" block (get one from a "
        "private key with `ctrust key public KEY`)");
  }
  auto pkey = share_pkey(raw);
  CTRUST_ASSIGN_OR_RETURN(KeyType type, key_type_of(pkey.get()));
  return PublicKey(type, std::move(pkey));
}

Result<PublicKey> PublicKey::load_pem_file(const std::string& path) {
  CTRUST_ASSIGN_OR_RETURN(Bytes data, read_file(path, kMaxPemFileSize));
  auto key = from_pem(as_text(data));
  if (!key) return std::move(key).error().with_context("public key " + path);
  return key;
}

Result<PublicKey> PublicKey::from_der(ByteView der) {
  if (der.empty()) return Error(Errc::kFormat, "public key DER is empty");
  if (der.size() > static_cast<std::size_t>(LONG_MAX)) {
    return Error(Errc::kLimit, "public key DER is too large");
  }
  const unsigned char* p = der.data();
  EVP_PKEY* raw = d2i_PUBKEY(nullptr, &p, static_cast<long>(der.size()));
  if (raw == nullptr) {
    return parse_error("malformed public key: expected a DER SubjectPublicKeyInfo");
  }
  auto pkey = share_pkey(raw);
  if (p != der.data() + der.size()) {
    return Error(
        Errc::kFormat,
        "public key DER has " + std::to_string(der.data() + der.size() - p) + " trailing bytes");
  }
  CTRUST_ASSIGN_OR_RETURN(KeyType type, key_type_of(pkey.get()));
  return PublicKey(type, std::move(pkey));
}

Result<std::string> PublicKey::to_pem() const {
  CTRUST_ASSIGN_OR_RETURN(UniqueBio bio, output_bio(false));
  if (PEM_write_bio_PUBKEY(bio.get(), pkey_.get()) != 1) {
    return openssl_error("encoding the public key as PEM");
  }
  return bio_contents(bio.get());
}

Result<Bytes> PublicKey::to_der() const { return spki_der(pkey_.get()); }

Result<Digest> PublicKey::fingerprint() const {
  CTRUST_ASSIGN_OR_RETURN(Bytes der, to_der());
  return digest_bytes(HashAlg::kSha256, der);
}

Result<bool> PublicKey::verify(ByteView message, ByteView signature,
                               const SignOptions& options) const {
  CTRUST_ASSIGN_OR_RETURN(const EVP_MD* md, signature_md(type_, options));
  if (signature.empty()) return false;
  UniqueMdCtx ctx(EVP_MD_CTX_new());
  if (!ctx) return openssl_error("EVP_MD_CTX_new");
  EVP_PKEY_CTX* pctx = nullptr;  // owned by ctx
  if (EVP_DigestVerifyInit(ctx.get(), &pctx, md, nullptr, pkey_.get()) != 1) {
    return openssl_error("starting a " + std::string(key_type_name(type_)) + " verification");
  }
  CTRUST_TRY(configure_padding(pctx, type_, md, options));
  int rc = EVP_DigestVerify(ctx.get(), signature.data(), signature.size(), message.data(),
                            message.size());
  if (rc == 1) return true;
  // 0 is a wrong signature, < 0 a malformed one (bad DER, wrong length): both a "no".
  ERR_clear_error();
  return false;
}

// ---------------------------------------------------------------------------------------
// Certificate

Result<Certificate> Certificate::from_pem(std::string_view pem) {
  CTRUST_ASSIGN_OR_RETURN(UniqueBio bio, input_bio(pem, "certificate"));
  X509* raw = PEM_read_bio_X509(bio.get(), nullptr, refuse_passphrase, nullptr);
  if (raw == nullptr) {
    return parse_error("no usable certificate found: expected a PEM \"CERTIFICATE\" block");
  }
  return Certificate(std::shared_ptr<X509>(raw, X509_free));
}

Result<Certificate> Certificate::from_der(ByteView der) {
  const unsigned char* p = der.data();
  X509* raw = d2i_X509(nullptr, &p, static_cast<long>(der.size()));
  if (raw == nullptr) {
    ERR_clear_error();
    return parse_error("malformed DER certificate");
  }
  std::shared_ptr<X509> cert(raw, X509_free);
  if (p != der.data() + der.size()) return parse_error("DER certificate has trailing bytes");
  return Certificate(std::move(cert));
}

Result<std::vector<Certificate>> Certificate::bundle_from_pem(std::string_view pem) {
  CTRUST_ASSIGN_OR_RETURN(UniqueBio bio, input_bio(pem, "certificate"));
  std::vector<Certificate> certs;
  for (;;) {
    X509* raw = PEM_read_bio_X509(bio.get(), nullptr, refuse_passphrase, nullptr);
    if (raw == nullptr) break;
    certs.push_back(Certificate(std::shared_ptr<X509>(raw, X509_free)));
  }
  // Running out of PEM blocks ends the loop with "no start line"; anything else is a
  // broken certificate in the middle of the bundle.
  unsigned long last = ERR_peek_last_error();
  if (last != 0 && ERR_GET_REASON(last) != PEM_R_NO_START_LINE) {
    return parse_error("certificate " + std::to_string(certs.size() + 1) +
                       " of the bundle is malformed");
  }
  ERR_clear_error();
  if (certs.empty()) {
    return Error(Errc::kFormat,
                 "no certificate found (expected one or more PEM \"CERTIFICATE\" blocks)");
  }
  return certs;
}

Result<Certificate> Certificate::load_pem_file(const std::string& path) {
  CTRUST_ASSIGN_OR_RETURN(Bytes data, read_file(path, kMaxPemFileSize));
  auto cert = from_pem(as_text(data));
  if (!cert) return std::move(cert).error().with_context("certificate " + path);
  return cert;
}

Result<std::string> Certificate::to_pem() const {
  CTRUST_ASSIGN_OR_RETURN(UniqueBio bio, output_bio(false));
  if (PEM_write_bio_X509(bio.get(), cert_.get()) != 1) {
    return openssl_error("encoding the certificate as PEM");
  }
  return bio_contents(bio.get());
}

Result<PublicKey> Certificate::public_key() const {
  EVP_PKEY* raw = X509_get_pubkey(cert_.get());
  if (raw == nullptr) {
    return parse_error("the certificate's public key cannot be decoded");
  }
  auto pkey = share_pkey(raw);
  auto type = key_type_of(pkey.get());
  if (!type) return std::move(type).error().with_context("certificate " + subject());
  return PublicKey(*type, std::move(pkey));
}

std::string Certificate::subject() const {
  return name_rfc2253(X509_get_subject_name(cert_.get()));
}

std::string Certificate::issuer() const { return name_rfc2253(X509_get_issuer_name(cert_.get())); }

// ---------------------------------------------------------------------------------------
// Chains

namespace {
// sk_X509_free is a macro; UniquePtr needs a function.
void free_x509_stack(STACK_OF(X509) * s) { sk_X509_free(s); }
}  // namespace

Result<std::string> verify_certificate_chain(const Certificate& leaf,
                                             const std::vector<Certificate>& intermediates,
                                             const std::vector<Certificate>& anchors,
                                             std::int64_t at) {
  if (anchors.empty()) return std::string("no trust anchor certificate was given");
  UniquePtr<X509_STORE, X509_STORE_free> store(X509_STORE_new());
  UniquePtr<STACK_OF(X509), free_x509_stack> untrusted(sk_X509_new_null());
  UniquePtr<X509_STORE_CTX, X509_STORE_CTX_free> ctx(X509_STORE_CTX_new());
  if (!store || !untrusted || !ctx) return openssl_error("allocating a certificate store");
  for (const Certificate& a : anchors) {
    if (X509_STORE_add_cert(store.get(), a.native()) != 1) {
      return openssl_error("adding trust anchor " + a.subject());
    }
  }
  for (const Certificate& c : intermediates) {
    // The stack does not own its certificates; `intermediates` outlives it.
    if (sk_X509_push(untrusted.get(), c.native()) <= 0) {
      return openssl_error("collecting intermediate certificates");
    }
  }
  if (X509_STORE_CTX_init(ctx.get(), store.get(), leaf.native(), untrusted.get()) != 1) {
    return openssl_error("preparing certificate verification");
  }
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
  X509_VERIFY_PARAM_set_time(param, static_cast<time_t>(at));
  // An anchor may be an intermediate CA (or the signer's own certificate), not only a root.
  X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_PARTIAL_CHAIN | X509_V_FLAG_X509_STRICT);
  int rc = X509_verify_cert(ctx.get());
  if (rc == 1) {
    ERR_clear_error();
    // The signer's certificate must be meant for signatures: OpenSSL 3.0 has no purpose
    // for that, so check the extensions here (absent extensions allow everything).
    std::uint32_t ku = X509_get_key_usage(leaf.native());
    if (ku != UINT32_MAX && (ku & KU_DIGITAL_SIGNATURE) == 0) {
      return std::string("the signer certificate's key usage does not allow digital signatures");
    }
    std::uint32_t xku = X509_get_extended_key_usage(leaf.native());
    if (xku != UINT32_MAX && (xku & (XKU_CODE_SIGN | XKU_ANYEKU)) == 0) {
      return std::string(
          "the signer certificate's extended key usage does not include code signing");
    }
    return std::string();
  }
  int err = X509_STORE_CTX_get_error(ctx.get());
  int depth = X509_STORE_CTX_get_error_depth(ctx.get());
  ERR_clear_error();
  std::string where = depth == 0 ? "the signer certificate"
                                 : "certificate " + std::to_string(depth) + " of the chain";
  return std::string(where) + ": " + X509_verify_cert_error_string(err);
}

}  // namespace ctrust::crypto
