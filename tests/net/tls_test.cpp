#include "net/tls.h"

#include <gtest/gtest.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <ctime>
#include <fstream>
#include <string>

#include "support/temp_dir.h"
#include "util/unique_handle.h"

namespace ctrust::net {
namespace {

using ctrust::testing::TempDir;

crypto::PrivateKey new_key(crypto::KeyType type = crypto::KeyType::kEcdsaP256) {
  auto key = crypto::PrivateKey::generate(type);
  EXPECT_TRUE(key.ok());
  return std::move(key).value();
}

crypto::PublicKey public_of(const crypto::PrivateKey& key) {
  auto pub = key.public_key();
  EXPECT_TRUE(pub.ok());
  return std::move(pub).value();
}

crypto::Certificate make_ca(const crypto::PrivateKey& key, const std::string& cn = "Test CA") {
  CertRequest req;
  req.common_name = cn;
  req.is_ca = true;
  req.issuer_key = &key;
  auto cert = make_certificate(req);
  EXPECT_TRUE(cert.ok()) << cert.error().message();
  return std::move(cert).value();
}

// Verifies `leaf` against `ca` for `purpose` (X509_PURPOSE_SSL_SERVER/CLIENT) and, if
// given, a host name: what a TLS peer would check.
std::string verify(const crypto::Certificate& leaf, const crypto::Certificate& ca, int purpose,
                   const std::string& host = {}) {
  UniquePtr<X509_STORE, X509_STORE_free> store(X509_STORE_new());
  UniquePtr<X509_STORE_CTX, X509_STORE_CTX_free> ctx(X509_STORE_CTX_new());
  X509_STORE_add_cert(store.get(), ca.native());
  X509_STORE_CTX_init(ctx.get(), store.get(), leaf.native(), nullptr);
  X509_STORE_CTX_set_purpose(ctx.get(), purpose);
  X509_VERIFY_PARAM_set_flags(X509_STORE_CTX_get0_param(ctx.get()), X509_V_FLAG_X509_STRICT);
  if (!host.empty())
    X509_VERIFY_PARAM_set1_host(X509_STORE_CTX_get0_param(ctx.get()), host.c_str(), 0);
  if (X509_verify_cert(ctx.get()) == 1) return {};
  return X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get()));
}

TEST(MakeCertificate, CaIssuesServerAndClientCertificates) {
  auto ca_key = new_key();
  auto ca = make_ca(ca_key);
  EXPECT_EQ(X509_check_ca(ca.native()), 1);

  auto leaf_key = new_key(crypto::KeyType::kEd25519);
  auto leaf_pub = public_of(leaf_key);
  CertRequest req;
  req.subject_key = &leaf_pub;
  req.common_name = "agent-1";
  req.dns_names = {"agent-1.example", "localhost"};
  req.ip_addresses = {"127.0.0.1", "::1"};
  req.usage = CertRequest::kServer;
  req.issuer_key = &ca_key;
  req.issuer_cert = &ca;
  auto server = make_certificate(req);
  ASSERT_TRUE(server.ok()) << server.error().message();
  EXPECT_EQ(server->subject(), "CN=agent-1");
  EXPECT_EQ(server->issuer(), "CN=Test CA");
  EXPECT_EQ(verify(*server, ca, X509_PURPOSE_SSL_SERVER, "agent-1.example"), "");
  EXPECT_NE(verify(*server, ca, X509_PURPOSE_SSL_SERVER, "other.example"), "");
  EXPECT_NE(verify(*server, ca, X509_PURPOSE_SSL_CLIENT), "") << "serverAuth only";
  EXPECT_EQ(X509_check_ip_asc(server->native(), "127.0.0.1", 0), 1);
  EXPECT_EQ(X509_check_ip_asc(server->native(), "::1", 0), 1);
  EXPECT_EQ(X509_check_ca(server->native()), 0);

  req.usage = CertRequest::kClient;
  auto client = make_certificate(req);
  ASSERT_TRUE(client.ok());
  EXPECT_EQ(verify(*client, ca, X509_PURPOSE_SSL_CLIENT), "");
  EXPECT_NE(verify(*client, ca, X509_PURPOSE_SSL_SERVER), "");

  req.usage = CertRequest::kServerAndClient;
  auto both = make_certificate(req);
  ASSERT_TRUE(both.ok());
  EXPECT_EQ(verify(*both, ca, X509_PURPOSE_SSL_CLIENT), "");
  EXPECT_EQ(verify(*both, ca, X509_PURPOSE_SSL_SERVER), "");
}

