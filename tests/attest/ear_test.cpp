#include "attest/ear.h"
#include "attest/jwt.h"
#include "support/temp_dir.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace ctrust::attest {
namespace {

using json = nlohmann::json;
using crypto::KeyType;
using crypto::PrivateKey;
using crypto::PublicKey;
using ctrust::testing::TempDir;

const PrivateKey& test_key(int index = 0) {
  static std::vector<PrivateKey> keys;
  while (keys.size() <= static_cast<std::size_t>(index)) {
    auto key = PrivateKey::generate(KeyType::kEcdsaP256);
    if (!key) {
      ADD_FAILURE() << key.error().message();
      std::abort();
    }
    keys.push_back(std::move(key).value());
  }
  return keys[static_cast<std::size_t>(index)];
}

PublicKey test_pub(int index = 0) {
  auto pub = test_key(index).public_key();
  if (!pub) std::abort();
  return std::move(pub).value();
}

std::string b64(std::string_view s) { return base64url_encode(as_bytes(s)); }

std::string text_of(const Bytes& b) { return std::string(b.begin(), b.end()); }

// A compact JWS over arbitrary header and payload text, signed with `key` (ES256), so that
// tests can build tokens sign_jwt() refuses to make.
std::string raw_token(const std::string& header, const std::string& payload,
                      const PrivateKey& key = test_key()) {
  std::string input = b64(header) + "." + b64(payload);
  auto der = key.sign(as_bytes(input), crypto::SignOptions{});
  EXPECT_TRUE(der.ok());
  auto raw = ecdsa_der_to_raw(*der, 32);
  EXPECT_TRUE(raw.ok());
  return input + "." + base64url_encode(*raw);
}

std::vector<std::string> split(const std::string& token) {
  std::vector<std::string> parts;
  std::stringstream ss(token);
  std::string part;
  while (std::getline(ss, part, '.')) parts.push_back(part);
  return parts;
}

void expect_error(const Result<VerifiedJwt>& r, Errc code, const std::string& part) {
  ASSERT_FALSE(r.ok()) << "expected an error containing \"" << part << "\"";
  EXPECT_EQ(r.error().code(), code) << r.error().message();
  EXPECT_NE(r.error().message().find(part), std::string::npos) << r.error().message();
}

Ear sample_ear() {
  Ear ear;
  ear.iat = 1700000000;
  ear.verifier_id = {"https://github.com/ctrust", "ctrust-verifier 0.1.0"};
  ear.nonce = "bm9uY2Utbm9uY2Utbm9uY2U";
  ear.raw_evidence = {1, 2, 3, 250};
  Submod host;
  host.name = "host";
  host.status = Status::kAffirming;
  host.vector.instance_identity = ar4si::kTrustworthyInstance;
  host.vector.hardware = ar4si::kGenuineHardware;
  host.vector.executables = ar4si::kApprovedRuntime;
  host.vector.configuration = ar4si::kNoClaim;
  host.policy_id = "policy:host/3";
  Submod c;
  c.name = "container/4f2a";
  c.status = Status::kContraindicated;
  c.vector.executables = ar4si::kContraindicatedRuntime;
  c.vector.file_system = ar4si::kApprovedFiles;
  c.reasons.push_back(
      {"digest-not-allowed", "/usr/bin/nc is not in the policy", 17, "allow", "container/4f2a"});
  c.reasons.push_back({"log-gap", "log ends early", std::nullopt, "", ""});
  c.extra = {{"ear.ctrust.image", "sha256:abcd"}};
  ear.submods = {c, host};  // from_claims returns them sorted by name: this order already is
  return ear;
}

// ---- base64url -----------------------------------------------------------------------------

TEST(Base64url, Rfc4648Vectors) {
  const std::array<std::pair<const char*, const char*>, 7> vectors = {{{"", ""},
                                                                       {"f", "Zg"},
                                                                       {"fo", "Zm8"},
                                                                       {"foo", "Zm9v"},
                                                                       {"foob", "Zm9vYg"},
                                                                       {"fooba", "Zm9vYmE"},
                                                                       {"foobar", "Zm9vYmFy"}}};
  for (const auto& [plain, encoded] : vectors) {
    EXPECT_EQ(b64(plain), encoded);
    auto decoded = base64url_decode(encoded);
    ASSERT_TRUE(decoded.ok()) << encoded;
    EXPECT_EQ(text_of(*decoded), plain);
  }
  Bytes url_chars = {0xfb, 0xff, 0xbf};
  EXPECT_EQ(base64url_encode(url_chars), "-_-_");
  EXPECT_EQ(*base64url_decode("-_-_"), url_chars);
}

TEST(Base64url, RejectsNonCanonicalInput) {
  for (const char* bad :
       {"Zg==", "Zg=", "Zm+v", "Zm/v", "Zm 9", "Z", "Zm9vY", "Zh", "Zm9", "Zm\n9v", "\xc3\xa9"}) {
    auto r = base64url_decode(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_EQ(r.error().code(), Errc::kFormat);
    }
  }
  EXPECT_NE(base64url_decode("Zg==").error().message().find("padding"), std::string::npos);
  EXPECT_TRUE(base64url_decode("Zm8").ok());
}

TEST(Ecdsa, DerAndRawConvertBothWays) {
  for (int i = 0; i < 20; ++i) {
    std::string msg = "message " + std::to_string(i);
    auto der = test_key().sign(as_bytes(msg), crypto::SignOptions{});
    ASSERT_TRUE(der.ok());
    auto raw = ecdsa_der_to_raw(*der, 32);
    ASSERT_TRUE(raw.ok());
    ASSERT_EQ(raw->size(), 64u);
    auto back = ecdsa_raw_to_der(*raw);
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, *der);
  }
  EXPECT_FALSE(ecdsa_der_to_raw(Bytes{0x30, 0x00}, 32).ok());
  EXPECT_FALSE(ecdsa_raw_to_der(Bytes(63, 1)).ok());
  EXPECT_FALSE(ecdsa_raw_to_der(Bytes{}).ok());
}

