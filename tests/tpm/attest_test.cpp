// Quote verification against attestations built and signed in software (the TPM-free
// unit tests); tpm_test.cpp checks the same code against real swtpm quotes.
#include "tpm/attest.h"

#include <gtest/gtest.h>
#include <tss2/tss2_mu.h>

#include <openssl/hmac.h>

#include <cstring>
#include <optional>

#include "tpm/credential.h"
#include "tpm/public.h"

namespace ctrust::tpm {
namespace {

using crypto::HashAlg;

struct Signed {
  Bytes message;
  Bytes signature;
};

Bytes marshal_attest(const TPMS_ATTEST& attest) {
  Bytes out(sizeof(TPMS_ATTEST));
  std::size_t offset = 0;
  EXPECT_EQ(Tss2_MU_TPMS_ATTEST_Marshal(&attest, out.data(), out.size(), &offset), 0U);
  out.resize(offset);
  return out;
}

class QuoteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto key = crypto::PrivateKey::generate(crypto::KeyType::kEcdsaP256);
    ASSERT_TRUE(key);
    key_ = *key;
    auto pub = key_->public_key();
    ASSERT_TRUE(pub);
    pub_ = *pub;
    auto sel = parse_pcr_list("sha256:10,16");
    ASSERT_TRUE(sel);
    values_.selection = *sel;
    values_.values = {crypto::Digest::zero(HashAlg::kSha256),
                      crypto::Digest::zero(HashAlg::kSha256)};
    values_.values[0].bytes[5] = 0x42;
  }

  Signed make_quote(ByteView nonce, const PcrValues& values,
                    std::uint16_t type = TPM2_ST_ATTEST_QUOTE,
                    std::uint32_t magic = TPM2_GENERATED_VALUE) {
    TPMS_ATTEST attest{};
    attest.magic = magic;
    attest.type = type;
    attest.extraData.size = static_cast<UINT16>(nonce.size());
    std::memcpy(attest.extraData.buffer, nonce.data(), nonce.size());
    attest.attested.quote.pcrSelect = to_tpml(values.selection);
    auto digest = pcr_digest(HashAlg::kSha256, values);
    EXPECT_TRUE(digest);
    attest.attested.quote.pcrDigest.size = 32;
    std::memcpy(attest.attested.quote.pcrDigest.buffer, digest->bytes.data(), 32);
    Signed out;
    out.message = marshal_attest(attest);
    auto der = key_->sign(out.message, crypto::SignOptions{HashAlg::kSha256, {}});
    EXPECT_TRUE(der);
    auto sig = marshal_signature(TpmSignature{TPM2_ALG_ECDSA, HashAlg::kSha256, *der});
    EXPECT_TRUE(sig);
    out.signature = *sig;
    return out;
  }

  std::optional<crypto::PrivateKey> key_;
  std::optional<crypto::PublicKey> pub_;
  PcrValues values_;
  Bytes nonce_{1, 2, 3, 4};
};

TEST_F(QuoteTest, AcceptsAGoodQuote) {
  Signed q = make_quote(nonce_, values_);
  auto verdict = verify_quote(*pub_, q.message, q.signature, nonce_, &values_);
  ASSERT_TRUE(verdict);
  EXPECT_TRUE(verdict->ok()) << verdict->problems.front();
  EXPECT_EQ(verdict->attestation.extra_data, nonce_);
}

TEST_F(QuoteTest, RejectsWrongNonceValuesSignatureAndType) {
  Signed q = make_quote(nonce_, values_);
  Bytes other_nonce{1, 2, 3, 5};
  EXPECT_FALSE(verify_quote(*pub_, q.message, q.signature, other_nonce, &values_)->ok());

  PcrValues changed = values_;
  changed.values[1].bytes[0] ^= 1;
  EXPECT_FALSE(verify_quote(*pub_, q.message, q.signature, nonce_, &changed)->ok());

  PcrValues other_sel = values_;
  other_sel.selection[0].pcrs = {10, 17};
  EXPECT_FALSE(verify_quote(*pub_, q.message, q.signature, nonce_, &other_sel)->ok());

  Bytes bad_sig = q.signature;
  bad_sig[bad_sig.size() - 1] ^= 1;
  EXPECT_FALSE(verify_quote(*pub_, q.message, bad_sig, nonce_, &values_)->ok());

  Bytes bad_msg = q.message;
  bad_msg[bad_msg.size() - 1] ^= 1;
  EXPECT_FALSE(verify_quote(*pub_, bad_msg, q.signature, nonce_, &values_)->ok());

  auto other_key = crypto::PrivateKey::generate(crypto::KeyType::kEcdsaP256);
  ASSERT_TRUE(other_key);
  EXPECT_FALSE(
      verify_quote(*other_key->public_key(), q.message, q.signature, nonce_, &values_)->ok());

  Signed certify = make_quote(nonce_, values_, TPM2_ST_ATTEST_CERTIFY);
  EXPECT_FALSE(verify_quote(*pub_, certify.message, certify.signature, nonce_, &values_)->ok());
}

