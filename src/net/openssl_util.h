// Internal to ctrust_net: small helpers over OpenSSL objects shared by the TLS utilities,
// the server and the client. Not part of the module's public API.
//
// Thread safety: stateless functions.
#pragma once

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <string>
#include <vector>

#include "crypto/keys.h"
#include "util/result.h"
#include "util/unique_handle.h"

namespace ctrust::net::detail {

using UniqueX509Store = UniquePtr<X509_STORE, X509_STORE_free>;
using UniqueSslCtx = UniquePtr<SSL_CTX, SSL_CTX_free>;
using UniqueSsl = UniquePtr<SSL, SSL_free>;

// Lowercase hex SHA-256 of the certificate's DER SubjectPublicKeyInfo.
Result<std::string> spki_fingerprint_of(const X509* cert);

// RFC 2253 one-line form of the certificate's subject ("" if it cannot be printed).
std::string subject_of(const X509* cert);

// The first error on the calling thread's OpenSSL error queue, as text, and clears the
// queue; "" if it was empty.
std::string drain_openssl_errors();

// A new certificate store trusting `anchors` (each up-referenced by the store).
Result<UniqueX509Store> store_of(const std::vector<crypto::Certificate>& anchors);

// Installs `identity`'s key, certificate and chain on `ctx` and checks that they match.
struct TlsIdentityRef {
  EVP_PKEY* key;
  X509* cert;
  const std::vector<crypto::Certificate>* chain;
};
Result<void> use_identity(SSL_CTX* ctx, const TlsIdentityRef& identity);

}  // namespace ctrust::net::detail