// ---- JWT -----------------------------------------------------------------------------------

TEST(Jwt, SignVerifyRoundTrip) {
  json claims = {{"sub", "agent-1"}, {"n", 42}, {"nested", {{"a", json::array({1, 2})}}}};
  auto token = sign_jwt({{"kid", "abc"}}, claims, test_key());
  ASSERT_TRUE(token.ok()) << token.error().message();
  EXPECT_EQ(split(*token).size(), 3u);
  EXPECT_EQ(token->find('='), std::string::npos);
  auto v = verify_jwt(*token, test_pub());
  ASSERT_TRUE(v.ok()) << v.error().message();
  EXPECT_EQ(v->claims, claims);
  EXPECT_EQ(v->header, json({{"alg", "ES256"}, {"typ", "JWT"}, {"kid", "abc"}}));
  EXPECT_EQ(split(*token)[2].size(), 86u);  // 64 bytes
}

TEST(Jwt, SignRefusesBadArguments) {
  EXPECT_FALSE(sign_jwt({}, json::array(), test_key()).ok());
  EXPECT_FALSE(sign_jwt({{"alg", "none"}}, json::object(), test_key()).ok());
  EXPECT_FALSE(sign_jwt({{"crit", json::array({"x"})}}, json::object(), test_key()).ok());
  EXPECT_FALSE(sign_jwt(json::array(), json::object(), test_key()).ok());
  EXPECT_FALSE(sign_jwt({}, {{"bad", "\xff"}}, test_key()).ok());  // not UTF-8
  auto p384 = PrivateKey::generate(KeyType::kEcdsaP384);
  ASSERT_TRUE(p384.ok());
  auto r = sign_jwt({}, json::object(), *p384);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Errc::kInvalidArgument);
  auto p384_pub = p384->public_key();
  ASSERT_TRUE(p384_pub.ok());
  auto token = sign_jwt({}, json::object(), test_key());
  ASSERT_TRUE(token.ok());
  EXPECT_FALSE(verify_jwt(*token, *p384_pub).ok());
}

TEST(Jwt, RejectsTampering) {
  auto token = sign_jwt({{"kid", "k"}}, {{"status", "contraindicated"}}, test_key());
  ASSERT_TRUE(token.ok());
  auto parts = split(*token);
  ASSERT_EQ(parts.size(), 3u);
  // A different payload under the original signature.
  std::string payload = b64(R"({"status":"affirming"})");
  expect_error(verify_jwt(parts[0] + "." + payload + "." + parts[2], test_pub()), Errc::kCrypto,
               "JWT signature does not verify");
  // A different header (another kid).
  std::string header = b64(R"({"alg":"ES256","kid":"other","typ":"JWT"})");
  expect_error(verify_jwt(header + "." + parts[1] + "." + parts[2], test_pub()), Errc::kCrypto,
               "JWT signature does not verify");
  // Every bit of the signature matters.
  auto sig = base64url_decode(parts[2]);
  ASSERT_TRUE(sig.ok());
  for (std::size_t i = 0; i < sig->size(); i += 7) {
    Bytes flipped = *sig;
    flipped[i] ^= 0x01;
    expect_error(
        verify_jwt(parts[0] + "." + parts[1] + "." + base64url_encode(flipped), test_pub()),
        Errc::kCrypto, "does not verify");
  }
  // Another key's signature.
  expect_error(verify_jwt(*token, test_pub(1)), Errc::kCrypto, "does not verify");
  // The high-s twin (n - s) of a valid signature is still a valid ECDSA signature; JWS
  // does not forbid it, so it is accepted: tokens are not unique, their contents are.
}

