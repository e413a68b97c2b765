#include "net/tls.h"

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <array>
#include <optional>
#include <string_view>
#include <utility>

#include "crypto/digest.h"
#include "net/openssl_util.h"
#include "util/file.h"
#include "util/text.h"
#include "util/unique_handle.h"

namespace ctrust::net {
namespace {

constexpr int kMaxDays = 36500;
// Certificates are valid from a little before now: a verifier whose clock runs behind the
// issuing host's must not see a certificate from the future.
constexpr long kBackdateSeconds = 5L * 60;
constexpr std::size_t kSerialBytes = 16;
constexpr std::size_t kMaxPemFileSize = 1 << 20;
constexpr std::size_t kMaxDnsNameLength = 253;

using UniqueX509 = UniquePtr<X509, X509_free>;
using UniqueBn = UniquePtr<BIGNUM, BN_free>;
using UniqueExtension = UniquePtr<X509_EXTENSION, X509_EXTENSION_free>;
using UniqueGeneralNames = UniquePtr<GENERAL_NAMES, GENERAL_NAMES_free>;
using UniqueGeneralName = UniquePtr<GENERAL_NAME, GENERAL_NAME_free>;
using UniqueIa5 = UniquePtr<ASN1_IA5STRING, ASN1_IA5STRING_free>;
using UniqueOctets = UniquePtr<ASN1_OCTET_STRING, ASN1_OCTET_STRING_free>;

bool is_dns_char(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '*';
}

Result<void> check_dns_name(std::string_view name) {
  bool ok = !name.empty() && name.size() <= kMaxDnsNameLength;
  for (unsigned char c : name) ok = ok && is_dns_char(c);
  if (!ok) {
    return Error(Errc::kInvalidArgument,
                 "\"" + printable(name) +
                     "\" is not a DNS name (letters, digits, '-', '.' and a leading '*.' only)");
  }
  return ok_result();
}

Result<void> set_random_serial(X509* cert) {
  std::array<unsigned char, kSerialBytes> bytes{};
  do {
    if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
      return openssl_error("generating a certificate serial number");
    }
  } while (bytes[0] == 0);  // keeps the serial at 128 bits and never zero
  UniqueBn bn(BN_bin2bn(bytes.data(), static_cast<int>(bytes.size()), nullptr));
  if (!bn || BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert)) == nullptr) {
    return openssl_error("setting the certificate serial number");
  }
  return ok_result();
}

Result<void> add_conf_extension(X509* cert, X509V3_CTX* ctx, int nid, const char* value) {
  UniqueExtension ext(X509V3_EXT_conf_nid(nullptr, ctx, nid, value));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) {
    return openssl_error(std::string("adding certificate extension ") + OBJ_nid2sn(nid));
  }
  return ok_result();
}

Result<void> add_subject_alt_names(X509* cert, const CertRequest& request) {
  if (request.dns_names.empty() && request.ip_addresses.empty()) return ok_result();
  UniqueGeneralNames names(sk_GENERAL_NAME_new_null());
  if (!names) return openssl_error("allocating subjectAltName");
  auto push = [&](int type, void* value) -> Result<void> {
    UniqueGeneralName name(GENERAL_NAME_new());
    if (!name) return openssl_error("allocating subjectAltName");
    GENERAL_NAME_set0_value(name.get(), type, value);  // `name` owns `value` now
    if (sk_GENERAL_NAME_push(names.get(), name.get()) <= 0) {
      return openssl_error("building subjectAltName");
    }
    (void)name.release();  // owned by `names`
    return ok_result();
  };
  for (const std::string& dns : request.dns_names) {
    CTRUST_TRY(check_dns_name(dns));
    UniqueIa5 ia5(ASN1_IA5STRING_new());
    if (!ia5 || ASN1_STRING_set(ia5.get(), dns.data(), static_cast<int>(dns.size())) != 1) {
      return openssl_error("encoding DNS name " + dns);
    }
    CTRUST_TRY(push(GEN_DNS, ia5.release()));
  }
  for (const std::string& ip : request.ip_addresses) {
    UniqueOctets octets(a2i_IPADDRESS(ip.c_str()));
    if (!octets || ip.find('\0') != std::string::npos) {
      ERR_clear_error();
      return Error(Errc::kInvalidArgument,
                   "\"" + printable(ip) + "\" is not an IPv4 or IPv6 address");
    }
    CTRUST_TRY(push(GEN_IPADD, octets.release()));
  }
  // RFC 5280 4.2.1.6: with an empty subject the subjectAltName must be critical.
  int critical = request.common_name.empty() ? 1 : 0;
  if (X509_add1_ext_i2d(cert, NID_subject_alt_name, names.get(), critical, X509V3_ADD_DEFAULT) !=
      1) {
    return openssl_error("adding subjectAltName");
  }
  return ok_result();
}