TEST(MakeCertificate, ExtensionsSerialAndValidity) {
  auto ca_key = new_key(crypto::KeyType::kEcdsaP384);
  auto ca = make_ca(ca_key);
  auto key = new_key();
  auto pub = public_of(key);
  CertRequest req;
  req.subject_key = &pub;
  req.common_name = "x";
  req.days = 10;
  req.issuer_key = &ca_key;
  req.issuer_cert = &ca;
  auto a = make_certificate(req);
  auto b = make_certificate(req);
  ASSERT_TRUE(a.ok() && b.ok());
  X509* x = a->native();
  // basicConstraints and keyUsage critical; SKI, AKI present; AKI = the CA's SKI.
  int idx = X509_get_ext_by_NID(x, NID_basic_constraints, -1);
  ASSERT_GE(idx, 0);
  EXPECT_EQ(X509_EXTENSION_get_critical(X509_get_ext(x, idx)), 1);
  idx = X509_get_ext_by_NID(x, NID_key_usage, -1);
  ASSERT_GE(idx, 0);
  EXPECT_EQ(X509_EXTENSION_get_critical(X509_get_ext(x, idx)), 1);
  EXPECT_EQ(X509_get_key_usage(x) & KU_DIGITAL_SIGNATURE, KU_DIGITAL_SIGNATURE);
  EXPECT_EQ(X509_get_key_usage(x) & KU_KEY_CERT_SIGN, 0U);
  EXPECT_EQ(X509_get_key_usage(ca.native()) & KU_KEY_CERT_SIGN, KU_KEY_CERT_SIGN);
  const ASN1_OCTET_STRING* ski = X509_get0_subject_key_id(x);
  const ASN1_OCTET_STRING* aki = X509_get0_authority_key_id(x);
  const ASN1_OCTET_STRING* ca_ski = X509_get0_subject_key_id(ca.native());
  ASSERT_NE(ski, nullptr);
  ASSERT_NE(aki, nullptr);
  ASSERT_NE(ca_ski, nullptr);
  EXPECT_EQ(ASN1_OCTET_STRING_cmp(aki, ca_ski), 0);
  // The CA is self-signed: its AKI names its own key.
  ASSERT_NE(X509_get0_authority_key_id(ca.native()), nullptr);
  EXPECT_EQ(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(ca.native()), ca_ski), 0);
  // Random serials of 128 bits; different each time.
  const ASN1_INTEGER* sa = X509_get0_serialNumber(a->native());
  const ASN1_INTEGER* sb = X509_get0_serialNumber(b->native());
  EXPECT_NE(ASN1_INTEGER_cmp(sa, sb), 0);
  EXPECT_EQ(ASN1_STRING_length(sa), 16);
  // Signed with SHA-384 by the P-384 CA.
  EXPECT_EQ(X509_get_signature_nid(x), NID_ecdsa_with_SHA384);
  // Validity: from a few minutes ago to `days` from now.
  std::time_t now = std::time(nullptr);
  EXPECT_EQ(X509_cmp_time(X509_get0_notBefore(x), &now), -1);
  std::time_t in_9_days = now + 9L * 86400;
  std::time_t in_11_days = now + 11L * 86400;
  EXPECT_EQ(X509_cmp_time(X509_get0_notAfter(x), &in_9_days), 1);
  EXPECT_EQ(X509_cmp_time(X509_get0_notAfter(x), &in_11_days), -1);
}

TEST(MakeCertificate, SelfSignedForTheIssuerKey) {
  for (auto type :
       {crypto::KeyType::kEcdsaP256, crypto::KeyType::kEd25519, crypto::KeyType::kRsa2048}) {
    auto key = new_key(type);
    CertRequest req;
    req.common_name = "agent";
    req.ip_addresses = {"127.0.0.1"};
    req.issuer_key = &key;  // no subject_key: the issuer's own
    auto cert = make_certificate(req);
    ASSERT_TRUE(cert.ok()) << cert.error().message();
    EXPECT_EQ(verify(*cert, *cert, X509_PURPOSE_SSL_SERVER), "");
    auto fp = spki_fingerprint(*cert);
    ASSERT_TRUE(fp.ok());
    auto expected = public_of(key).fingerprint();
    ASSERT_TRUE(expected.ok());
    EXPECT_EQ(*fp, expected->hex());
    EXPECT_EQ(fp->size(), 64U);
  }
}

TEST(MakeCertificate, EmptySubjectMakesSanCritical) {
  auto key = new_key();
  CertRequest req;
  req.dns_names = {"only.example"};
  req.issuer_key = &key;
  auto cert = make_certificate(req);
  ASSERT_TRUE(cert.ok()) << cert.error().message();
  int idx = X509_get_ext_by_NID(cert->native(), NID_subject_alt_name, -1);
  ASSERT_GE(idx, 0);
  EXPECT_EQ(X509_EXTENSION_get_critical(X509_get_ext(cert->native(), idx)), 1);
}