TEST(Jwt, RejectsOtherAlgorithms) {
  std::string payload = b64(R"({"sub":"x"})");
  // alg none, with and without an (empty) signature part.
  expect_error(verify_jwt(b64(R"({"alg":"none"})") + "." + payload + ".", test_pub()),
               Errc::kFormat, "\"none\" is not accepted");
  expect_error(verify_jwt(b64(R"({"alg":"none"})") + "." + payload, test_pub()), Errc::kFormat,
               "three base64url parts");
  // HS256 keyed with the verifier's public key PEM: the classic algorithm confusion.
  auto pem = test_pub().to_pem();
  ASSERT_TRUE(pem.ok());
  std::string input = b64(R"({"alg":"HS256","typ":"JWT"})") + "." + payload;
  std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
  unsigned int mac_len = 0;
  ASSERT_NE(HMAC(EVP_sha256(), pem->data(), static_cast<int>(pem->size()),
                 reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac.data(),
                 &mac_len),
            nullptr);
  std::string hs_token = input + "." + base64url_encode(ByteView(mac.data(), mac_len));
  expect_error(verify_jwt(hs_token, test_pub()), Errc::kFormat, "only ES256");
  // Near misses and other ECDSA/RSA names, each validly signed with our key.
  for (const char* alg : {"es256", "ES256 ", "ES384", "ES512", "RS256", "PS256", "EdDSA", ""}) {
    std::string header = json({{"alg", alg}}).dump();
    expect_error(verify_jwt(raw_token(header, R"({})"), test_pub()), Errc::kFormat,
                 "is not accepted");
  }
  expect_error(verify_jwt(raw_token(R"({"typ":"JWT"})", R"({})"), test_pub()), Errc::kFormat,
               "no \"alg\"");
  expect_error(verify_jwt(raw_token(R"({"alg":["ES256"]})", R"({})"), test_pub()), Errc::kFormat,
               "no \"alg\"");
  expect_error(
      verify_jwt(raw_token(R"({"alg":"ES256","crit":["b64"],"b64":false})", R"({})"), test_pub()),
      Errc::kFormat, "crit");
  expect_error(verify_jwt(raw_token(R"({"alg":"ES256","typ":1})", R"({})"), test_pub()),
               Errc::kFormat, "typ");
}

TEST(Jwt, RejectsMalformedTokens) {
  auto token = sign_jwt({}, {{"a", 1}}, test_key());
  ASSERT_TRUE(token.ok());
  auto p = split(*token);
  const PublicKey pub = test_pub();
  for (const std::string& bad :
       {std::string(), std::string("."), std::string(".."), std::string("..."), p[0],
        p[0] + "." + p[1], p[0] + "." + p[1] + "." + p[2] + ".",
        p[0] + "." + p[1] + "." + p[2] + "." + p[2], "." + *token}) {
    auto r = verify_jwt(bad, pub);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_EQ(r.error().code(), Errc::kFormat) << bad;
    }
  }
  expect_error(verify_jwt(p[0] + "=." + p[1] + "." + p[2], pub), Errc::kFormat, "padding");
  expect_error(verify_jwt(p[0] + "." + p[1] + "." + p[2] + "==", pub), Errc::kFormat, "padding");
  expect_error(verify_jwt(p[0] + "." + p[1] + "+." + p[2], pub), Errc::kFormat, "bad character");
  expect_error(verify_jwt("!" + *token, pub), Errc::kFormat, "bad character");
  expect_error(verify_jwt(p[0] + " ." + p[1] + "." + p[2], pub), Errc::kFormat, "bad character");
  // Header: not JSON, not an object, duplicate keys.
  expect_error(verify_jwt(b64("not json") + "." + p[1] + "." + p[2], pub), Errc::kFormat,
               "JWT header: malformed JSON");
  expect_error(verify_jwt(b64(R"(["ES256"])") + "." + p[1] + "." + p[2], pub), Errc::kFormat,
               "JWT header is not a JSON object");
  expect_error(verify_jwt(b64(R"("ES256")") + "." + p[1] + "." + p[2], pub), Errc::kFormat,
               "not a JSON object");
  expect_error(verify_jwt(b64(R"({"alg":"ES256","alg":"none"})") + "." + p[1] + "." + p[2], pub),
               Errc::kFormat, "duplicate key");
  // Signature of the wrong size.
  auto sig = base64url_decode(p[2]);
  ASSERT_TRUE(sig.ok());
  Bytes short_sig(sig->begin(), sig->end() - 1);
  Bytes long_sig = *sig;
  long_sig.push_back(0);
  expect_error(verify_jwt(p[0] + "." + p[1] + "." + base64url_encode(short_sig), pub),
               Errc::kFormat, "63 bytes");
  expect_error(verify_jwt(p[0] + "." + p[1] + "." + base64url_encode(long_sig), pub), Errc::kFormat,
               "65 bytes");
  expect_error(verify_jwt(p[0] + "." + p[1] + ".", pub), Errc::kFormat, "0 bytes");
  // A DER signature instead of r || s.
  auto der = ecdsa_raw_to_der(*sig);
  ASSERT_TRUE(der.ok());
  expect_error(verify_jwt(p[0] + "." + p[1] + "." + base64url_encode(*der), pub), Errc::kFormat,
               "ES256 signatures are 64");
  // Validly signed claims that are not an object, or not JSON.
  const std::string header = R"({"alg":"ES256"})";
  expect_error(verify_jwt(raw_token(header, "[1,2]"), pub), Errc::kFormat,
               "JWT claims is not a JSON object");
  expect_error(verify_jwt(raw_token(header, "42"), pub), Errc::kFormat, "not a JSON object");
  expect_error(verify_jwt(raw_token(header, R"({"a":1)"), pub), Errc::kFormat, "malformed JSON");
  expect_error(verify_jwt(raw_token(header, R"({"a":1,"a":2})"), pub), Errc::kFormat,
               "duplicate key");
  expect_error(verify_jwt(raw_token(header, std::string(40, '[') + std::string(40, ']')), pub),
               Errc::kFormat, "nesting");
  EXPECT_TRUE(verify_jwt(raw_token(header, "{}"), pub).ok());
  // Oversized.
  std::string big = raw_token(header, json({{"pad", std::string(kMaxJwtBytes, 'x')}}).dump());
  expect_error(verify_jwt(big, pub), Errc::kLimit, "limit");
}