const char* extended_key_usage(CertRequest::Usage usage) {
  switch (usage) {
    case CertRequest::kServer:
      return "serverAuth";
    case CertRequest::kClient:
      return "clientAuth";
    case CertRequest::kServerAndClient:
      return "serverAuth,clientAuth";
  }
  return "serverAuth";
}

Result<const EVP_MD*> signing_md(const crypto::PrivateKey& key) {
  if (key.type() == crypto::KeyType::kEd25519) return static_cast<const EVP_MD*>(nullptr);
  const EVP_MD* md = crypto::evp_md(crypto::default_sign_options(key.type()).hash);
  if (md == nullptr) return openssl_error("fetching the certificate signature digest");
  return md;
}

Result<void> check_issuer(const CertRequest& request, EVP_PKEY* subject_pkey) {
  EVP_PKEY* issuer_pkey = request.issuer_key->native();
  if (request.issuer_cert == nullptr) {
    if (EVP_PKEY_eq(subject_pkey, issuer_pkey) != 1) {
      ERR_clear_error();
      return Error(Errc::kInvalidArgument,
                   "a self-signed certificate (no issuer_cert) must be for issuer_key itself; "
                   "pass the CA certificate as issuer_cert to issue for another key");
    }
    return ok_result();
  }
  X509* issuer = request.issuer_cert->native();
  if (issuer == nullptr) return Error(Errc::kInvalidArgument, "issuer_cert is empty");
  if (X509_check_private_key(issuer, issuer_pkey) != 1) {
    ERR_clear_error();
    return Error(Errc::kInvalidArgument, "issuer_key does not belong to the issuer certificate " +
                                             request.issuer_cert->subject());
  }
  if (X509_check_ca(issuer) == 0) {
    return Error(Errc::kInvalidArgument,
                 "the issuer certificate " + request.issuer_cert->subject() +
                     " is not a CA certificate (basicConstraints CA:TRUE, keyCertSign)");
  }
  return ok_result();
}

}  // namespace