TEST_F(QuoteTest, MalformedEvidenceIsARejectionNotACrash) {
  Signed q = make_quote(nonce_, values_);
  Signed no_magic = make_quote(nonce_, values_, TPM2_ST_ATTEST_QUOTE, 0x12345678);
  auto verdict = verify_quote(*pub_, no_magic.message, no_magic.signature, nonce_, &values_);
  ASSERT_TRUE(verdict);
  EXPECT_FALSE(verdict->ok());
  for (std::size_t cut = 0; cut < q.message.size(); cut += 7) {
    auto v = verify_quote(*pub_, ByteView(q.message.data(), cut), q.signature, nonce_, &values_);
    ASSERT_TRUE(v);
    EXPECT_FALSE(v->ok());
  }
  for (std::size_t cut = 0; cut < q.signature.size(); cut += 5) {
    auto v = verify_quote(*pub_, q.message, ByteView(q.signature.data(), cut), nonce_, &values_);
    ASSERT_TRUE(v);
    EXPECT_FALSE(v->ok());
  }
  Bytes trailing = q.message;
  trailing.push_back(0);
  EXPECT_FALSE(parse_attestation(trailing));
}

TEST(Signature, MarshalRoundTrip) {
  auto key = crypto::PrivateKey::generate(crypto::KeyType::kRsa2048);
  ASSERT_TRUE(key);
  Bytes msg{1, 2, 3};
  auto sig = key->sign(msg, crypto::SignOptions{HashAlg::kSha256, crypto::RsaPadding::kPkcs1v15});
  ASSERT_TRUE(sig);
  auto marshalled = marshal_signature(TpmSignature{TPM2_ALG_RSASSA, HashAlg::kSha256, *sig});
  ASSERT_TRUE(marshalled);
  auto parsed = parse_signature(*marshalled);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->scheme, TPM2_ALG_RSASSA);
  EXPECT_EQ(parsed->signature, *sig);
}

TEST(Kdfa, MatchesTheDefinition) {
  // KDFa(SHA-256, key, "STORAGE", u, v, 256) computed by hand: one HMAC block of
  // [1]32 || "STORAGE" || 0 || u || v || [256]32.
  Bytes key(32, 0x0b);
  Bytes u{0xaa, 0xbb};
  Bytes v{0xcc};
  auto out = kdfa(HashAlg::kSha256, key, "STORAGE", u, v, 256);
  ASSERT_TRUE(out);
  Bytes input{0, 0, 0, 1, 'S', 'T', 'O', 'R', 'A', 'G', 'E', 0, 0xaa, 0xbb, 0xcc, 0, 0, 1, 0};
  std::uint8_t mac[32];
  unsigned int len = 0;
  ASSERT_NE(HMAC(EVP_sha256(), key.data(), 32, input.data(), input.size(), mac, &len), nullptr);
  EXPECT_EQ(*out, Bytes(mac, mac + 32));
  // L is part of every block's input, so a longer output starts differently.
  auto longer = kdfa(HashAlg::kSha256, key, "STORAGE", u, v, 384);
  ASSERT_TRUE(longer);
  ASSERT_EQ(longer->size(), 48U);
  input[input.size() - 2] = 0x01;
  input[input.size() - 1] = 0x80;
  ASSERT_NE(HMAC(EVP_sha256(), key.data(), 32, input.data(), input.size(), mac, &len), nullptr);
  EXPECT_EQ(Bytes(longer->begin(), longer->begin() + 32), Bytes(mac, mac + 32));
}

TEST(Public, TemplatesHaveTheExpectedShape) {
  TpmPublic ek(ek_template(KeyAlg::kRsa2048).publicArea);
  EXPECT_TRUE(ek.is_restricted_decrypt());
  EXPECT_FALSE(ek.is_restricted_signing());
  TpmPublic ak(ak_template(KeyAlg::kEccP256).publicArea);
  EXPECT_TRUE(ak.is_restricted_signing());
  auto again = TpmPublic::from_tpm2b(ak.marshal_tpm2b());
  ASSERT_TRUE(again);
  EXPECT_EQ(again->marshal_tpmt(), ak.marshal_tpmt());
  Bytes trailing = ak.marshal_tpm2b();
  trailing.push_back(0);
  EXPECT_FALSE(TpmPublic::from_tpm2b(trailing));
  // A template has no key yet: the zero-size point is refused.
  EXPECT_FALSE(ak.public_key());
}

TEST(Credential, RefusesUnusableInputs) {
  TpmPublic ak(ak_template(KeyAlg::kEccP256).publicArea);
  Bytes name{0, 0x0b, 1, 2};
  EXPECT_FALSE(make_credential(ak, name, Bytes{1}));  // not an EK
  TpmPublic ek(ek_template(KeyAlg::kRsa2048).publicArea);
  EXPECT_FALSE(make_credential(ek, name, Bytes(33, 1)));  // secret too long
  EXPECT_FALSE(make_credential(ek, name, Bytes{}));
}

}  // namespace
}  // namespace ctrust::tpm