TEST(Jwt, JwkOfP256Key) {
  const PublicKey pub = test_pub();
  auto jwk = jwk_of(pub);
  ASSERT_TRUE(jwk.ok()) << jwk.error().message();
  EXPECT_EQ((*jwk)["kty"], "EC");
  EXPECT_EQ((*jwk)["crv"], "P-256");
  EXPECT_EQ((*jwk)["x"].get<std::string>().size(), 43u);
  EXPECT_EQ((*jwk)["y"].get<std::string>().size(), 43u);
  auto fp = pub.fingerprint();
  ASSERT_TRUE(fp.ok());
  EXPECT_EQ((*jwk)["kid"], fp->hex().substr(0, 16));
  EXPECT_EQ(*jwk_kid(pub), fp->hex().substr(0, 16));
  // x and y are the uncompressed point inside the DER SubjectPublicKeyInfo (its last 64 bytes).
  auto der = pub.to_der();
  ASSERT_TRUE(der.ok());
  Bytes point(der->end() - 64, der->end());
  EXPECT_EQ(*base64url_decode((*jwk)["x"].get<std::string>()),
            Bytes(point.begin(), point.begin() + 32));
  EXPECT_EQ(*base64url_decode((*jwk)["y"].get<std::string>()),
            Bytes(point.begin() + 32, point.end()));
  auto p384 = PrivateKey::generate(KeyType::kEcdsaP384);
  ASSERT_TRUE(p384.ok());
  EXPECT_FALSE(jwk_of(*p384->public_key()).ok());
}

// ---- EAR -----------------------------------------------------------------------------------

TEST(Ear, StatusNamesAndOrder) {
  for (Status s : {Status::kNone, Status::kAffirming, Status::kWarning, Status::kContraindicated}) {
    EXPECT_EQ(parse_status(status_name(s)), s);
  }
  EXPECT_FALSE(parse_status("Affirming").has_value());
  EXPECT_FALSE(parse_status("").has_value());
  EXPECT_EQ(worse_of(Status::kAffirming, Status::kWarning), Status::kWarning);
  EXPECT_EQ(worse_of(Status::kWarning, Status::kNone), Status::kNone);
  EXPECT_EQ(worse_of(Status::kNone, Status::kContraindicated), Status::kContraindicated);
  EXPECT_EQ(worse_of(Status::kAffirming, Status::kNone), Status::kNone);
  EXPECT_EQ(worse_of(Status::kAffirming, Status::kAffirming), Status::kAffirming);
}

