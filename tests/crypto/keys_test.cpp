#include "crypto/keys.h"
#include "support/temp_dir.h"

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace ctrust::crypto {
namespace {

constexpr std::array<KeyType, 6> kAllKeyTypes = {KeyType::kEcdsaP256, KeyType::kEcdsaP384,
                                                 KeyType::kEd25519,   KeyType::kRsa2048,
                                                 KeyType::kRsa3072,   KeyType::kRsa4096};

bool is_rsa_type(KeyType type) {
  return type == KeyType::kRsa2048 || type == KeyType::kRsa3072 || type == KeyType::kRsa4096;
}

// Keys are slow to generate (RSA-4096 especially under sanitizers) and immutable, so the
// tests share them: `index` picks one of several distinct keys of the same type.
const PrivateKey& cached_key(KeyType type, int index = 0) {
  static std::map<std::pair<KeyType, int>, PrivateKey> keys;
  auto it = keys.find({type, index});
  if (it == keys.end()) {
    auto key = PrivateKey::generate(type);
    if (!key) {
      ADD_FAILURE() << "generate " << key_type_name(type) << ": " << key.error().message();
      std::abort();
    }
    it = keys.emplace(std::make_pair(type, index), std::move(key).value()).first;
  }
  return it->second;
}

PublicKey public_of(const PrivateKey& key) {
  auto pub = key.public_key();
  if (!pub) {
    ADD_FAILURE() << "public_key: " << pub.error().message();
    std::abort();
  }
  return std::move(pub).value();
}

Bytes bytes_of(std::string_view s) { return Bytes(s.begin(), s.end()); }

using ctrust::testing::TempDir;

void write_file(const std::string& path, std::string_view data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  ASSERT_TRUE(out.good()) << "writing " << path;
}

void write_file(const std::string& path, const Bytes& data) {
  write_file(path, std::string_view(reinterpret_cast<const char*>(data.data()), data.size()));
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

struct CommandResult {
  int status = -1;  // exit code, or -1 if it did not exit normally
  std::string output;
};

// Runs a shell command, capturing stdout and stderr together for failure messages.
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

bool have_openssl_cli() { return run("openssl version").status == 0; }

// The `openssl` command that verifies `sig` over `msg` with `pub`, as a user would type it.
std::string openssl_verify_command(KeyType type, const SignOptions& options, const std::string& pub,
                                   const std::string& sig, const std::string& msg) {
  if (type == KeyType::kEd25519) {
    return "openssl pkeyutl -verify -pubin -inkey " + pub + " -rawin -in " + msg + " -sigfile " +
           sig;
  }
  std::string command = "openssl dgst -" + std::string(hash_name(options.hash));
  if (is_rsa_type(type) && options.rsa_padding == RsaPadding::kPss) {
    command += " -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest";
  }
  return command + " -verify " + pub + " -signature " + sig + " " + msg;
}

std::string openssl_sign_command(KeyType type, const SignOptions& options, const std::string& key,
                                 const std::string& sig, const std::string& msg) {
  if (type == KeyType::kEd25519) {
    return "openssl pkeyutl -sign -inkey " + key + " -rawin -in " + msg + " -out " + sig;
  }
  std::string command = "openssl dgst -" + std::string(hash_name(options.hash));
  if (is_rsa_type(type) && options.rsa_padding == RsaPadding::kPss) {
    command += " -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest";
  }
  return command + " -sign " + key + " -out " + sig + " " + msg;
}

std::string genpkey_args(KeyType type) {
  switch (type) {
    case KeyType::kEcdsaP256:
      return "-algorithm EC -pkeyopt ec_paramgen_curve:P-256";
    case KeyType::kEcdsaP384:
      return "-algorithm EC -pkeyopt ec_paramgen_curve:P-384";
    case KeyType::kEd25519:
      return "-algorithm ED25519";
    case KeyType::kRsa2048:
      return "-algorithm RSA -pkeyopt rsa_keygen_bits:2048";
    case KeyType::kRsa3072:
      return "-algorithm RSA -pkeyopt rsa_keygen_bits:3072";
    case KeyType::kRsa4096:
      return "-algorithm RSA -pkeyopt rsa_keygen_bits:4096";
  }
  return "";
}

// The option sets worth exercising for a key type: both paddings for RSA.
std::vector<SignOptions> options_for(KeyType type) {
  SignOptions options = default_sign_options(type);
  if (!is_rsa_type(type)) return {options};
  SignOptions pkcs1 = options;
  pkcs1.rsa_padding = RsaPadding::kPkcs1v15;
  return {options, pkcs1};
}

const Bytes kMessage = bytes_of("the image may run /usr/bin/app\n");

// ---------------------------------------------------------------------------------------
// Names and defaults

TEST(KeyTypeTest, NamesRoundTrip) {
  for (KeyType type : kAllKeyTypes) {
    auto parsed = parse_key_type(key_type_name(type));
    ASSERT_TRUE(parsed.has_value()) << key_type_name(type);
    EXPECT_EQ(*parsed, type);
  }
  EXPECT_EQ(key_type_name(KeyType::kEcdsaP256), "ecdsa-p256");
  EXPECT_EQ(key_type_name(KeyType::kRsa4096), "rsa4096");
  EXPECT_EQ(parse_key_type("ED25519"), KeyType::kEd25519);
  EXPECT_FALSE(parse_key_type("rsa1024").has_value());
  EXPECT_FALSE(parse_key_type("").has_value());
  EXPECT_FALSE(parse_key_type("ecdsa-p521").has_value());
}

TEST(KeyTypeTest, DefaultSignOptions) {
  EXPECT_EQ(default_sign_options(KeyType::kEcdsaP256).hash, HashAlg::kSha256);
  EXPECT_EQ(default_sign_options(KeyType::kEcdsaP384).hash, HashAlg::kSha384);
  EXPECT_EQ(default_sign_options(KeyType::kEd25519).hash, HashAlg::kSha256);
  for (KeyType type : {KeyType::kRsa2048, KeyType::kRsa3072, KeyType::kRsa4096}) {
    EXPECT_EQ(default_sign_options(type).hash, HashAlg::kSha256);
    EXPECT_EQ(default_sign_options(type).rsa_padding, RsaPadding::kPss);
  }
}

// ---------------------------------------------------------------------------------------
// Every key type

class KeyTypeParamTest : public ::testing::TestWithParam<KeyType> {
 protected:
  KeyType type() const { return GetParam(); }
  const PrivateKey& key() const { return cached_key(type()); }
};

std::string param_name(const ::testing::TestParamInfo<KeyType>& info) {
  std::string name(key_type_name(info.param));
  for (char& c : name) {
    if (c == '-') c = '_';
  }
  return name;
}

INSTANTIATE_TEST_SUITE_P(AllTypes, KeyTypeParamTest, ::testing::ValuesIn(kAllKeyTypes), param_name);

TEST_P(KeyTypeParamTest, GeneratedKeyHasItsType) {
  EXPECT_EQ(key().type(), type());
  EXPECT_NE(key().native(), nullptr);
  PublicKey pub = public_of(key());
  EXPECT_EQ(pub.type(), type());
}

TEST_P(KeyTypeParamTest, SignThenVerify) {
  PublicKey pub = public_of(key());
  for (const SignOptions& options : options_for(type())) {
    auto sig = key().sign(kMessage, options);
    ASSERT_TRUE(sig) << sig.error().message();
    EXPECT_FALSE(sig->empty());
    auto ok = pub.verify(kMessage, *sig, options);
    ASSERT_TRUE(ok) << ok.error().message();
    EXPECT_TRUE(*ok);
  }
}

TEST_P(KeyTypeParamTest, SignatureSizes) {
  auto sig = key().sign(kMessage, default_sign_options(type()));
  ASSERT_TRUE(sig) << sig.error().message();
  switch (type()) {
    case KeyType::kEd25519:
      EXPECT_EQ(sig->size(), 64u);
      break;
    case KeyType::kRsa2048:
      EXPECT_EQ(sig->size(), 256u);
      break;
    case KeyType::kRsa3072:
      EXPECT_EQ(sig->size(), 384u);
      break;
    case KeyType::kRsa4096:
      EXPECT_EQ(sig->size(), 512u);
      break;
    case KeyType::kEcdsaP256:
    case KeyType::kEcdsaP384:
      EXPECT_EQ((*sig)[0], 0x30) << "ECDSA signatures are DER SEQUENCEs";
      break;
  }
}

TEST_P(KeyTypeParamTest, EmptyMessageSignsAndVerifies) {
  PublicKey pub = public_of(key());
  SignOptions options = default_sign_options(type());
  auto sig = key().sign({}, options);
  ASSERT_TRUE(sig) << sig.error().message();
  auto ok = pub.verify({}, *sig, options);
  ASSERT_TRUE(ok) << ok.error().message();
  EXPECT_TRUE(*ok);
  auto other = pub.verify(kMessage, *sig, options);
  ASSERT_TRUE(other);
  EXPECT_FALSE(*other);
}

TEST_P(KeyTypeParamTest, FlippedMessageByteDoesNotVerify) {
  PublicKey pub = public_of(key());
  for (const SignOptions& options : options_for(type())) {
    auto sig = key().sign(kMessage, options);
    ASSERT_TRUE(sig) << sig.error().message();
    for (std::size_t i : {std::size_t{0}, kMessage.size() / 2, kMessage.size() - 1}) {
      Bytes tampered = kMessage;
      tampered[i] ^= 0x01;
      auto ok = pub.verify(tampered, *sig, options);
      ASSERT_TRUE(ok) << ok.error().message();
      EXPECT_FALSE(*ok) << "byte " << i;
    }
    Bytes longer = kMessage;
    longer.push_back(0);
    auto ok = pub.verify(longer, *sig, options);
    ASSERT_TRUE(ok);
    EXPECT_FALSE(*ok);
  }
}

TEST_P(KeyTypeParamTest, FlippedSignatureByteDoesNotVerify) {
  PublicKey pub = public_of(key());
  for (const SignOptions& options : options_for(type())) {
    auto sig = key().sign(kMessage, options);
    ASSERT_TRUE(sig) << sig.error().message();
    // Every byte: for DER signatures this covers tags and lengths as well as the values.
    for (std::size_t i = 0; i < sig->size(); ++i) {
      Bytes tampered = *sig;
      tampered[i] ^= 0x80;
      auto ok = pub.verify(kMessage, tampered, options);
      ASSERT_TRUE(ok) << ok.error().message();
      EXPECT_FALSE(*ok) << "byte " << i;
    }
  }
}

TEST_P(KeyTypeParamTest, TruncatedEmptyOrExtendedSignatureDoesNotVerify) {
  PublicKey pub = public_of(key());
  SignOptions options = default_sign_options(type());
  auto sig = key().sign(kMessage, options);
  ASSERT_TRUE(sig) << sig.error().message();

  auto empty = pub.verify(kMessage, {}, options);
  ASSERT_TRUE(empty) << empty.error().message();
  EXPECT_FALSE(*empty);

  for (std::size_t len : {std::size_t{1}, sig->size() / 2, sig->size() - 1}) {
    auto ok = pub.verify(kMessage, ByteView(sig->data(), len), options);
    ASSERT_TRUE(ok) << ok.error().message();
    EXPECT_FALSE(*ok) << "length " << len;
  }

  Bytes extended = *sig;
  extended.push_back(0);
  auto ok = pub.verify(kMessage, extended, options);
  ASSERT_TRUE(ok) << ok.error().message();
  EXPECT_FALSE(*ok);

  Bytes zeros(sig->size(), 0);
  auto zero_ok = pub.verify(kMessage, zeros, options);
  ASSERT_TRUE(zero_ok);
  EXPECT_FALSE(*zero_ok);
}

TEST_P(KeyTypeParamTest, OtherKeyDoesNotVerify) {
  PublicKey other = public_of(cached_key(type(), 1));
  SignOptions options = default_sign_options(type());
  auto sig = key().sign(kMessage, options);
  ASSERT_TRUE(sig) << sig.error().message();
  auto ok = other.verify(kMessage, *sig, options);
  ASSERT_TRUE(ok) << ok.error().message();
  EXPECT_FALSE(*ok);
}

TEST_P(KeyTypeParamTest, VerifyLeavesNoOpenSslErrors) {
  PublicKey pub = public_of(key());
  Bytes garbage(7, 0xff);
  auto ok = pub.verify(kMessage, garbage, default_sign_options(type()));
  ASSERT_TRUE(ok);
  EXPECT_FALSE(*ok);
  EXPECT_EQ(ERR_peek_error(), 0u);
}

TEST_P(KeyTypeParamTest, PrivatePemRoundTrip) {
  auto pem = key().to_pem();
  ASSERT_TRUE(pem) << pem.error().message();
  EXPECT_EQ(pem->rfind("-----BEGIN PRIVATE KEY-----\n", 0), 0u) << *pem;
  auto reloaded = PrivateKey::from_pem(*pem);
  ASSERT_TRUE(reloaded) << reloaded.error().message();
  EXPECT_EQ(reloaded->type(), type());

  // Sign with the reloaded key, verify with the original public key.
  PublicKey pub = public_of(key());
  for (const SignOptions& options : options_for(type())) {
    auto sig = reloaded->sign(kMessage, options);
    ASSERT_TRUE(sig) << sig.error().message();
    auto ok = pub.verify(kMessage, *sig, options);
    ASSERT_TRUE(ok) << ok.error().message();
    EXPECT_TRUE(*ok);
  }
  auto pem_again = reloaded->to_pem();
  ASSERT_TRUE(pem_again);
  EXPECT_EQ(*pem_again, *pem);
}

TEST_P(KeyTypeParamTest, PublicPemAndDerRoundTrip) {
  PublicKey pub = public_of(key());
  auto pem = pub.to_pem();
  ASSERT_TRUE(pem) << pem.error().message();
  EXPECT_EQ(pem->rfind("-----BEGIN PUBLIC KEY-----\n", 0), 0u) << *pem;
  EXPECT_EQ(pem->find("PRIVATE"), std::string::npos);
  auto reloaded = PublicKey::from_pem(*pem);
  ASSERT_TRUE(reloaded) << reloaded.error().message();
  EXPECT_EQ(reloaded->type(), type());

  SignOptions options = default_sign_options(type());
  auto sig = key().sign(kMessage, options);
  ASSERT_TRUE(sig);
  auto ok = reloaded->verify(kMessage, *sig, options);
  ASSERT_TRUE(ok) << ok.error().message();
  EXPECT_TRUE(*ok);

  auto der = pub.to_der();
  ASSERT_TRUE(der) << der.error().message();
  auto from_der = PublicKey::from_der(*der);
  ASSERT_TRUE(from_der) << from_der.error().message();
  EXPECT_EQ(from_der->type(), type());
  auto der_again = from_der->to_der();
  ASSERT_TRUE(der_again);
  EXPECT_EQ(*der_again, *der);
}

TEST_P(KeyTypeParamTest, FingerprintStableAcrossRoundTripsAndDistinctPerKey) {
  PublicKey pub = public_of(key());
  auto fp = pub.fingerprint();
  ASSERT_TRUE(fp) << fp.error().message();
  EXPECT_EQ(fp->alg, HashAlg::kSha256);
  EXPECT_FALSE(fp->is_zero());

  auto pub_pem = pub.to_pem();
  ASSERT_TRUE(pub_pem);
  auto pub_reloaded = PublicKey::from_pem(*pub_pem);
  ASSERT_TRUE(pub_reloaded);
  auto fp_pub = pub_reloaded->fingerprint();
  ASSERT_TRUE(fp_pub);
  EXPECT_EQ(fp_pub->hex(), fp->hex());

  auto priv_pem = key().to_pem();
  ASSERT_TRUE(priv_pem);
  auto priv_reloaded = PrivateKey::from_pem(*priv_pem);
  ASSERT_TRUE(priv_reloaded);
  auto fp_priv = public_of(*priv_reloaded).fingerprint();
  ASSERT_TRUE(fp_priv);
  EXPECT_EQ(fp_priv->hex(), fp->hex());

  // The fingerprint is SHA-256 over the DER SubjectPublicKeyInfo.
  auto der = pub.to_der();
  ASSERT_TRUE(der);
  auto expected = digest_bytes(HashAlg::kSha256, *der);
  ASSERT_TRUE(expected);
  EXPECT_EQ(expected->hex(), fp->hex());

  auto other = public_of(cached_key(type(), 1)).fingerprint();
  ASSERT_TRUE(other);
  EXPECT_NE(other->hex(), fp->hex());
}

TEST_P(KeyTypeParamTest, SaveAndLoadFiles) {
  TempDir dir;
  std::string path = dir.file("key.pem");
  auto saved = key().save_pem_file(path);
  ASSERT_TRUE(saved) << saved.error().message();
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  auto loaded = PrivateKey::load_pem_file(path);
  ASSERT_TRUE(loaded) << loaded.error().message();
  EXPECT_EQ(loaded->type(), type());

  std::string pub_path = dir.file("pub.pem");
  auto pub_pem = public_of(key()).to_pem();
  ASSERT_TRUE(pub_pem);
  write_file(pub_path, *pub_pem);
  auto pub = PublicKey::load_pem_file(pub_path);
  ASSERT_TRUE(pub) << pub.error().message();

  SignOptions options = default_sign_options(type());
  auto sig = loaded->sign(kMessage, options);
  ASSERT_TRUE(sig);
  auto ok = pub->verify(kMessage, *sig, options);
  ASSERT_TRUE(ok);
  EXPECT_TRUE(*ok);
}

TEST_P(KeyTypeParamTest, OpenSslCliVerifiesOurSignatures) {
  if (!have_openssl_cli()) GTEST_SKIP() << "the openssl command is not installed";
  TempDir dir;
  std::string pub = dir.file("pub.pem");
  std::string msg = dir.file("msg");
  std::string bad = dir.file("bad");
  std::string sig = dir.file("sig");
  auto pub_pem = public_of(key()).to_pem();
  ASSERT_TRUE(pub_pem);
  write_file(pub, *pub_pem);
  write_file(msg, kMessage);
  Bytes tampered = kMessage;
  tampered[3] ^= 0x20;
  write_file(bad, tampered);

  for (const SignOptions& options : options_for(type())) {
    auto signature = key().sign(kMessage, options);
    ASSERT_TRUE(signature) << signature.error().message();
    write_file(sig, *signature);
    std::string good_cmd = openssl_verify_command(type(), options, pub, sig, msg);
    CommandResult good = run(good_cmd);
    EXPECT_EQ(good.status, 0) << good_cmd << "\n" << good.output;
    std::string bad_cmd = openssl_verify_command(type(), options, pub, sig, bad);
    CommandResult rejected = run(bad_cmd);
    EXPECT_NE(rejected.status, 0) << bad_cmd << "\n" << rejected.output;
  }
}

TEST_P(KeyTypeParamTest, LoadsOpenSslGeneratedKey) {
  if (!have_openssl_cli()) GTEST_SKIP() << "the openssl command is not installed";
  TempDir dir;
  std::string key_path = dir.file("key.pem");
  std::string pub_path = dir.file("pub.pem");
  std::string pub_der = dir.file("pub.der");
  std::string msg = dir.file("msg");
  std::string sig = dir.file("sig");
  std::string bad = dir.file("bad");

  CommandResult gen = run("openssl genpkey " + genpkey_args(type()) + " -out " + key_path);
  ASSERT_EQ(gen.status, 0) << gen.output;
  CommandResult pub_out = run("openssl pkey -in " + key_path + " -pubout -out " + pub_path);
  ASSERT_EQ(pub_out.status, 0) << pub_out.output;
  CommandResult der_out =
      run("openssl pkey -in " + key_path + " -pubout -outform DER -out " + pub_der);
  ASSERT_EQ(der_out.status, 0) << der_out.output;

  auto key = PrivateKey::load_pem_file(key_path);
  ASSERT_TRUE(key) << key.error().message();
  EXPECT_EQ(key->type(), type());
  auto pub = PublicKey::load_pem_file(pub_path);
  ASSERT_TRUE(pub) << pub.error().message();
  EXPECT_EQ(pub->type(), type());

  // Our fingerprint is SHA-256 over exactly the DER that openssl writes.
  std::string der_text = read_text(pub_der);
  auto expected = digest_bytes(HashAlg::kSha256, as_bytes(der_text));
  ASSERT_TRUE(expected);
  auto fp = public_of(*key).fingerprint();
  ASSERT_TRUE(fp);
  EXPECT_EQ(fp->hex(), expected->hex());

  write_file(msg, kMessage);
  Bytes tampered = kMessage;
  tampered.back() ^= 0x01;
  write_file(bad, tampered);
  for (const SignOptions& options : options_for(type())) {
    // We sign, openssl verifies.
    auto signature = key->sign(kMessage, options);
    ASSERT_TRUE(signature) << signature.error().message();
    write_file(sig, *signature);
    std::string verify_cmd = openssl_verify_command(type(), options, pub_path, sig, msg);
    CommandResult verified = run(verify_cmd);
    EXPECT_EQ(verified.status, 0) << verify_cmd << "\n" << verified.output;
    CommandResult rejected = run(openssl_verify_command(type(), options, pub_path, sig, bad));
    EXPECT_NE(rejected.status, 0) << rejected.output;

    // openssl signs, we verify.
    std::string sign_cmd = openssl_sign_command(type(), options, key_path, sig, msg);
    CommandResult signed_by_openssl = run(sign_cmd);
    ASSERT_EQ(signed_by_openssl.status, 0) << sign_cmd << "\n" << signed_by_openssl.output;
    std::string their_sig = read_text(sig);
    auto ok = pub->verify(kMessage, as_bytes(their_sig), options);
    ASSERT_TRUE(ok) << ok.error().message();
    EXPECT_TRUE(*ok) << sign_cmd;
    auto not_ok = pub->verify(tampered, as_bytes(their_sig), options);
    ASSERT_TRUE(not_ok);
    EXPECT_FALSE(*not_ok);
  }
}

TEST_P(KeyTypeParamTest, Sha1IsRefusedExceptWhereNoHashIsUsed) {
  SignOptions options = default_sign_options(type());
  options.hash = HashAlg::kSha1;
  PublicKey pub = public_of(key());
  auto sig = key().sign(kMessage, options);
  auto ok = pub.verify(kMessage, Bytes(64, 1), options);
  if (type() == KeyType::kEd25519) {
    // Ed25519 hashes internally; the option does not apply.
    EXPECT_TRUE(sig);
    ASSERT_TRUE(ok);
    EXPECT_FALSE(*ok);
    return;
  }
  ASSERT_FALSE(sig);
  EXPECT_EQ(sig.error().code(), Errc::kUnsupported);
  EXPECT_NE(sig.error().message().find("SHA-1"), std::string::npos) << sig.error().message();
  ASSERT_FALSE(ok);
  EXPECT_EQ(ok.error().code(), Errc::kUnsupported);
}

// ---------------------------------------------------------------------------------------
// Scheme details

TEST(RsaTest, PaddingsDoNotCrossVerify) {
  const PrivateKey& key = cached_key(KeyType::kRsa2048);
  PublicKey pub = public_of(key);
  SignOptions pss = default_sign_options(KeyType::kRsa2048);
  SignOptions pkcs1 = pss;
  pkcs1.rsa_padding = RsaPadding::kPkcs1v15;

  auto pkcs1_sig = key.sign(kMessage, pkcs1);
  ASSERT_TRUE(pkcs1_sig);
  auto as_pss = pub.verify(kMessage, *pkcs1_sig, pss);
  ASSERT_TRUE(as_pss) << as_pss.error().message();
  EXPECT_FALSE(*as_pss) << "a PKCS#1 v1.5 signature must not verify as PSS";

  auto pss_sig = key.sign(kMessage, pss);
  ASSERT_TRUE(pss_sig);
  auto as_pkcs1 = pub.verify(kMessage, *pss_sig, pkcs1);
  ASSERT_TRUE(as_pkcs1) << as_pkcs1.error().message();
  EXPECT_FALSE(*as_pkcs1) << "a PSS signature must not verify as PKCS#1 v1.5";
}

TEST(RsaTest, PssIsRandomizedAndPkcs1IsDeterministic) {
  const PrivateKey& key = cached_key(KeyType::kRsa2048);
  SignOptions pss = default_sign_options(KeyType::kRsa2048);
  SignOptions pkcs1 = pss;
  pkcs1.rsa_padding = RsaPadding::kPkcs1v15;
  auto a = key.sign(kMessage, pss);
  auto b = key.sign(kMessage, pss);
  ASSERT_TRUE(a && b);
  EXPECT_NE(*a, *b);
  auto c = key.sign(kMessage, pkcs1);
  auto d = key.sign(kMessage, pkcs1);
  ASSERT_TRUE(c && d);
  EXPECT_EQ(*c, *d);
}

TEST(RsaTest, PssSaltLengthIsDigestLength) {
  if (!have_openssl_cli()) GTEST_SKIP() << "the openssl command is not installed";
  // openssl checks the exact salt length when told to expect one.
  TempDir dir;
  const PrivateKey& key = cached_key(KeyType::kRsa2048);
  SignOptions options = default_sign_options(KeyType::kRsa2048);
  options.hash = HashAlg::kSha384;
  auto sig = key.sign(kMessage, options);
  ASSERT_TRUE(sig);
  auto pub_pem = public_of(key).to_pem();
  ASSERT_TRUE(pub_pem);
  write_file(dir.file("pub.pem"), *pub_pem);
  write_file(dir.file("sig"), *sig);
  write_file(dir.file("msg"), kMessage);
  auto command = [&](int salt_length) {
    return "openssl dgst -sha384 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:" +
           std::to_string(salt_length) + " -verify " + dir.file("pub.pem") + " -signature " +
           dir.file("sig") + " " + dir.file("msg");
  };
  CommandResult exact = run(command(48));
  EXPECT_EQ(exact.status, 0) << exact.output;
  CommandResult wrong = run(command(32));
  EXPECT_NE(wrong.status, 0) << wrong.output;
}

TEST(SignatureTest, HashMismatchDoesNotVerify) {
  for (KeyType type : {KeyType::kEcdsaP256, KeyType::kEcdsaP384, KeyType::kRsa2048}) {
    const PrivateKey& key = cached_key(type);
    PublicKey pub = public_of(key);
    SignOptions sha256 = default_sign_options(type);
    sha256.hash = HashAlg::kSha256;
    SignOptions sha512 = sha256;
    sha512.hash = HashAlg::kSha512;
    auto sig = key.sign(kMessage, sha512);
    ASSERT_TRUE(sig) << sig.error().message();
    auto right = pub.verify(kMessage, *sig, sha512);
    ASSERT_TRUE(right);
    EXPECT_TRUE(*right) << key_type_name(type);
    auto wrong = pub.verify(kMessage, *sig, sha256);
    ASSERT_TRUE(wrong);
    EXPECT_FALSE(*wrong) << key_type_name(type);
  }
}

TEST(SignatureTest, Ed25519IsDeterministicAndIgnoresHash) {
  const PrivateKey& key = cached_key(KeyType::kEd25519);
  SignOptions a = default_sign_options(KeyType::kEd25519);
  SignOptions b = a;
  b.hash = HashAlg::kSha512;
  auto sa = key.sign(kMessage, a);
  auto sb = key.sign(kMessage, b);
  ASSERT_TRUE(sa && sb);
  EXPECT_EQ(*sa, *sb);
}

TEST(SignatureTest, KeysOfDifferentTypesDoNotVerifyEachOther) {
  const PrivateKey& ec = cached_key(KeyType::kEcdsaP256);
  PublicKey ed = public_of(cached_key(KeyType::kEd25519));
  PublicKey rsa = public_of(cached_key(KeyType::kRsa2048));
  auto sig = ec.sign(kMessage, default_sign_options(KeyType::kEcdsaP256));
  ASSERT_TRUE(sig);
  auto on_ed = ed.verify(kMessage, *sig, default_sign_options(KeyType::kEd25519));
  ASSERT_TRUE(on_ed);
  EXPECT_FALSE(*on_ed);
  auto on_rsa = rsa.verify(kMessage, *sig, default_sign_options(KeyType::kRsa2048));
  ASSERT_TRUE(on_rsa);
  EXPECT_FALSE(*on_rsa);
}

// ---------------------------------------------------------------------------------------
// Unsupported and malformed keys

struct UnsupportedKey {
  const char* genpkey_args;
  const char* expected_text;
};

TEST(UnsupportedKeyTest, RejectedWithClearError) {
  if (!have_openssl_cli()) GTEST_SKIP() << "the openssl command is not installed";
  const UnsupportedKey cases[] = {
      {"-algorithm EC -pkeyopt ec_paramgen_curve:secp256k1", "secp256k1"},
      {"-algorithm EC -pkeyopt ec_paramgen_curve:P-521", "secp521r1"},
      {"-algorithm RSA -pkeyopt rsa_keygen_bits:1024", "1024 bits"},
      {"-algorithm ED448", "ED448"},
      {"-algorithm X25519", "X25519"},
      {"-algorithm RSA-PSS -pkeyopt rsa_keygen_bits:2048", "RSA-PSS"},
  };
  TempDir dir;
  for (const auto& c : cases) {
    std::string key_path = dir.file("key.pem");
    std::string pub_path = dir.file("pub.pem");
    CommandResult gen = run(std::string("openssl genpkey ") + c.genpkey_args + " -out " + key_path);
    ASSERT_EQ(gen.status, 0) << c.genpkey_args << "\n" << gen.output;
    CommandResult pub = run("openssl pkey -in " + key_path + " -pubout -out " + pub_path);
    ASSERT_EQ(pub.status, 0) << pub.output;

    auto key = PrivateKey::load_pem_file(key_path);
    ASSERT_FALSE(key) << c.genpkey_args;
    EXPECT_EQ(key.error().code(), Errc::kUnsupported) << key.error().message();
    EXPECT_NE(key.error().message().find(c.expected_text), std::string::npos)
        << key.error().message();
    EXPECT_NE(key.error().message().find(key_path), std::string::npos) << key.error().message();

    auto pub_key = PublicKey::load_pem_file(pub_path);
    ASSERT_FALSE(pub_key) << c.genpkey_args;
    EXPECT_EQ(pub_key.error().code(), Errc::kUnsupported) << pub_key.error().message();
  }
}

TEST(UnsupportedKeyTest, EncryptedKeyIsRefusedWithoutPrompting) {
  if (!have_openssl_cli()) GTEST_SKIP() << "the openssl command is not installed";
  TempDir dir;
  std::string key_path = dir.file("key.pem");
  CommandResult gen =
      run("openssl genpkey -algorithm ED25519 -aes-256-cbc -pass pass:secret -out " + key_path);
  ASSERT_EQ(gen.status, 0) << gen.output;
  auto key = PrivateKey::load_pem_file(key_path);
  ASSERT_FALSE(key);
  EXPECT_EQ(key.error().code(), Errc::kUnsupported);
  EXPECT_NE(key.error().message().find("encrypted"), std::string::npos) << key.error().message();
  EXPECT_EQ(ERR_peek_error(), 0u);
}

TEST(UnsupportedKeyTest, TraditionalPemFormatsAreAccepted) {
  if (!have_openssl_cli()) GTEST_SKIP() << "the openssl command is not installed";
  TempDir dir;
  std::string pkcs8 = dir.file("pkcs8.pem");
  std::string sec1 = dir.file("sec1.pem");
  ASSERT_EQ(
      run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out " + pkcs8).status,
      0);
  CommandResult conv = run("openssl ec -in " + pkcs8 + " -out " + sec1);
  ASSERT_EQ(conv.status, 0) << conv.output;
  ASSERT_NE(read_text(sec1).find("BEGIN EC PRIVATE KEY"), std::string::npos);
  auto key = PrivateKey::load_pem_file(sec1);
  ASSERT_TRUE(key) << key.error().message();
  EXPECT_EQ(key->type(), KeyType::kEcdsaP384);
  auto pem = key->to_pem();
  ASSERT_TRUE(pem);
  EXPECT_EQ(pem->rfind("-----BEGIN PRIVATE KEY-----", 0), 0u);
}

std::vector<std::string> malformed_pems() {
  std::vector<std::string> inputs = {
      "",
      "\n",
      "-----BEGIN PRIVATE KEY-----\n",
      "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n",
      "-----BEGIN PUBLIC KEY-----\n!!!!not base64!!!!\n-----END PUBLIC KEY-----\n",
      "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
      "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
      "-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEA\n"
      "-----END PRIVATE KEY-----\n",
      std::string(1000, 'A'),
      std::string("\0\0\0\0", 4),
  };
  std::mt19937 rng(12345);
  for (int i = 0; i < 200; ++i) {
    std::string s(static_cast<std::size_t>(rng() % 600), '\0');
    for (char& c : s) c = static_cast<char>(rng() & 0xff);
    inputs.push_back(s);
    // Random bytes framed as each kind of PEM block.
    for (const char* label : {"PRIVATE KEY", "PUBLIC KEY", "CERTIFICATE"}) {
      std::string b64;
      static constexpr char kB64[] =
          "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
      for (std::size_t j = 0; j < s.size() / 2; ++j) {
        b64 += kB64[rng() % 64];
        if (j % 64 == 63) b64 += '\n';
      }
      inputs.push_back(std::string("-----BEGIN ") + label + "-----\n" + b64 + "\n-----END " +
                       label + "-----\n");
    }
  }
  return inputs;
}

TEST(MalformedPemTest, EveryParserReturnsAnError) {
  for (const std::string& pem : malformed_pems()) {
    auto priv = PrivateKey::from_pem(pem);
    EXPECT_FALSE(priv) << "accepted a private key from " << pem.size() << " bytes";
    auto pub = PublicKey::from_pem(pem);
    EXPECT_FALSE(pub) << "accepted a public key from " << pem.size() << " bytes";
    auto cert = Certificate::from_pem(pem);
    EXPECT_FALSE(cert) << "accepted a certificate from " << pem.size() << " bytes";
    auto bundle = Certificate::bundle_from_pem(pem);
    EXPECT_FALSE(bundle) << "accepted a bundle from " << pem.size() << " bytes";
    auto der = PublicKey::from_der(as_bytes(pem));
    EXPECT_FALSE(der) << "accepted DER from " << pem.size() << " bytes";
  }
  EXPECT_EQ(ERR_peek_error(), 0u) << "the OpenSSL error queue must be left clear";
}

TEST(MalformedPemTest, ErrorsSayWhatWasExpected) {
  auto empty = PrivateKey::from_pem("");
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().code(), Errc::kFormat);
  EXPECT_NE(empty.error().message().find("empty"), std::string::npos) << empty.error().message();

  auto garbage = PrivateKey::from_pem("hello world\n");
  ASSERT_FALSE(garbage);
  EXPECT_EQ(garbage.error().code(), Errc::kFormat);
  EXPECT_NE(garbage.error().message().find("PRIVATE KEY"), std::string::npos)
      << garbage.error().message();

  auto pub_garbage = PublicKey::from_pem("hello world\n");
  ASSERT_FALSE(pub_garbage);
  EXPECT_NE(pub_garbage.error().message().find("ctrust key public"), std::string::npos)
      << pub_garbage.error().message();
}

TEST(MalformedPemTest, TruncatedPemIsRejected) {
  for (KeyType type : {KeyType::kEcdsaP256, KeyType::kEd25519}) {
    auto priv_pem = cached_key(type).to_pem();
    ASSERT_TRUE(priv_pem);
    auto pub_pem = public_of(cached_key(type)).to_pem();
    ASSERT_TRUE(pub_pem);
    std::size_t priv_end = priv_pem->find("-----END");
    for (std::size_t len = 0; len < priv_end; ++len) {
      EXPECT_FALSE(PrivateKey::from_pem(std::string_view(*priv_pem).substr(0, len)))
          << "prefix " << len;
    }
    std::size_t pub_end = pub_pem->find("-----END");
    for (std::size_t len = 0; len < pub_end; ++len) {
      EXPECT_FALSE(PublicKey::from_pem(std::string_view(*pub_pem).substr(0, len)))
          << "prefix " << len;
    }
  }
  EXPECT_EQ(ERR_peek_error(), 0u);
}

TEST(MalformedPemTest, BitFlippedPemNeverCrashes) {
  // A flipped bit may still decode to some valid key, so only survival is checked here.
  auto priv_pem = cached_key(KeyType::kEcdsaP256).to_pem();
  auto pub_pem = public_of(cached_key(KeyType::kRsa2048)).to_pem();
  ASSERT_TRUE(priv_pem && pub_pem);
  for (std::size_t i = 0; i < priv_pem->size(); ++i) {
    std::string s = *priv_pem;
    s[i] = static_cast<char>(s[i] ^ 0x04);
    (void)PrivateKey::from_pem(s);
  }
  for (std::size_t i = 0; i < pub_pem->size(); ++i) {
    std::string s = *pub_pem;
    s[i] = static_cast<char>(s[i] ^ 0x04);
    (void)PublicKey::from_pem(s);
  }
  ERR_clear_error();
}

TEST(MalformedPemTest, WrongKindOfPemIsRejected) {
  auto priv_pem = cached_key(KeyType::kEcdsaP256).to_pem();
  auto pub_pem = public_of(cached_key(KeyType::kEcdsaP256)).to_pem();
  ASSERT_TRUE(priv_pem && pub_pem);
  EXPECT_FALSE(PrivateKey::from_pem(*pub_pem));
  EXPECT_FALSE(PublicKey::from_pem(*priv_pem));
  EXPECT_FALSE(Certificate::from_pem(*pub_pem));
}

TEST(MalformedDerTest, TrailingAndTruncatedDerIsRejected) {
  auto der = public_of(cached_key(KeyType::kEcdsaP256)).to_der();
  ASSERT_TRUE(der);
  Bytes trailing = *der;
  trailing.push_back(0);
  auto with_trailing = PublicKey::from_der(trailing);
  ASSERT_FALSE(with_trailing);
  EXPECT_EQ(with_trailing.error().code(), Errc::kFormat);
  for (std::size_t len = 0; len < der->size(); ++len) {
    EXPECT_FALSE(PublicKey::from_der(ByteView(der->data(), len))) << "prefix " << len;
  }
  EXPECT_EQ(ERR_peek_error(), 0u);
}

TEST(KeyFileTest, MissingAndOversizedFilesNameThePath) {
  TempDir dir;
  std::string missing = dir.file("missing.pem");
  auto key = PrivateKey::load_pem_file(missing);
  ASSERT_FALSE(key);
  EXPECT_EQ(key.error().code(), Errc::kIo);
  EXPECT_NE(key.error().message().find(missing), std::string::npos) << key.error().message();

  std::string big = dir.file("big.pem");
  write_file(big, std::string(2 << 20, 'A'));
  auto big_key = PublicKey::load_pem_file(big);
  ASSERT_FALSE(big_key);
  EXPECT_EQ(big_key.error().code(), Errc::kLimit);
  EXPECT_NE(big_key.error().message().find(big), std::string::npos) << big_key.error().message();

  std::string garbage = dir.file("garbage.pem");
  write_file(garbage, std::string_view("not a key\n"));
  auto garbage_key = PrivateKey::load_pem_file(garbage);
  ASSERT_FALSE(garbage_key);
  EXPECT_EQ(garbage_key.error().code(), Errc::kFormat);
  EXPECT_NE(garbage_key.error().message().find(garbage), std::string::npos)
      << garbage_key.error().message();
}

TEST(KeyFileTest, SaveOverwritesAtomicallyWithMode0600) {
  TempDir dir;
  std::string path = dir.file("key.pem");
  write_file(path, std::string_view("old contents"));
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  auto saved = cached_key(KeyType::kEd25519).save_pem_file(path);
  ASSERT_TRUE(saved) << saved.error().message();
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(read_text(path).rfind("-----BEGIN PRIVATE KEY-----", 0), 0u);

  auto bad_dir = cached_key(KeyType::kEd25519).save_pem_file(dir.file("no/such/dir/key.pem"));
  ASSERT_FALSE(bad_dir);
  EXPECT_NE(bad_dir.error().message().find("no/such/dir/key.pem"), std::string::npos)
      << bad_dir.error().message();
}

// ---------------------------------------------------------------------------------------
// Certificates

class CertificateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!have_openssl_cli()) GTEST_SKIP() << "the openssl command is not installed";
  }

  // Makes a self-signed P-256 certificate; returns {cert path, key path}.
  std::pair<std::string, std::string> make_cert(const std::string& name, const std::string& cn) {
    std::string cert = dir_.file(name + ".crt");
    std::string key = dir_.file(name + ".key");
    CommandResult r = run(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=" +
        cn + " -keyout " + key + " -out " + cert);
    EXPECT_EQ(r.status, 0) << r.output;
    return {cert, key};
  }

  TempDir dir_;
};

