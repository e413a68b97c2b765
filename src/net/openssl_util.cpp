#include "net/openssl_util.h"

#include <openssl/bio.h>
#include <openssl/err.h>

#include <array>

#include "crypto/digest.h"

namespace ctrust::net::detail {

Result<std::string> spki_fingerprint_of(const X509* cert) {
  if (cert == nullptr) return Error(Errc::kInvalidArgument, "no certificate");
  // The key exactly as the certificate carries it (what goes over the wire), which for
  // keys that OpenSSL made is also what PublicKey::to_der() writes.
  const X509_PUBKEY* spki = X509_get_X509_PUBKEY(cert);
  unsigned char* der = nullptr;
  int len = i2d_X509_PUBKEY(spki, &der);
  if (len <= 0 || der == nullptr) {
    return openssl_error("encoding the certificate's public key");
  }
  auto digest =
      crypto::digest_bytes(crypto::HashAlg::kSha256, ByteView(der, static_cast<std::size_t>(len)));
  OPENSSL_free(der);
  if (!digest) return std::move(digest).error();
  return digest->hex();
}

std::string subject_of(const X509* cert) {
  if (cert == nullptr) return {};
  UniquePtr<BIO, BIO_free_all> bio(BIO_new(BIO_s_mem()));
  if (!bio) {
    ERR_clear_error();
    return {};
  }
  if (X509_NAME_print_ex(bio.get(), X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) < 0) {
    ERR_clear_error();
    return {};
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  if (data == nullptr || len <= 0) return {};
  return std::string(data, static_cast<std::size_t>(len));
}

std::string drain_openssl_errors() {
  unsigned long first = ERR_peek_error();
  ERR_clear_error();
  if (first == 0) return {};
  std::array<char, 256> buf{};
  ERR_error_string_n(first, buf.data(), buf.size());
  return std::string(buf.data());
}

Result<UniqueX509Store> store_of(const std::vector<crypto::Certificate>& anchors) {
  UniqueX509Store store(X509_STORE_new());
  if (!store) return openssl_error("allocating a certificate store");
  for (const crypto::Certificate& anchor : anchors) {
    if (anchor.native() == nullptr) {
      return Error(Errc::kInvalidArgument, "an empty certificate was given as a trust anchor");
    }
    if (X509_STORE_add_cert(store.get(), anchor.native()) != 1) {
      return openssl_error("adding trust anchor " + anchor.subject());
    }
  }
  return store;
}

Result<void> use_identity(SSL_CTX* ctx, const TlsIdentityRef& identity) {
  if (identity.key == nullptr || identity.cert == nullptr) {
    return Error(Errc::kInvalidArgument, "the TLS identity has no key or no certificate");
  }
  if (SSL_CTX_use_certificate(ctx, identity.cert) != 1) {
    return openssl_error("using the TLS certificate");
  }
  if (SSL_CTX_use_PrivateKey(ctx, identity.key) != 1) {
    return openssl_error("using the TLS private key");
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    ERR_clear_error();
    return Error(Errc::kInvalidArgument, "the TLS private key does not belong to the certificate " +
                                             subject_of(identity.cert));
  }
  if (identity.chain != nullptr) {
    for (const crypto::Certificate& c : *identity.chain) {
      if (SSL_CTX_add1_chain_cert(ctx, c.native()) != 1) {
        return openssl_error("adding chain certificate " + c.subject());
      }
    }
  }
  return ok_result();
}

}  // namespace ctrust::net::detail