TEST(Ear, Ar4siTiers) {
  EXPECT_EQ(claim_tier(0), Status::kNone);
  EXPECT_EQ(claim_tier(1), Status::kNone);
  EXPECT_EQ(claim_tier(-1), Status::kNone);
  EXPECT_EQ(claim_tier(2), Status::kAffirming);
  EXPECT_EQ(claim_tier(31), Status::kAffirming);
  EXPECT_EQ(claim_tier(-31), Status::kAffirming);
  EXPECT_EQ(claim_tier(32), Status::kWarning);
  EXPECT_EQ(claim_tier(95), Status::kWarning);
  EXPECT_EQ(claim_tier(-95), Status::kWarning);
  EXPECT_EQ(claim_tier(96), Status::kContraindicated);
  EXPECT_EQ(claim_tier(127), Status::kContraindicated);
  EXPECT_EQ(claim_tier(-128), Status::kContraindicated);
  EXPECT_EQ(claim_tier(128), Status::kContraindicated);
  TrustVector v;
  EXPECT_EQ(v.tier(), Status::kNone);
  v.configuration = 0;
  EXPECT_EQ(v.tier(), Status::kNone);
  v.hardware = 2;
  EXPECT_EQ(v.tier(), Status::kAffirming);  // 0 is "no claim"
  v.executables = 33;
  EXPECT_EQ(v.tier(), Status::kWarning);
  v.instance_identity = -1;  // verifier malfunction: none, below warning
  EXPECT_EQ(v.tier(), Status::kNone);
  v.file_system = 96;
  EXPECT_EQ(v.tier(), Status::kContraindicated);
}

TEST(Ear, OverallIsTheLeastTrustedSubmod) {
  Ear ear = sample_ear();
  EXPECT_EQ(ear.overall(), Status::kContraindicated);
  ear.submods[0].status = Status::kWarning;
  ear.submods[0].vector = {};
  EXPECT_EQ(ear.overall(), Status::kWarning);
  ear.submods[0].status = Status::kNone;
  EXPECT_EQ(ear.overall(), Status::kNone);
  ear.submods.clear();
  EXPECT_EQ(ear.overall(), Status::kNone);
}

TEST(Ear, ClaimsAreTheDraftShape) {
  json claims = sample_ear().to_claims();
  json expected = json::parse(R"({
    "eat_profile": "tag:github.com,2023:veraison/ear",
    "iat": 1700000000,
    "ear.verifier-id": {"developer": "https://github.com/ctrust", "build": "ctrust-verifier 0.1.0"},
    "eat_nonce": "bm9uY2Utbm9uY2Utbm9uY2U",
    "ear.raw-evidence": "AQID-g",
    "submods": {
      "host": {
        "ear.status": "affirming",
        "ear.trustworthiness-vector": {
          "instance-identity": 2, "configuration": 0, "executables": 2, "hardware": 2},
        "ear.appraisal-policy-id": "policy:host/3"
      },
      "container/4f2a": {
        "ear.status": "contraindicated",
        "ear.trustworthiness-vector": {"executables": 96, "file-system": 2},
        "ear.ctrust.reasons": [
          {"code": "digest-not-allowed", "message": "/usr/bin/nc is not in the policy",
           "entry": 17, "rule": "allow", "quote": "container/4f2a"},
          {"code": "log-gap", "message": "log ends early"}
        ],
        "ear.ctrust.image": "sha256:abcd"
      }
    }
  })");
  EXPECT_EQ(claims, expected) << claims.dump(2);
}

TEST(Ear, ClaimsRoundTrip) {
  Ear ear = sample_ear();
  ear.extra = {{"exp", 1700003600}};
  auto back = Ear::from_claims(ear.to_claims());
  ASSERT_TRUE(back.ok()) << back.error().message();
  EXPECT_EQ(*back, ear);
  ASSERT_NE(back->find_submod("host"), nullptr);
  EXPECT_EQ(back->find_submod("host")->policy_id, "policy:host/3");
  EXPECT_EQ(back->find_submod("nope"), nullptr);
}

TEST(Ear, SignVerifyRoundTrip) {
  Ear ear = sample_ear();
  auto kid = jwk_kid(test_pub());
  ASSERT_TRUE(kid.ok());
  auto token = sign_ear(ear, test_key(), *kid);
  ASSERT_TRUE(token.ok()) << token.error().message();
  auto back = verify_ear(*token, test_pub());
  ASSERT_TRUE(back.ok()) << back.error().message();
  EXPECT_EQ(*back, ear);
  auto jwt = verify_jwt(*token, test_pub());
  ASSERT_TRUE(jwt.ok());
  EXPECT_EQ(jwt->header["kid"], *kid);
  auto no_kid = sign_ear(ear, test_key(), "");
  ASSERT_TRUE(no_kid.ok());
  EXPECT_FALSE(verify_jwt(*no_kid, test_pub())->header.contains("kid"));
  EXPECT_FALSE(verify_ear(*token, test_pub(1)).ok());
}