TEST(MakeCertificate, RefusesBadRequests) {
  auto ca_key = new_key();
  auto ca = make_ca(ca_key);
  auto other_key = new_key();
  auto other_pub = public_of(other_key);

  CertRequest no_issuer;
  no_issuer.subject_key = &other_pub;
  EXPECT_FALSE(make_certificate(no_issuer).ok());

  CertRequest self_mismatch;
  self_mismatch.subject_key = &other_pub;
  self_mismatch.issuer_key = &ca_key;  // no issuer_cert: would be self-signed
  auto r = make_certificate(self_mismatch);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("self-signed"), std::string::npos);

  CertRequest wrong_issuer_key;
  wrong_issuer_key.subject_key = &other_pub;
  wrong_issuer_key.issuer_key = &other_key;
  wrong_issuer_key.issuer_cert = &ca;
  EXPECT_FALSE(make_certificate(wrong_issuer_key).ok());

  // A leaf cannot issue.
  CertRequest leaf_req;
  leaf_req.subject_key = &other_pub;
  leaf_req.common_name = "leaf";
  leaf_req.issuer_key = &ca_key;
  leaf_req.issuer_cert = &ca;
  auto leaf = make_certificate(leaf_req);
  ASSERT_TRUE(leaf.ok());
  auto third = new_key();
  auto third_pub = public_of(third);
  CertRequest from_leaf;
  from_leaf.subject_key = &third_pub;
  from_leaf.issuer_key = &other_key;
  from_leaf.issuer_cert = &*leaf;
  r = make_certificate(from_leaf);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("not a CA"), std::string::npos);

  CertRequest bad = leaf_req;
  bad.dns_names = {"a.example,DNS:evil.example"};
  EXPECT_FALSE(make_certificate(bad).ok());
  bad = leaf_req;
  bad.dns_names = {""};
  EXPECT_FALSE(make_certificate(bad).ok());
  bad = leaf_req;
  bad.ip_addresses = {"300.1.1.1"};
  EXPECT_FALSE(make_certificate(bad).ok());
  bad = leaf_req;
  bad.days = 0;
  EXPECT_FALSE(make_certificate(bad).ok());
  bad = leaf_req;
  bad.common_name = std::string(65, 'a');
  EXPECT_FALSE(make_certificate(bad).ok());
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

TEST(LoadIdentity, ReadsKeyLeafAndChain) {
  TempDir dir;
  auto root_key = new_key();
  auto root = make_ca(root_key, "Root");
  auto inter_key = new_key();
  auto inter_pub = public_of(inter_key);
  CertRequest inter_req;
  inter_req.subject_key = &inter_pub;
  inter_req.common_name = "Intermediate";
  inter_req.is_ca = true;
  inter_req.issuer_key = &root_key;
  inter_req.issuer_cert = &root;
  auto inter = make_certificate(inter_req);
  ASSERT_TRUE(inter.ok()) << inter.error().message();
  auto key = new_key();
  auto pub = public_of(key);
  CertRequest req;
  req.subject_key = &pub;
  req.common_name = "server";
  req.issuer_key = &inter_key;
  req.issuer_cert = &*inter;
  auto leaf = make_certificate(req);
  ASSERT_TRUE(leaf.ok());

  ASSERT_TRUE(key.save_pem_file(dir.file("key.pem")).ok());
  write_text(dir.file("chain.pem"), *leaf->to_pem() + *inter->to_pem());
  auto id = load_identity(dir.file("key.pem"), dir.file("chain.pem"));
  ASSERT_TRUE(id.ok()) << id.error().message();
  EXPECT_EQ(id->cert.subject(), "CN=server");
  ASSERT_EQ(id->chain.size(), 1U);
  EXPECT_EQ(id->chain[0].subject(), "CN=Intermediate");

  // The key of another certificate.
  ASSERT_TRUE(inter_key.save_pem_file(dir.file("wrong.pem")).ok());
  auto wrong = load_identity(dir.file("wrong.pem"), dir.file("chain.pem"));
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.error().message().find("does not belong"), std::string::npos);

  write_text(dir.file("empty.pem"), "");
  EXPECT_FALSE(load_identity(dir.file("key.pem"), dir.file("empty.pem")).ok());
  EXPECT_FALSE(load_identity(dir.file("missing.pem"), dir.file("chain.pem")).ok());
}

}  // namespace
}  // namespace ctrust::net
