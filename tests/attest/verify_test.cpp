// Incremental verification of evidence (attest/verify.h) against a simulated host
// (SoftQuoter, SimHost): trust, each kind of tampering with the reason it must give, and
// resuming from persisted state. The same checks against a real ctrustd, swtpm vTPMs and
// runc containers are in tests/cli/attest_test.sh.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>

#include "attest/soft_quoter.h"
#include "attest/verify.h"
#include "crypto/digest.h"
#include "imalog/binary.h"

namespace ctrust::attest {
namespace {

Bytes sha(std::string_view s) {
  auto d = crypto::digest_bytes(crypto::HashAlg::kSha256, as_bytes(s));
  return Bytes(d->view().begin(), d->view().end());
}

crypto::Digest digest_of(std::string_view s) {
  return *crypto::digest_bytes(crypto::HashAlg::kSha256, as_bytes(s));
}

bool has_reason(const std::vector<Reason>& reasons, const std::string& code) {
  return std::any_of(reasons.begin(), reasons.end(),
                     [&](const Reason& r) { return r.code == code; });
}

std::string codes(const std::vector<Reason>& reasons) {
  std::string out;
  for (const auto& r : reasons) out += r.code + ": " + r.message + "\n";
  return out;
}

class VerifyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto h = SimHost::create();
    ASSERT_TRUE(h.ok()) << h.error().message();
    host_.emplace(std::move(*h));
    auto ak = host_->ak().public_key();
    ASSERT_TRUE(ak.ok());
    keys_.emplace(HostKeys{*ak, 13});
    image_ = sha("image");
    policy_digest_ = sha("policy document");
    policy::Policy p;
    p.name = "app";
    p.issuer = "tests";
    p.not_before = 0;
    p.not_after = 4102444800;
    p.allow.push_back({digest_of("busybox"), {}});
    p.allow.push_back({digest_of("app"), {"/usr/bin/app"}});
    p.images.push_back(*crypto::Digest::from_bytes(crypto::HashAlg::kSha256, image_));
    ASSERT_TRUE(policy::normalize(p).ok());
    auto compiled = policy::CompiledPolicy::compile(p);
    ASSERT_TRUE(compiled.ok());
    choice_.name = "app@1";
    choice_.digest = "sha256:" + to_hex(policy_digest_);
    choice_.compiled = std::make_shared<policy::CompiledPolicy>(std::move(*compiled));
    choice_.images = {"sha256:" + to_hex(image_)};
    refs_.agent_binaries = {"sha256:" + to_hex(sha("ctrustd binary"))};
    refs_.agent_configs = {"sha256:" + to_hex(sha("ctrustd config"))};
  }

  SimHost::Container* add(const std::string& id) {
    auto c = host_->add_container(id, image_, policy_digest_);
    EXPECT_TRUE(c.ok()) << c.error().message();
    return *c;
  }

  // One round: challenge from the states, the host answers, `tamper` may change the
  // evidence, the verifier checks it.
  template <typename Tamper>
  AttestationOutcome round(Tamper tamper) {
    auto ch = make_challenge(state_, containers_);
    EXPECT_TRUE(ch.ok());
    auto ev = host_->answer(*ch);
    EXPECT_TRUE(ev.ok()) << ev.error().message();
    tamper(*ch, *ev);
    return verify(*ch, *ev);
  }
  AttestationOutcome round() {
    return round([](Challenge&, Evidence&) {});
  }
  // What a compromised agent could do with the host TPM: a host quote over changed
  // container evidence, so that only the container checks can catch the change.
  void requote_host(const Challenge& ch, Evidence& ev) {
    auto pcrs = host_->boot_pcrs();
    pcrs.emplace_back(13, host_->host_log().pcr());
    ev.host_quote =
        *host_->ak().quote(pcrs, host_qualifying_data(ch.nonce, ev.host_log.count, ev.containers));
  }
  AttestationOutcome verify(const Challenge& ch, const Evidence& ev) {
    AttestationInput in;
    in.challenge = &ch;
    in.evidence = &ev;
    in.host = &*keys_;
    in.refs = &refs_;
    in.policies = [this](const std::string&, const std::string&,
                         const std::string&) -> std::optional<PolicyChoice> {
      if (!have_policy_) return std::nullopt;
      return choice_;
    };
    in.now = 1000;
    auto out = verify_attestation(state_, containers_, in);
    EXPECT_TRUE(out.ok()) << out.error().message();
    return *out;
  }
  const ContainerOutcome* outcome(const AttestationOutcome& o, const std::string& id) {
    for (const auto& c : o.containers) {
      if (c.id == id) return &c;
    }
    ADD_FAILURE() << "no outcome for " << id;
    static const ContainerOutcome kMissing;
    return &kMissing;
  }