TEST_F(CertificateTest, LoadSelfSigned) {
  auto [cert_path, key_path] = make_cert("leaf", "ctrust-test");
  auto cert = Certificate::load_pem_file(cert_path);
  ASSERT_TRUE(cert) << cert.error().message();
  EXPECT_NE(cert->subject().find("CN=ctrust-test"), std::string::npos) << cert->subject();
  EXPECT_EQ(cert->issuer(), cert->subject());
  EXPECT_NE(cert->native(), nullptr);

  auto pub = cert->public_key();
  ASSERT_TRUE(pub) << pub.error().message();
  EXPECT_EQ(pub->type(), KeyType::kEcdsaP256);

  auto key = PrivateKey::load_pem_file(key_path);
  ASSERT_TRUE(key) << key.error().message();
  SignOptions options = default_sign_options(KeyType::kEcdsaP256);
  auto sig = key->sign(kMessage, options);
  ASSERT_TRUE(sig);
  auto ok = pub->verify(kMessage, *sig, options);
  ASSERT_TRUE(ok) << ok.error().message();
  EXPECT_TRUE(*ok);

  auto fp_cert = pub->fingerprint();
  auto fp_key = public_of(*key).fingerprint();
  ASSERT_TRUE(fp_cert && fp_key);
  EXPECT_EQ(fp_cert->hex(), fp_key->hex());

  auto other = cached_key(KeyType::kEcdsaP256).sign(kMessage, options);
  ASSERT_TRUE(other);
  auto not_ok = pub->verify(kMessage, *other, options);
  ASSERT_TRUE(not_ok);
  EXPECT_FALSE(*not_ok);
}

