// The tpm module against real swtpm processes: PCRs, keys, quotes verified by our own
// software verifier, certification, credential activation, restarts and leak checks.
#include "tpm/tpm.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <thread>

#include "swtpm_fixture.h"

namespace ctrust::tpm {
namespace {

using crypto::HashAlg;
using testing::SwtpmTest;

Bytes bytes_of(std::string_view s) { return Bytes(s.begin(), s.end()); }

class TpmTest : public SwtpmTest {};

TEST_F(TpmTest, InfoAndBanks) {
  CTRUST_OPEN_SWTPM(tpm);
  auto info = tpm.info();
  ASSERT_TRUE(info) << info.error().message();
  EXPECT_EQ(info->family, "2.0");
  EXPECT_FALSE(info->manufacturer.empty());
  EXPECT_NE(std::find(info->active_banks.begin(), info->active_banks.end(), HashAlg::kSha256),
            info->active_banks.end());
}

TEST_F(TpmTest, ExtendsEveryActiveBankAndReadsBack) {
  CTRUST_OPEN_SWTPM(tpm);
  auto banks = tpm.active_banks();
  ASSERT_TRUE(banks);
  auto extended = tpm.pcr_extend_data(16, bytes_of("hello"));
  ASSERT_TRUE(extended) << extended.error().message();
  ASSERT_EQ(extended->size(), banks->size());
  PcrSelection sel;
  for (auto alg : *banks) sel.push_back(PcrBank{alg, {15, 16}});
  auto values = tpm.pcr_read(sel);
  ASSERT_TRUE(values) << values.error().message();
  for (std::size_t b = 0; b < banks->size(); ++b) {
    HashAlg alg = (*banks)[b];
    auto zero = crypto::Digest::zero(alg);
    auto want = crypto::digest_concat(alg, zero.view(), (*extended)[b].view());
    ASSERT_TRUE(want);
    EXPECT_EQ(values->values[2 * b], zero) << crypto::hash_name(alg);
    EXPECT_EQ(values->values[2 * b + 1], *want) << crypto::hash_name(alg);
  }
  EXPECT_FALSE(tpm.pcr_extend(24, *extended));
}

TEST_F(TpmTest, ReadsAllTwentyFourPcrsInChunks) {
  CTRUST_OPEN_SWTPM(tpm);
  auto sel = parse_pcr_list("sha256:all");
  ASSERT_TRUE(sel);
  auto values = tpm.pcr_read(*sel);
  ASSERT_TRUE(values) << values.error().message();
  EXPECT_EQ(values->values.size(), 24U);
}

TEST_F(TpmTest, QuoteVerifiesInSoftwareAndTamperingIsRejected) {
  CTRUST_OPEN_SWTPM(tpm);
  for (KeyAlg alg : {KeyAlg::kEccP256, KeyAlg::kRsa2048}) {
    auto ak = tpm.create_transient_ak(alg);
    ASSERT_TRUE(ak) << ak.error().message();
    ASSERT_TRUE(tpm.pcr_extend_data(10, bytes_of("quote me")));
    auto sel = parse_pcr_list("sha256:10,16+sha1:10");
    ASSERT_TRUE(sel);
    Bytes nonce{9, 8, 7, 6, 5};
    auto quote = tpm.quote(*ak, *sel, nonce);
    ASSERT_TRUE(quote) << quote.error().message();
    auto key = ak->public_area().public_key();
    ASSERT_TRUE(key);
    auto verdict = verify_quote(*key, quote->message, quote->signature, nonce, &quote->pcrs);
    ASSERT_TRUE(verdict);
    EXPECT_TRUE(verdict->ok()) << verdict->problems.front();
    EXPECT_EQ(verdict->attestation.qualified_signer.size(), 34U);

    Bytes other_nonce{9, 8, 7, 6, 4};
    EXPECT_FALSE(
        verify_quote(*key, quote->message, quote->signature, other_nonce, &quote->pcrs)->ok());
    PcrValues changed = quote->pcrs;
    changed.values[0].bytes[0] ^= 0x80;
    EXPECT_FALSE(verify_quote(*key, quote->message, quote->signature, nonce, &changed)->ok());
    Bytes sig = quote->signature;
    sig[sig.size() / 2] ^= 1;
    EXPECT_FALSE(verify_quote(*key, quote->message, sig, nonce, &quote->pcrs)->ok());
  }
  auto leaked = tpm.loaded_handle_count();
  ASSERT_TRUE(leaked);
  EXPECT_EQ(*leaked, 0U);
}

TEST_F(TpmTest, AttestationKeyIsPersistentAndReused) {
  CTRUST_OPEN_SWTPM(tpm);
  auto first = tpm.attestation_key(KeyAlg::kEccP256);
  ASSERT_TRUE(first) << first.error().message();
  EXPECT_EQ(first->persistent_handle(), kDefaultAkHandle);
  Bytes name = first->name();
  auto again = tpm.attestation_key(KeyAlg::kEccP256);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->name(), name);
  // Asking for an RSA AK where an ECC one lives is an error, not an overwrite.
  auto wrong = tpm.attestation_key(KeyAlg::kRsa2048);
  ASSERT_FALSE(wrong);
  EXPECT_NE(wrong.error().message().find("not a restricted rsa signing key"), std::string::npos);