  std::optional<SimHost> host_;
  std::optional<HostKeys> keys_;
  Bytes image_, policy_digest_;
  PolicyChoice choice_;
  bool have_policy_ = true;
  ReferenceValues refs_;
  HostState state_;
  std::map<std::string, ContainerState> containers_;
};

TEST_F(VerifyTest, TrustsAHostAndContainersThatRanOnlyAllowedFiles) {
  add("c1");
  add("c2");
  ASSERT_TRUE(host_->exec("c1", "/bin/sh", "busybox").ok());
  ASSERT_TRUE(host_->exec("c2", "/usr/bin/app", "app").ok());
  auto o = round();
  EXPECT_EQ(o.host_status, Status::kAffirming) << codes(o.host_reasons);
  ASSERT_NE(outcome(o, "c1"), nullptr);
  EXPECT_EQ(outcome(o, "c1")->status, Status::kAffirming) << codes(outcome(o, "c1")->reasons);
  EXPECT_EQ(outcome(o, "c2")->status, Status::kAffirming) << codes(outcome(o, "c2")->reasons);
  EXPECT_TRUE(outcome(o, "c1")->changed);
  EXPECT_EQ(containers_["c1"].log.offset, 4u);
  EXPECT_EQ(containers_["c1"].allowed, 1u);
  EXPECT_EQ(state_.log.offset, host_->host_log().count());
}

TEST_F(VerifyTest, AnUnlistedExecIsContraindicatedWithItsEntryAndRule) {
  add("c1");
  ASSERT_TRUE(host_->exec("c1", "/bin/sh", "busybox").ok());
  ASSERT_TRUE(host_->exec("c1", "/tmp/evil", "evil").ok());
  auto o = round();
  const auto* c = outcome(o, "c1");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->status, Status::kContraindicated);
  ASSERT_TRUE(has_reason(c->reasons, "unknown-digest")) << codes(c->reasons);
  EXPECT_EQ(c->reasons[0].entry, 4u);
  EXPECT_EQ(c->reasons[0].rule, "unknown-digest");
  // Sticky: the entry stays in the log, so the verdict stays.
  auto again = round();
  EXPECT_EQ(outcome(again, "c1")->status, Status::kContraindicated);
  EXPECT_FALSE(outcome(again, "c1")->changed);
  EXPECT_EQ(o.host_status, Status::kAffirming);
}

TEST_F(VerifyTest, AListedFileAtAnotherPathIsAWrongPath) {
  add("c1");
  ASSERT_TRUE(host_->exec("c1", "/bin/app", "app").ok());
  auto o = round();
  EXPECT_TRUE(has_reason(outcome(o, "c1")->reasons, "wrong-path"));
}

TEST_F(VerifyTest, ViolationRecordsAndAgentGapsAreContraindicated) {
  add("c1");
  add("c2");
  ASSERT_TRUE(host_->container("c1")->log.add_violation("/bin/written").ok());
  ASSERT_TRUE(host_->container("c2")->log.add_violation("ctrust:agent-gap").ok());
  auto o = round();
  EXPECT_TRUE(has_reason(outcome(o, "c1")->reasons, "violation-record"));
  EXPECT_TRUE(has_reason(outcome(o, "c2")->reasons, "agent-gap"));
}