TEST(Ear, SignRefusesInvalidResults) {
  auto refuses = [](const Ear& ear, const std::string& part) {
    auto r = sign_ear(ear, test_key(), "k");
    ASSERT_FALSE(r.ok()) << part;
    EXPECT_EQ(r.error().code(), Errc::kInvalidArgument);
    EXPECT_NE(r.error().message().find(part), std::string::npos) << r.error().message();
  };
  Ear e = sample_ear();
  e.submods.clear();
  refuses(e, "at least one");
  e = sample_ear();
  e.submods[1].name = e.submods[0].name;
  refuses(e, "twice");
  e = sample_ear();
  e.submods[0].name.clear();
  refuses(e, "empty name");
  e = sample_ear();
  e.submods[1].status = Status::kAffirming;
  e.submods[1].vector.executables = ar4si::kUnsafeRuntime;
  refuses(e, "more trust than");
  e = sample_ear();
  e.submods[1].vector.hardware = 200;
  refuses(e, "outside -128..127");
  e = sample_ear();
  e.profile = "tag:ietf.org,2026:rats/ear#04";
  refuses(e, "eat_profile");
  e = sample_ear();
  e.nonce = "short";
  refuses(e, "eat_nonce");
  e = sample_ear();
  e.verifier_id.build.clear();
  refuses(e, "verifier-id");
  e = sample_ear();
  e.iat = -1;
  refuses(e, "iat");
  e = sample_ear();
  e.extra = {{"submods", 1}};
  refuses(e, "collides");
  e = sample_ear();
  e.submods[0].extra = {{"ear.status", "affirming"}};
  refuses(e, "collides");
  e = sample_ear();
  e.submods[0].reasons.push_back({});
  refuses(e, "without a code");
}

// Applies `edit` to the sample's claims and expects from_claims to fail with `code` and a
// message containing `part`.
void expect_rejected(void (*edit)(json&), Errc code, const std::string& part) {
  json claims = sample_ear().to_claims();
  edit(claims);
  auto r = Ear::from_claims(claims);
  ASSERT_FALSE(r.ok()) << "expected rejection: " << part << "\n" << claims.dump();
  EXPECT_EQ(r.error().code(), code) << r.error().message();
  EXPECT_NE(r.error().message().find(part), std::string::npos) << r.error().message();
}

TEST(Ear, FromClaimsRejectsBadStatus) {
  expect_rejected([](json& c) { c["submods"]["host"]["ear.status"] = "trusted"; }, Errc::kFormat,
                  "\"trusted\" is not one of");
  expect_rejected([](json& c) { c["submods"]["host"]["ear.status"] = "Affirming"; }, Errc::kFormat,
                  "is not one of");
  expect_rejected([](json& c) { c["submods"]["host"]["ear.status"] = 2; }, Errc::kFormat,
                  "ear.status: not a string");
  expect_rejected([](json& c) { c["submods"]["host"].erase("ear.status"); }, Errc::kFormat,
                  "no ear.status");
  // A status more trusted than the vector allows.
  expect_rejected([](json& c) { c["submods"]["container/4f2a"]["ear.status"] = "affirming"; },
                  Errc::kFormat, "more trust than");
}

