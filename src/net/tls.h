// X.509 and TLS identity utilities for the HTTPS API between agents and verifiers.
//
// make_certificate() issues the certificates the deployment needs without a separate PKI
// tool: a CA, server and client certificates signed by it, or a self-signed agent
// certificate whose key the verifier pins through attestation. load_identity() reads a
// key and a certificate chain as a TLS endpoint presents them. spki_fingerprint() is the
// key identifier pinned by clients and reported to servers (same value as
// crypto::PublicKey::fingerprint().hex()).
//
// Ownership: TlsIdentity owns its key and certificates (shared, immutable OpenSSL objects).
// Thread safety: all functions are thread safe; the values may be shared between threads.
#pragma once

#include <string>
#include <vector>

#include "crypto/keys.h"
#include "util/result.h"

namespace ctrust::net {

struct CertRequest {
  // The key the certificate is for. May be null for a self-signed certificate, which is
  // then for issuer_key.
  const crypto::PublicKey* subject_key = nullptr;
  std::string common_name;                // may be empty (then the subject is empty)
  std::vector<std::string> dns_names;     // subjectAltName dNSName entries
  std::vector<std::string> ip_addresses;  // subjectAltName iPAddress entries (v4 or v6)
  int days = 825;                         // validity, counted from now (1 .. 36500)
  bool is_ca = false;  // a CA certificate: keyCertSign, cRLSign, no extended key usage
  enum Usage { kServer, kClient, kServerAndClient };
  Usage usage = kServer;  // the extended key usage of a leaf (ignored for a CA)
  const crypto::PrivateKey* issuer_key = nullptr;  // required: signs the certificate
  // The issuer's certificate (a CA matching issuer_key); null: self-signed by issuer_key.
  const crypto::Certificate* issuer_cert = nullptr;
};

// An X.509 v3 certificate with a random 128-bit serial, subject and authority key
// identifiers, a critical basicConstraints and keyUsage, the extended key usage from
// `usage` (serverAuth and/or clientAuth) and the subjectAltNames, signed by issuer_key
// (SHA-256; SHA-384 for P-384 issuers; pure Ed25519). Valid from 5 minutes ago, to allow
// for clock skew between hosts.
Result<crypto::Certificate> make_certificate(const CertRequest& request);

struct TlsIdentity {
  crypto::PrivateKey key;
  crypto::Certificate cert;                // the leaf
  std::vector<crypto::Certificate> chain;  // intermediates after the leaf (may be empty)
};

// Reads a PEM private key and a PEM certificate file (the leaf first, then any
// intermediates, as servers present them) and checks that the key is the leaf's.
Result<TlsIdentity> load_identity(const std::string& key_pem_path,
                                  const std::string& cert_pem_path);

// Lowercase hex SHA-256 of the certificate's DER SubjectPublicKeyInfo.
Result<std::string> spki_fingerprint(const crypto::Certificate& cert);

// Every certificate of every PEM file (CA bundles); an error names the file.
Result<std::vector<crypto::Certificate>> load_certificates(const std::vector<std::string>& paths);

}  // namespace ctrust::net