TEST_F(VerifyTest, ATamperedEntryIsDetected) {
  add("c1");
  ASSERT_TRUE(host_->exec("c1", "/bin/sh", "busybox").ok());
  auto o = round([](Challenge&, Evidence& ev) {
    // Flip one byte of the last entry's file digest: its data no longer replays.
    Bytes& b = ev.containers[0].log.entries;
    b[b.size() - 12] ^= 1;
  });
  EXPECT_EQ(outcome(o, "c1")->status, Status::kContraindicated);
  EXPECT_TRUE(has_reason(outcome(o, "c1")->reasons, "log-replay"))
      << codes(outcome(o, "c1")->reasons);
  EXPECT_EQ(containers_["c1"].log.offset, 0u) << "a failed log must not advance";
}

TEST_F(VerifyTest, DroppedReorderedAndTruncatedEntriesAreDetected) {
  for (int variant = 0; variant < 3; ++variant) {
    SetUp();
    containers_.clear();
    state_ = HostState{};
    add("c1");
    ASSERT_TRUE(host_->exec("c1", "/bin/sh", "busybox").ok());
    ASSERT_TRUE(host_->exec("c1", "/usr/bin/app", "app").ok());
    auto o = round([&](Challenge&, Evidence& ev) {
      auto& c = ev.containers[0];
      std::vector<imalog::Entry> entries = host_->container("c1")->log.entries();
      if (variant == 0) {
        entries.erase(entries.begin() + 3);  // dropped
        c.log = *make_chunk(entries, 0, entries.size());
      } else if (variant == 1) {
        std::swap(entries[3], entries[4]);  // reordered
        c.log = *make_chunk(entries, 0, entries.size());
      } else {
        entries.pop_back();  // truncated, the count kept
        c.log = *make_chunk(entries, 0, entries.size());
        c.log.count = entries.size() + 1;
      }
    });
    const auto* c = outcome(o, "c1");
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(c->status, Status::kContraindicated) << variant;
    EXPECT_TRUE(has_reason(c->reasons, variant == 2 ? "log-malformed" : "quote-binding") ||
                has_reason(c->reasons, "log-replay"))
        << variant << "\n"
        << codes(c->reasons);
  }
}

TEST_F(VerifyTest, AReplayedOldQuoteIsDetected) {
  add("c1");
  auto first_ch = make_challenge(state_, containers_);
  auto first_ev = host_->answer(*first_ch);
  ASSERT_TRUE(first_ev.ok());
  // An old container quote in new evidence: the host quote (made over the genuine one)
  // no longer vouches for it.
  auto o0 = round(
      [&](Challenge&, Evidence& ev) { ev.containers[0].quote = first_ev->containers[0].quote; });
  EXPECT_EQ(o0.host_status, Status::kContraindicated);
  ASSERT_NE(outcome(o0, "c1"), nullptr);
  EXPECT_EQ(outcome(o0, "c1")->status, Status::kContraindicated);
  // Even with a host quote over it (a compromised agent asking the host TPM), the
  // container quote's own binding to the nonce fails.
  SetUp();
  state_ = HostState{};
  containers_.clear();
  add("c1");
  first_ch = make_challenge(state_, containers_);
  first_ev = host_->answer(*first_ch);
  auto o = round([&](Challenge& ch, Evidence& ev) {
    ev.containers[0].quote = first_ev->containers[0].quote;
    auto pcrs = host_->boot_pcrs();
    pcrs.emplace_back(13, host_->host_log().pcr());
    ev.host_quote =
        *host_->ak().quote(pcrs, host_qualifying_data(ch.nonce, ev.host_log.count, ev.containers));
  });
  ASSERT_NE(outcome(o, "c1"), nullptr);
  EXPECT_TRUE(has_reason(outcome(o, "c1")->reasons, "quote-binding"))
      << codes(outcome(o, "c1")->reasons);
  // And the whole old evidence for a new challenge: the host quote's binding fails.
  auto o2 = round([&](Challenge&, Evidence& ev) { ev = *first_ev; });
  EXPECT_EQ(o2.host_status, Status::kContraindicated);
  EXPECT_TRUE(has_reason(o2.host_reasons, "quote-binding")) << codes(o2.host_reasons);
}