TEST(Ear, FromClaimsRejectsWrongTypes) {
  expect_rejected([](json& c) { c = json::array(); }, Errc::kFormat, "not a JSON object");
  expect_rejected([](json& c) { c.erase("eat_profile"); }, Errc::kFormat, "eat_profile");
  expect_rejected([](json& c) { c["eat_profile"] = 1; }, Errc::kFormat, "eat_profile");
  expect_rejected([](json& c) { c["eat_profile"] = "tag:ietf.org,2026:rats/ear#04"; },
                  Errc::kUnsupported, "not supported");
  expect_rejected([](json& c) { c["iat"] = 1.5; }, Errc::kFormat, "iat");
  expect_rejected([](json& c) { c["iat"] = 1700000000.0; }, Errc::kFormat, "iat");
  expect_rejected([](json& c) { c["iat"] = "1700000000"; }, Errc::kFormat, "iat");
  expect_rejected([](json& c) { c["iat"] = -5; }, Errc::kFormat, "iat");
  expect_rejected([](json& c) { c["iat"] = 18446744073709551615u; }, Errc::kFormat, "iat");
  expect_rejected([](json& c) { c.erase("iat"); }, Errc::kFormat, "iat");
  expect_rejected([](json& c) { c["ear.verifier-id"] = "ctrust"; }, Errc::kFormat,
                  "ear.verifier-id");
  expect_rejected([](json& c) { c["ear.verifier-id"].erase("build"); }, Errc::kFormat,
                  "verifier-id");
  expect_rejected([](json& c) { c["ear.verifier-id"]["build"] = 1; }, Errc::kFormat,
                  "ear.verifier-id.build: not a string");
  expect_rejected([](json& c) { c["ear.verifier-id"]["version"] = "1"; }, Errc::kFormat,
                  "unknown member");
  expect_rejected([](json& c) { c.erase("submods"); }, Errc::kFormat, "submods");
  expect_rejected([](json& c) { c["submods"] = json::array(); }, Errc::kFormat, "submods");
  expect_rejected([](json& c) { c["submods"] = json::object(); }, Errc::kFormat, "at least one");
  expect_rejected([](json& c) { c["submods"]["host"] = "affirming"; }, Errc::kFormat,
                  "submods[\"host\"]: not a JSON object");
  expect_rejected([](json& c) { c["eat_nonce"] = 12345678; }, Errc::kFormat, "eat_nonce");
  expect_rejected([](json& c) { c["eat_nonce"] = "short"; }, Errc::kFormat, "eat_nonce");
  expect_rejected([](json& c) { c["ear.raw-evidence"] = "AQID+g=="; }, Errc::kFormat,
                  "raw-evidence");
  expect_rejected([](json& c) { c["ear.raw-evidence"] = ""; }, Errc::kFormat, "raw-evidence");
  // The trustworthiness vector.
  expect_rejected([](json& c) { c["submods"]["host"]["ear.trustworthiness-vector"] = 2; },
                  Errc::kFormat, "not a JSON object");
  expect_rejected(
      [](json& c) { c["submods"]["host"]["ear.trustworthiness-vector"] = json::object(); },
      Errc::kFormat, "empty");
  expect_rejected(
      [](json& c) { c["submods"]["host"]["ear.trustworthiness-vector"]["hardware"] = "2"; },
      Errc::kFormat, "\"hardware\" is not an integer");
  expect_rejected(
      [](json& c) { c["submods"]["host"]["ear.trustworthiness-vector"]["hardware"] = 2.0; },
      Errc::kFormat, "is not an integer");
  expect_rejected(
      [](json& c) { c["submods"]["host"]["ear.trustworthiness-vector"]["hardware"] = 128; },
      Errc::kFormat, "outside -128..127");
  expect_rejected(
      [](json& c) { c["submods"]["host"]["ear.trustworthiness-vector"]["hardware"] = -129; },
      Errc::kFormat, "outside -128..127");
  expect_rejected(
      [](json& c) { c["submods"]["host"]["ear.trustworthiness-vector"]["firmware"] = 2; },
      Errc::kFormat, "unknown trustworthiness claim");
  expect_rejected([](json& c) { c["submods"]["host"]["ear.appraisal-policy-id"] = 3; },
                  Errc::kFormat, "not a string");
  // Reasons.
  expect_rejected([](json& c) { c["submods"]["host"]["ear.ctrust.reasons"] = "bad"; },
                  Errc::kFormat, "not an array");
  expect_rejected(
      [](json& c) { c["submods"]["host"]["ear.ctrust.reasons"] = json::array({"bad"}); },
      Errc::kFormat, "ear.ctrust.reasons[0]: not a JSON object");
  expect_rejected(
      [](json& c) {
        c["submods"]["host"]["ear.ctrust.reasons"] = json::array({{{"message", "no code"}}});
      },
      Errc::kFormat, "no \"code\"");
  expect_rejected(
      [](json& c) {
        c["submods"]["host"]["ear.ctrust.reasons"] = json::array({{{"code", "x"}, {"entry", -1}}});
      },
      Errc::kFormat, "entry");
  expect_rejected(
      [](json& c) {
        c["submods"]["host"]["ear.ctrust.reasons"] = json::array({{{"code", "x"}, {"rule", 1}}});
      },
      Errc::kFormat, "\"rule\" is not a string");
  expect_rejected(
      [](json& c) {
        c["submods"]["host"]["ear.ctrust.reasons"] = json::array({{{"code", "x"}, {"why", "?"}}});
      },
      Errc::kFormat, "unknown member");
}

TEST(Ear, FromClaimsKeepsExtensions) {
  json claims = sample_ear().to_claims();
  claims["exp"] = 1700003600;
  claims["submods"]["host"]["ear.veraison.annotated-evidence"] = {{"k", "v"}};
  auto ear = Ear::from_claims(claims);
  ASSERT_TRUE(ear.ok()) << ear.error().message();
  EXPECT_EQ(ear->extra, json({{"exp", 1700003600}}));
  EXPECT_EQ(ear->find_submod("host")->extra,
            json({{"ear.veraison.annotated-evidence", {{"k", "v"}}}}));
  EXPECT_EQ(ear->to_claims(), claims);
}

// ---- Cross-checks with PyJWT ---------------------------------------------------------------

struct CommandResult {
  int status = -1;
  std::string output;
};

CommandResult run(const std::string& command) {
  CommandResult result;
  std::string full = command + " 2>&1";
  FILE* pipe = ::popen(full.c_str(), "r");
  if (pipe == nullptr) return result;
  std::array<char, 4096> buf{};
  std::size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) result.output.append(buf.data(), n);
  int status = ::pclose(pipe);
  if (status != -1 && WIFEXITED(status)) result.status = WEXITSTATUS(status);
  return result;
}

// A python3 that has PyJWT with its cryptography backend, or "" (the Debian packages
// python3-jwt and python3-cryptography; /usr/bin/python3 first in case python3 on PATH is
// another installation).
std::string pyjwt_python() {
  for (const char* py : {"/usr/bin/python3", "python3"}) {
    if (run(std::string(py) + " -c 'import jwt, jwt.algorithms; assert jwt.algorithms.has_crypto'")
            .status == 0) {
      return py;
    }
  }
  return "";
}