  // Survives a TPM restart (persistent objects live in NV).
  std::string dir = swtpm_->options().state_dir;
  swtpm_.reset();
  std::string tcti = start_swtpm(dir);
  ASSERT_FALSE(tcti.empty());
  auto reopened = open(tcti);
  ASSERT_TRUE(reopened);
  auto after = reopened->attestation_key(KeyAlg::kEccP256);
  ASSERT_TRUE(after) << after.error().message();
  EXPECT_EQ(after->name(), name);
  ASSERT_TRUE(reopened->evict(kDefaultAkHandle));
  EXPECT_FALSE(reopened->attestation_key(KeyAlg::kRsa2048, kDefaultAkHandle + 1)
                   ->public_area()
                   .is_restricted_decrypt());
  // The AK is a primary key of the endorsement hierarchy: recreated, it is the same key
  // (until the endorsement seed changes), so evicting it loses nothing.
  auto fresh = reopened->attestation_key(KeyAlg::kEccP256);
  ASSERT_TRUE(fresh);
  EXPECT_EQ(fresh->name(), name);
  auto leaked = reopened->loaded_handle_count();
  ASSERT_TRUE(leaked);
  EXPECT_EQ(*leaked, 0U);
}

TEST_F(TpmTest, EndorsementKeysOfBothTypes) {
  CTRUST_OPEN_SWTPM(tpm);
  for (KeyAlg alg : {KeyAlg::kRsa2048, KeyAlg::kEccP256}) {
    auto ek = tpm.endorsement_key(alg);
    ASSERT_TRUE(ek) << ek.error().message();
    EXPECT_TRUE(ek->public_area().is_restricted_decrypt());
    auto key = ek->public_area().public_key();
    ASSERT_TRUE(key) << key.error().message();
    EXPECT_EQ(key->type(),
              alg == KeyAlg::kRsa2048 ? crypto::KeyType::kRsa2048 : crypto::KeyType::kEcdsaP256);
    // The EK is a primary key: the same template gives the same key.
    auto again = tpm.endorsement_key(alg);
    ASSERT_TRUE(again);
    EXPECT_EQ(again->name(), ek->name());
  }
  // A bare swtpm has no EK certificate.
  auto cert = tpm.ek_certificate(KeyAlg::kRsa2048);
  ASSERT_TRUE(cert) << cert.error().message();
  EXPECT_FALSE(cert->has_value());
}

TEST_F(TpmTest, CertifyProvesAKeyIsLoaded) {
  CTRUST_OPEN_SWTPM(tpm);
  auto ak = tpm.create_transient_ak(KeyAlg::kEccP256);
  auto other = tpm.create_transient_ak(KeyAlg::kRsa2048);
  ASSERT_TRUE(ak && other);
  Bytes nonce{1, 2, 3};
  auto cert = tpm.certify(*other, *ak, nonce);
  ASSERT_TRUE(cert) << cert.error().message();
  auto key = ak->public_area().public_key();
  ASSERT_TRUE(key);
  auto verdict = verify_certify(*key, cert->message, cert->signature, nonce, other->name());
  ASSERT_TRUE(verdict);
  EXPECT_TRUE(verdict->ok()) << verdict->problems.front();
  EXPECT_FALSE(verify_certify(*key, cert->message, cert->signature, nonce, ak->name())->ok());
  // The TCG default EK cannot be certified: TPM2_Certify needs the ADMIN role, and its
  // policy (PolicySecret alone) lacks the PolicyCommandCode that role requires.
  auto ek = tpm.endorsement_key(KeyAlg::kEccP256);
  ASSERT_TRUE(ek);
  auto ek_cert = tpm.certify(*ek, *ak, nonce);
  ASSERT_FALSE(ek_cert);
  EXPECT_NE(ek_cert.error().message().find("policy check failed"), std::string::npos);
  auto leaked = tpm.loaded_handle_count();
  ASSERT_TRUE(leaked);
  EXPECT_EQ(*leaked, 3U);  // ak, other, ek: still owned here; the failed session is flushed
}

TEST_F(TpmTest, CredentialActivationRoundTripForBothEkTypes) {
  CTRUST_OPEN_SWTPM(tpm);
  auto ak = tpm.create_transient_ak(KeyAlg::kEccP256);
  ASSERT_TRUE(ak);
  for (KeyAlg alg : {KeyAlg::kRsa2048, KeyAlg::kEccP256}) {
    auto ek = tpm.endorsement_key(alg);
    ASSERT_TRUE(ek);
    Bytes secret = bytes_of("a 32-byte secret for the AK ....");
    auto credential = make_credential(ek->public_area(), ak->name(), secret);
    ASSERT_TRUE(credential) << credential.error().message();
    auto got = tpm.activate_credential(*ak, *ek, *credential);
    ASSERT_TRUE(got) << key_alg_name(alg) << ": " << got.error().message();
    EXPECT_EQ(*got, secret);

    // Bound to another object's name: the TPM refuses.
    Bytes other_name = ak->name();
    other_name.back() ^= 1;
    auto wrong_name = make_credential(ek->public_area(), other_name, secret);
    ASSERT_TRUE(wrong_name);
    EXPECT_FALSE(tpm.activate_credential(*ak, *ek, *wrong_name));
  }
  auto leaked = tpm.loaded_handle_count();
  ASSERT_TRUE(leaked);
  EXPECT_EQ(*leaked, 1U);  // only the AK this test still holds
}

TEST_F(TpmTest, CredentialForAnotherTpmsEkFails) {
  CTRUST_OPEN_SWTPM(tpm);
  testing::TempDir other_dir;
  SwtpmOptions options;
  options.state_dir = other_dir.path();
  options.socket = other_dir.file("tpm.sock");
  auto other_swtpm = Swtpm::start(options);
  ASSERT_TRUE(other_swtpm) << other_swtpm.error().message();
  auto other = Tpm::open(other_swtpm->tcti());
  ASSERT_TRUE(other);
  auto other_ek = other->endorsement_key(KeyAlg::kRsa2048);
  auto ek = tpm.endorsement_key(KeyAlg::kRsa2048);
  auto ak = tpm.create_transient_ak(KeyAlg::kEccP256);
  ASSERT_TRUE(other_ek && ek && ak);
  EXPECT_NE(other_ek->name(), ek->name());
  auto credential = make_credential(other_ek->public_area(), ak->name(), bytes_of("secret"));
  ASSERT_TRUE(credential);
  auto got = tpm.activate_credential(*ak, *ek, *credential);
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code(), Errc::kTpm);
  EXPECT_NE(got.error().message().find("tpm:"), std::string::npos) << got.error().message();
}