Result<crypto::Certificate> make_certificate(const CertRequest& request) {
  if (request.issuer_key == nullptr) {
    return Error(Errc::kInvalidArgument, "a certificate needs an issuer_key to sign it");
  }
  if (request.days < 1 || request.days > kMaxDays) {
    return Error(Errc::kInvalidArgument, "certificate validity of " + std::to_string(request.days) +
                                             " days is out of range (1 to 36500)");
  }
  std::optional<crypto::PublicKey> own_public;
  EVP_PKEY* subject_pkey = nullptr;
  if (request.subject_key != nullptr) {
    subject_pkey = request.subject_key->native();
  } else if (request.issuer_cert == nullptr) {
    CTRUST_ASSIGN_OR_RETURN(own_public, request.issuer_key->public_key());
    subject_pkey = own_public->native();
  } else {
    return Error(Errc::kInvalidArgument, "a certificate issued by a CA needs a subject_key");
  }
  CTRUST_TRY(check_issuer(request, subject_pkey));

  UniqueX509 cert(X509_new());
  if (!cert) return openssl_error("allocating a certificate");
  if (X509_set_version(cert.get(), X509_VERSION_3) != 1) return openssl_error("X509_set_version");
  CTRUST_TRY(set_random_serial(cert.get()));
  if (X509_gmtime_adj(X509_getm_notBefore(cert.get()), -kBackdateSeconds) == nullptr ||
      X509_time_adj_ex(X509_getm_notAfter(cert.get()), request.days, 0, nullptr) == nullptr) {
    return openssl_error("setting the certificate validity");
  }
  if (X509_set_pubkey(cert.get(), subject_pkey) != 1) {
    return openssl_error("setting the certificate key");
  }
  X509_NAME* subject = X509_get_subject_name(cert.get());
  if (!request.common_name.empty()) {
    const auto* cn = reinterpret_cast<const unsigned char*>(request.common_name.data());
    if (X509_NAME_add_entry_by_NID(subject, NID_commonName, MBSTRING_UTF8, cn,
                                   static_cast<int>(request.common_name.size()), -1, 0) != 1) {
      Error detail = openssl_error("openssl");
      return Error(Errc::kInvalidArgument,
                   "common name \"" + printable(request.common_name) +
                       "\" is unusable (UTF-8, at most 64 characters): " + detail.message());
    }
  }
  X509* issuer = request.issuer_cert != nullptr ? request.issuer_cert->native() : cert.get();
  if (X509_set_issuer_name(cert.get(), X509_get_subject_name(issuer)) != 1) {
    return openssl_error("setting the certificate issuer");
  }

  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert.get(), nullptr, nullptr, 0);
  CTRUST_TRY(add_conf_extension(cert.get(), &ctx, NID_basic_constraints,
                                request.is_ca ? "critical,CA:TRUE" : "critical,CA:FALSE"));
  CTRUST_TRY(add_conf_extension(cert.get(), &ctx, NID_key_usage,
                                request.is_ca ? "critical,digitalSignature,keyCertSign,cRLSign"
                                              : "critical,digitalSignature"));
  if (!request.is_ca) {
    CTRUST_TRY(
        add_conf_extension(cert.get(), &ctx, NID_ext_key_usage, extended_key_usage(request.usage)));
  }
  CTRUST_TRY(add_conf_extension(cert.get(), &ctx, NID_subject_key_identifier, "hash"));
  CTRUST_TRY(add_conf_extension(cert.get(), &ctx, NID_authority_key_identifier, "keyid:always"));
  CTRUST_TRY(add_subject_alt_names(cert.get(), request));

  CTRUST_ASSIGN_OR_RETURN(const EVP_MD* md, signing_md(*request.issuer_key));
  if (X509_sign(cert.get(), request.issuer_key->native(), md) <= 0) {
    return openssl_error("signing the certificate");
  }
  // Hand over through DER, the one public way into crypto::Certificate.
  unsigned char* der = nullptr;
  int len = i2d_X509(cert.get(), &der);
  if (len <= 0 || der == nullptr) return openssl_error("encoding the certificate");
  auto result = crypto::Certificate::from_der(ByteView(der, static_cast<std::size_t>(len)));
  OPENSSL_free(der);
  return result;
}

Result<TlsIdentity> load_identity(const std::string& key_pem_path,
                                  const std::string& cert_pem_path) {
  CTRUST_ASSIGN_OR_RETURN(crypto::PrivateKey key, crypto::PrivateKey::load_pem_file(key_pem_path));
  CTRUST_ASSIGN_OR_RETURN(Bytes pem, read_file(cert_pem_path, kMaxPemFileSize));
  auto certs = crypto::Certificate::bundle_from_pem(
      std::string_view(reinterpret_cast<const char*>(pem.data()), pem.size()));
  if (!certs) return std::move(certs).error().with_context("certificate file " + cert_pem_path);
  crypto::Certificate leaf = certs->front();
  if (X509_check_private_key(leaf.native(), key.native()) != 1) {
    ERR_clear_error();
    return Error(Errc::kInvalidArgument,
                 "the private key " + key_pem_path + " does not belong to the certificate " +
                     leaf.subject() + " (the first certificate in " + cert_pem_path + ")");
  }
  std::vector<crypto::Certificate> chain(certs->begin() + 1, certs->end());
  return TlsIdentity{std::move(key), std::move(leaf), std::move(chain)};
}

Result<std::string> spki_fingerprint(const crypto::Certificate& cert) {
  return detail::spki_fingerprint_of(cert.native());
}

Result<std::vector<crypto::Certificate>> load_certificates(const std::vector<std::string>& paths) {
  std::vector<crypto::Certificate> out;
  for (const auto& path : paths) {
    CTRUST_ASSIGN_OR_RETURN(Bytes pem, read_file(path, std::size_t{4} << 20));
    auto certs = crypto::Certificate::bundle_from_pem(
        std::string_view(reinterpret_cast<const char*>(pem.data()), pem.size()));
    if (!certs) return std::move(certs).error().with_context(path);
    out.insert(out.end(), certs->begin(), certs->end());
  }
  return out;
}

}  // namespace ctrust::net