TEST_F(VerifyTest, AQuoteFromAnotherContainerIsDetected) {
  add("c1");
  add("c2");
  auto o = round([&](Challenge& ch, Evidence& ev) {
    // c2's vTPM quotes with the binding for c1: the AK is c2's, not the one bound to c1.
    auto* c2 = host_->container("c2");
    auto q = c2->ak.quote({{10, c2->log.pcr()}},
                          container_qualifying_data(ch.nonce, "c1", ev.containers[0].log.count));
    ev.containers[0].quote = *q;
    requote_host(ch, ev);
  });
  EXPECT_TRUE(has_reason(outcome(o, "c1")->reasons, "quote-signature"))
      << codes(outcome(o, "c1")->reasons);
  EXPECT_EQ(outcome(o, "c2")->status, Status::kAffirming);
}

TEST_F(VerifyTest, AQuoteMadeForAnotherContainerIdIsDetected) {
  add("c1");
  auto o = round([&](Challenge& ch, Evidence& ev) {
    auto* c1 = host_->container("c1");
    ev.containers[0].quote = *c1->ak.quote(
        {{10, c1->log.pcr()}}, container_qualifying_data(ch.nonce, "c9", c1->log.count()));
    requote_host(ch, ev);
  });
  EXPECT_TRUE(has_reason(outcome(o, "c1")->reasons, "quote-binding"));
}

TEST_F(VerifyTest, AQuoteFromAnotherHostIsDetected) {
  add("c1");
  auto other = SimHost::create();
  ASSERT_TRUE(other.ok());
  auto o = round([&](Challenge& ch, Evidence& ev) {
    auto pcrs = host_->boot_pcrs();
    pcrs.emplace_back(13, host_->host_log().pcr());
    ev.host_quote =
        *other->ak().quote(pcrs, host_qualifying_data(ch.nonce, ev.host_log.count, ev.containers));
  });
  EXPECT_EQ(o.host_status, Status::kContraindicated);
  EXPECT_TRUE(has_reason(o.host_reasons, "quote-signature")) << codes(o.host_reasons);
  EXPECT_EQ(outcome(o, "c1")->status, Status::kContraindicated);
}

TEST_F(VerifyTest, AForgedVtpmBindingIsDetected) {
  add("c1");
  auto o = round([&](Challenge& ch, Evidence& ev) {
    // An attacker's own key quotes the container's log: its Name is not the bound one.
    auto fake = SoftQuoter::create();
    auto* c1 = host_->container("c1");
    ev.containers[0].ak_public = fake->public_tpm2b();
    ev.containers[0].quote = *fake->quote(
        {{10, c1->log.pcr()}}, container_qualifying_data(ch.nonce, "c1", c1->log.count()));
    ev.host_quote = *host_->ak().quote(
        [&] {
          auto p = host_->boot_pcrs();
          p.emplace_back(13, host_->host_log().pcr());
          return p;
        }(),
        host_qualifying_data(ch.nonce, ev.host_log.count, ev.containers));
  });
  EXPECT_EQ(o.host_status, Status::kAffirming) << codes(o.host_reasons);
  EXPECT_TRUE(has_reason(outcome(o, "c1")->reasons, "forged-binding"))
      << codes(outcome(o, "c1")->reasons);
}