TEST_F(TpmTest, StateShutdownKeepsPcrsAcrossARestart) {
  CTRUST_OPEN_SWTPM(tpm);
  ASSERT_TRUE(tpm.pcr_extend_data(10, bytes_of("before restart")));
  auto sel = parse_pcr_list("sha256:10");
  ASSERT_TRUE(sel);
  auto before = tpm.pcr_read(*sel);
  ASSERT_TRUE(before);
  ASSERT_TRUE(tpm.shutdown_state());
  std::string dir = swtpm_->options().state_dir;
  swtpm_.reset();
  std::string tcti = start_swtpm(dir, SwtpmStartup::kState);
  ASSERT_FALSE(tcti.empty());
  auto reopened = open(tcti);
  ASSERT_TRUE(reopened);
  auto after = reopened->pcr_read(*sel);
  ASSERT_TRUE(after);
  EXPECT_EQ(after->values, before->values);
  EXPECT_FALSE(after->values[0].is_zero());
}

TEST_F(TpmTest, AKilledTpmDoesNotResumeStalePcrs) {
  CTRUST_OPEN_SWTPM(tpm);
  ASSERT_TRUE(tpm.pcr_extend_data(10, bytes_of("x")));
  std::string dir = swtpm_->options().state_dir;
  ::kill(swtpm_->pid(), SIGKILL);
  swtpm_.reset();
  SwtpmOptions options;
  options.state_dir = dir;
  options.socket = dir + "/tpm.sock";
  options.startup = SwtpmStartup::kState;
  auto restarted = Swtpm::start(options);
  ASSERT_FALSE(restarted);  // no saved state: refusing beats fresh PCRs under an old name
  EXPECT_NE(restarted.error().message().find("startup failed"), std::string::npos)
      << restarted.error().message();
}