TEST_F(CertificateTest, PemRoundTrip) {
  auto [cert_path, key_path] = make_cert("leaf", "ctrust-test");
  auto cert = Certificate::load_pem_file(cert_path);
  ASSERT_TRUE(cert) << cert.error().message();
  auto pem = cert->to_pem();
  ASSERT_TRUE(pem) << pem.error().message();
  EXPECT_EQ(*pem, read_text(cert_path));
  auto again = Certificate::from_pem(*pem);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->subject(), cert->subject());
}

TEST_F(CertificateTest, BundleWithTwoCertificates) {
  auto first = make_cert("one", "ctrust-one");
  auto second = make_cert("two", "ctrust-two");
  std::string bundle = read_text(first.first) + "\n" + read_text(second.first);
  auto certs = Certificate::bundle_from_pem(bundle);
  ASSERT_TRUE(certs) << certs.error().message();
  ASSERT_EQ(certs->size(), 2u);
  EXPECT_NE((*certs)[0].subject().find("CN=ctrust-one"), std::string::npos);
  EXPECT_NE((*certs)[1].subject().find("CN=ctrust-two"), std::string::npos);
  EXPECT_EQ(ERR_peek_error(), 0u);

  // from_pem takes the first certificate.
  auto one = Certificate::from_pem(bundle);
  ASSERT_TRUE(one);
  EXPECT_NE(one->subject().find("CN=ctrust-one"), std::string::npos);
}