TEST_F(VerifyTest, AWrongNonceIsDetected) {
  add("c1");
  auto o = round([&](Challenge& ch, Evidence&) { ch.nonce[0] ^= 0xff; });
  EXPECT_TRUE(has_reason(o.host_reasons, "quote-binding"));
  EXPECT_EQ(outcome(o, "c1")->status, Status::kContraindicated);
}

TEST_F(VerifyTest, ATamperedHostLogIsDetected) {
  add("c1");
  auto o = round([&](Challenge&, Evidence& ev) {
    Bytes& b = ev.host_log.entries;
    b[b.size() - 3] ^= 1;
  });
  EXPECT_EQ(o.host_status, Status::kContraindicated);
  EXPECT_TRUE(has_reason(o.host_reasons, "log-replay")) << codes(o.host_reasons);
}

TEST_F(VerifyTest, AnUnboundContainerIsDetected) {
  add("c1");
  auto o = round([&](Challenge&, Evidence& ev) { ev.containers[0].id = "c9"; });
  EXPECT_FALSE(o.containers.empty());
  // Renaming breaks the host quote's binding to the container quotes.
  EXPECT_EQ(o.host_status, Status::kContraindicated);
}

TEST_F(VerifyTest, AWithheldContainerIsDetected) {
  add("c1");
  add("c2");
  round();
  auto o = round([&](Challenge& ch, Evidence& ev) {
    ev.containers.erase(ev.containers.begin() + 1);
    auto pcrs = host_->boot_pcrs();
    pcrs.emplace_back(13, host_->host_log().pcr());
    ev.host_quote =
        *host_->ak().quote(pcrs, host_qualifying_data(ch.nonce, ev.host_log.count, ev.containers));
  });
  EXPECT_TRUE(has_reason(outcome(o, "c2")->reasons, "missing-container"));
}

TEST_F(VerifyTest, ResumesIncrementallyFromPersistedState) {
  add("c1");
  ASSERT_TRUE(host_->exec("c1", "/bin/sh", "busybox").ok());
  auto first = round();
  EXPECT_EQ(first.entries_verified, host_->host_log().count() + 4);
  // The verifier restarts: its state comes back from JSON.
  auto host_json = state_.to_json().dump();
  auto c_json = containers_["c1"].to_json().dump();
  state_ = *HostState::from_json(nlohmann::json::parse(host_json));
  containers_.clear();
  containers_["c1"] = *ContainerState::from_json(nlohmann::json::parse(c_json));
  ASSERT_TRUE(host_->exec("c1", "/usr/bin/app", "app").ok());
  auto ch = make_challenge(state_, containers_);
  EXPECT_EQ(ch->containers[0].log_offset, 4u);
  auto ev = host_->answer(*ch);
  EXPECT_EQ(ev->containers[0].log.offset, 4u);
  EXPECT_EQ(ev->host_log.entries.size(), 0u) << "only new entries travel";
  auto second = verify(*ch, *ev);
  EXPECT_EQ(second.entries_verified, 1u);
  EXPECT_EQ(outcome(second, "c1")->status, Status::kAffirming)
      << codes(outcome(second, "c1")->reasons);
  EXPECT_EQ(containers_["c1"].allowed, 2u);
}

TEST_F(VerifyTest, AnAgentRestartIsDetected) {
  add("c1");
  round();
  host_->instance() = "fedcba9876543210";
  ASSERT_TRUE(host_->host_log().add_buf("ctrust:agent-start", R"({"event":"agent-start"})").ok());
  ASSERT_TRUE(
      host_->host_log()
          .add_buf("ctrust:agent-gap", R"({"event":"agent-gap","container":"c1","adopted":true})")
          .ok());
  ASSERT_TRUE(host_->container("c1")->log.add_violation("ctrust:agent-gap").ok());
  auto o = round();
  EXPECT_TRUE(has_reason(o.host_reasons, "agent-restart")) << codes(o.host_reasons);
  EXPECT_EQ(o.host_status, Status::kWarning);
  EXPECT_TRUE(has_reason(outcome(o, "c1")->reasons, "agent-gap"));
  EXPECT_EQ(outcome(o, "c1")->status, Status::kContraindicated);
}