TEST_F(TpmTest, ASwtpmKilledDuringUseIsAClearTpmError) {
  CTRUST_OPEN_SWTPM(tpm);
  auto sel = parse_pcr_list("sha256:10");
  ASSERT_TRUE(tpm.pcr_read(*sel));
  ::kill(swtpm_->pid(), SIGKILL);
  auto read = tpm.pcr_read(*sel);
  ASSERT_FALSE(read);
  EXPECT_EQ(read.error().code(), Errc::kTpm);
  EXPECT_NE(read.error().message().find("reading PCRs: "), std::string::npos)
      << read.error().message();
  // The socket closes before the process is reaped; give the kernel a moment.
  for (int i = 0; i < 200 && swtpm_->running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_FALSE(swtpm_->running());
}

TEST_F(TpmTest, ErrorsAreDecoded) {
  auto missing = Tpm::open("swtpm:path=/nonexistent/tpm.sock");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), Errc::kTpm);
  EXPECT_NE(missing.error().message().find("tcti"), std::string::npos) << missing.error().message();
  auto bad = Tpm::open("nosuchtcti:foo");
  ASSERT_FALSE(bad);
}

TEST_F(TpmTest, SwtpmMissingIsAClearError) {
  SwtpmOptions options;
  options.state_dir = temp_.path();
  options.socket = temp_.file("tpm.sock");
  options.binary = "ctrust-no-such-swtpm";
  auto swtpm = Swtpm::start(options);
  ASSERT_FALSE(swtpm);
  EXPECT_EQ(swtpm.error().code(), Errc::kNotFound);
  EXPECT_NE(swtpm.error().message().find("install the swtpm and swtpm-tools packages"),
            std::string::npos);
}

}  // namespace
}  // namespace ctrust::tpm