class PyJwtTest : public ::testing::Test {
 protected:
  void SetUp() override {
    python_ = pyjwt_python();
    if (python_.empty()) {
      const char* ci = std::getenv("CI");
      if (ci != nullptr && std::string(ci) == "true") {
        FAIL() << "PyJWT is required in CI (apt-get install python3-jwt python3-cryptography)";
      }
      GTEST_SKIP() << "PyJWT is not installed (apt-get install python3-jwt python3-cryptography)";
    }
  }

  std::string write(const std::string& name, const std::string& content) {
    std::string path = dir_.file(name);
    std::ofstream(path) << content;
    return path;
  }

  CommandResult python(const std::string& script, const std::string& args) {
    return run(python_ + " " + write("script.py", script) + " " + args);
  }

  std::string python_;
  TempDir dir_;
};

TEST_F(PyJwtTest, PyJwtVerifiesOurToken) {
  Ear ear = sample_ear();
  ear.iat = static_cast<std::int64_t>(std::time(nullptr));
  auto token = sign_ear(ear, test_key(), *jwk_kid(test_pub()));
  ASSERT_TRUE(token.ok());
  std::string pem = write("pub.pem", *test_pub().to_pem());
  std::string tok = write("token.jwt", *token);
  std::string claims = write("claims.json", ear.to_claims().dump());
  std::string other_pem = write("other.pem", *test_pub(1).to_pem());
  auto r = python(R"(import json, sys, jwt
pem, tok, claims, other = (open(p).read() for p in sys.argv[1:5])
decoded = jwt.decode(tok, pem, algorithms=["ES256"])
assert decoded == json.loads(claims), decoded
header = jwt.get_unverified_header(tok)
assert header["alg"] == "ES256" and header["typ"] == "JWT", header
try:
    jwt.decode(tok, other, algorithms=["ES256"])
    sys.exit("verified with the wrong key")
except jwt.InvalidSignatureError:
    pass
print("ok")
)",
                  pem + " " + tok + " " + claims + " " + other_pem);
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.output, "ok\n");
}

TEST_F(PyJwtTest, WeVerifyPyJwtTokens) {
  auto key_pem = test_key().to_pem();
  ASSERT_TRUE(key_pem.ok());
  std::string key = write("key.pem", *key_pem);
  std::string claims = write("claims.json", sample_ear().to_claims().dump());
  auto r = python(R"(import json, sys, jwt
key = open(sys.argv[1]).read()
claims = json.loads(open(sys.argv[2]).read())
print(jwt.encode(claims, key, algorithm="ES256", headers={"kid": "py"}))
print(jwt.encode({"sub": "x"}, key, algorithm="ES256"))
print(jwt.encode({"sub": "x"}, "secret", algorithm="HS256"))
print(jwt.encode({"sub": "x"}, None, algorithm="none"))
)",
                  key + " " + claims);
  ASSERT_EQ(r.status, 0) << r.output;
  std::vector<std::string> tokens;
  std::stringstream ss(r.output);
  for (std::string line; std::getline(ss, line);) tokens.push_back(line);
  ASSERT_EQ(tokens.size(), 4u) << r.output;

  auto ear = verify_ear(tokens[0], test_pub());
  ASSERT_TRUE(ear.ok()) << ear.error().message();
  EXPECT_EQ(*ear, sample_ear());
  EXPECT_EQ(verify_jwt(tokens[0], test_pub())->header["kid"], "py");
  auto simple = verify_jwt(tokens[1], test_pub());
  ASSERT_TRUE(simple.ok()) << simple.error().message();
  EXPECT_EQ(simple->claims, json({{"sub", "x"}}));
  EXPECT_FALSE(verify_jwt(tokens[1], test_pub(1)).ok());
  expect_error(verify_jwt(tokens[2], test_pub()), Errc::kFormat, "only ES256");
  EXPECT_FALSE(verify_jwt(tokens[3], test_pub()).ok());
}

TEST_F(PyJwtTest, JwkMatchesPyJwt) {
  auto jwk = jwk_of(test_pub());
  ASSERT_TRUE(jwk.ok());
  std::string jwk_file = write("jwk.json", jwk->dump());
  std::string pem = write("pub.pem", *test_pub().to_pem());
  auto r = python(R"(import sys
from jwt.algorithms import ECAlgorithm
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from_jwk = ECAlgorithm.from_jwk(open(sys.argv[1]).read())
from_pem = load_pem_public_key(open(sys.argv[2]).read().encode())
assert from_jwk.public_numbers() == from_pem.public_numbers()
print("ok")
)",
                  jwk_file + " " + pem);
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.output, "ok\n");
}

}  // namespace
}  // namespace ctrust::attest