TEST_F(VerifyTest, CountersGoingBackAreAReplay) {
  add("c1");
  host_->reset_count = 5;
  round();
  host_->reset_count = 4;
  auto o = round();
  EXPECT_TRUE(has_reason(o.host_reasons, "replayed-quote")) << codes(o.host_reasons);
}

TEST_F(VerifyTest, AReusedContainerNameStartsItsLogAnew) {
  add("c1");
  ASSERT_TRUE(host_->exec("c1", "/bin/sh", "busybox").ok());
  ASSERT_TRUE(host_->exec("c1", "/usr/bin/app", "app").ok());
  round();
  ASSERT_EQ(containers_["c1"].log.offset, 5u);
  // c1 stops and a new container of the same name starts with a longer log.
  ASSERT_TRUE(host_->stop("c1").ok());
  host_->container("c1")->id = "c1-old";
  add("c1");
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(host_->exec("c1", "/bin/sh" + std::to_string(i), "busybox").ok());
  }
  auto o = round();
  EXPECT_TRUE(has_reason(outcome(o, "c1")->reasons, "log-restarted"))
      << codes(outcome(o, "c1")->reasons);
  auto o2 = round();
  EXPECT_EQ(outcome(o2, "c1")->status, Status::kAffirming) << codes(outcome(o2, "c1")->reasons);
  EXPECT_EQ(containers_["c1"].log.offset, 9u);
}

TEST_F(VerifyTest, AHostRebootStartsTheBooksAnew) {
  add("c1");
  ASSERT_TRUE(host_->exec("c1", "/tmp/evil", "evil").ok());
  round();
  EXPECT_EQ(containers_["c1"].status, Status::kContraindicated);
  // The host reboots: a new TPM reset count, a new log longer than the old offset.
  auto fresh = SimHost::create();
  ASSERT_TRUE(fresh.ok());
  fresh->reset_count = 1;
  host_.emplace(std::move(*fresh));
  keys_.emplace(HostKeys{*host_->ak().public_key(), 13});
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(host_->host_log().add_buf("ctrust:note", R"({"event":"note"})").ok());
  }
  add("c2");
  auto o = round();
  EXPECT_TRUE(has_reason(o.host_reasons, "tpm-reset")) << codes(o.host_reasons);
  EXPECT_EQ(o.dropped, std::vector<std::string>{"c1"});
  EXPECT_TRUE(containers_.empty());
  EXPECT_EQ(state_.log.offset, 0u);
  auto o2 = round();
  EXPECT_EQ(outcome(o2, "c2")->status, Status::kAffirming) << codes(outcome(o2, "c2")->reasons);
}

TEST_F(VerifyTest, UnknownAgentBinaryIsContraindicatedAndMissingReferencesWarn) {
  refs_.agent_binaries = {"sha256:" + std::string(64, '0')};
  add("c1");
  auto o = round();
  EXPECT_EQ(o.host_status, Status::kContraindicated);
  EXPECT_TRUE(has_reason(o.host_reasons, "reference-value"));
  SetUp();
  state_ = HostState{};
  containers_.clear();
  refs_.agent_binaries.clear();
  add("c1");
  auto w = round();
  EXPECT_EQ(w.host_status, Status::kWarning);
  EXPECT_TRUE(has_reason(w.host_reasons, "no-reference-value"));
  // A warning about a host log entry stays with the host: the next round has no new entry.
  auto w2 = round();
  EXPECT_EQ(w2.host_status, Status::kWarning);
  EXPECT_TRUE(has_reason(state_.warnings, "no-reference-value"));
}