TEST_F(CertificateTest, BundleWithBrokenSecondCertificateIsAnError) {
  auto first = make_cert("one", "ctrust-one");
  std::string bundle = read_text(first.first) +
                       "-----BEGIN CERTIFICATE-----\nMIIBroken\n-----END CERTIFICATE-----\n";
  auto certs = Certificate::bundle_from_pem(bundle);
  ASSERT_FALSE(certs);
  EXPECT_EQ(certs.error().code(), Errc::kFormat);
  EXPECT_NE(certs.error().message().find("certificate 2"), std::string::npos)
      << certs.error().message();
  EXPECT_EQ(ERR_peek_error(), 0u);
}

TEST_F(CertificateTest, GarbageIsAClearError) {
  auto cert = Certificate::from_pem("this is not a certificate\n");
  ASSERT_FALSE(cert);
  EXPECT_EQ(cert.error().code(), Errc::kFormat);
  EXPECT_NE(cert.error().message().find("CERTIFICATE"), std::string::npos)
      << cert.error().message();

  auto bundle = Certificate::bundle_from_pem("this is not a certificate\n");
  ASSERT_FALSE(bundle);
  EXPECT_EQ(bundle.error().code(), Errc::kFormat);
  EXPECT_NE(bundle.error().message().find("no certificate"), std::string::npos)
      << bundle.error().message();

  std::string path = dir_.file("garbage.crt");
  write_file(path, std::string_view("garbage"));
  auto from_file = Certificate::load_pem_file(path);
  ASSERT_FALSE(from_file);
  EXPECT_NE(from_file.error().message().find(path), std::string::npos)
      << from_file.error().message();
}

TEST_F(CertificateTest, UnsupportedCertificateKeyIsAnErrorOnlyWhenUsed) {
  std::string cert_path = dir_.file("k1.crt");
  std::string key_path = dir_.file("k1.key");
  CommandResult r =
      run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:secp256k1 -nodes -days 1 "
          "-subj /CN=k1 -keyout " +
          key_path + " -out " + cert_path);
  ASSERT_EQ(r.status, 0) << r.output;
  auto cert = Certificate::load_pem_file(cert_path);
  ASSERT_TRUE(cert) << cert.error().message();
  auto pub = cert->public_key();
  ASSERT_FALSE(pub);
  EXPECT_EQ(pub.error().code(), Errc::kUnsupported);
  EXPECT_NE(pub.error().message().find("secp256k1"), std::string::npos) << pub.error().message();
}

}  // namespace
}  // namespace ctrust::crypto