TEST_F(VerifyTest, NoPolicyIsAWarningAndAnImageOutsideThePolicyIsContraindicated) {
  have_policy_ = false;
  add("c1");
  auto o = round();
  EXPECT_EQ(outcome(o, "c1")->status, Status::kWarning);
  EXPECT_TRUE(has_reason(outcome(o, "c1")->reasons, "no-policy"));
  have_policy_ = true;
  choice_.images = {"sha256:" + std::string(64, '1')};
  auto c = host_->add_container("c2", image_, policy_digest_);
  ASSERT_TRUE(c.ok());
  auto o2 = round();
  EXPECT_TRUE(has_reason(outcome(o2, "c2")->reasons, "image-not-in-policy"));
}

TEST_F(VerifyTest, MalformedChunksAreRejectedNotCrashed) {
  add("c1");
  auto o = round([&](Challenge&, Evidence& ev) {
    ev.containers[0].log.entries.resize(ev.containers[0].log.entries.size() / 2);
  });
  EXPECT_TRUE(has_reason(outcome(o, "c1")->reasons, "log-malformed"));
}

TEST(EvidenceTest, RoundTripsAndRejectsMalformedMessages) {
  auto h = SimHost::create();
  ASSERT_TRUE(h.ok());
  ASSERT_TRUE(h->add_container("c1", sha("i"), sha("p")).ok());
  Challenge ch;
  ch.nonce = Bytes(32, 7);
  ch.all = true;
  ch.containers.push_back({"c1", 0});
  auto text = to_json(ch).dump();
  auto back = parse_challenge(text);
  ASSERT_TRUE(back.ok()) << back.error().message();
  EXPECT_EQ(back->nonce, ch.nonce);
  auto ev = h->answer(ch);
  ASSERT_TRUE(ev.ok());
  auto ev_text = to_json(*ev).dump();
  auto ev_back = parse_evidence(ev_text);
  ASSERT_TRUE(ev_back.ok()) << ev_back.error().message();
  EXPECT_EQ(to_json(*ev_back), to_json(*ev));

  for (
      const char* bad :
      {R"({"version":1,"nonce":"00","host_log_offset":0,"containers":[]})",
       R"({"version":2,"nonce":"0707070707070707070707070707070707070707070707070707070707070707","host_log_offset":0,"containers":[]})",
       R"({"version":1,"nonce":"0707070707070707070707070707070707070707070707070707070707070707","host_log_offset":-1,"containers":[]})",
       R"({"version":1,"nonce":"0707070707070707070707070707070707070707070707070707070707070707","host_log_offset":0,"containers":[],"x":1})",
       R"({"version":1,"version":1,"nonce":"0707070707070707070707070707070707070707070707070707070707070707","host_log_offset":0,"containers":[]})",
       R"({"version":1,"nonce":"0707070707070707070707070707070707070707070707070707070707070707","host_log_offset":0,"containers":[{"id":"../x","log_offset":0}]})",
       R"([1,2])", "", "{"}) {
    EXPECT_FALSE(parse_challenge(bad).ok()) << bad;
  }
  // Non-canonical base64 and oversized messages.
  EXPECT_FALSE(base64_decode("QQ=", 10).ok());
  EXPECT_FALSE(base64_decode("QR==", 10).ok());
  EXPECT_TRUE(base64_decode("QQ==", 10).ok());
  EXPECT_FALSE(parse_evidence(std::string(kMaxEvidenceBytes + 1, ' ')).ok());
  auto mangled = to_json(*ev);
  mangled["containers"][0]["state"] = "paused";
  EXPECT_FALSE(parse_evidence(mangled.dump()).ok());
  mangled = to_json(*ev);
  mangled["containers"][0].erase("quote");
  EXPECT_FALSE(parse_evidence(mangled.dump()).ok());
}

}  // namespace
}  // namespace ctrust::attest
