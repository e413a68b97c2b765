// Fuzzes the challenge protocol's messages (attest/evidence.h), all parsers of untrusted
// network bytes: every input goes to parse_challenge, parse_evidence, parse_identity,
// parse_activate_request and parse_activate_response. Whatever parses must serialize with
// to_json(), parse again, and serialize to the same text. Evidence that parses is then
// verified (verify_attestation) from an empty state, as a verifier meets a new agent.
//
// The seeds in corpus/fuzz_attest_messages/ were made by a SimHost whose host AK is
// kSeedHostAkPem below, answering kSeedNonce with all=true: the seed evidence verifies, so
// mutations of its logs and records get past the host quote into the log replay and the
// record checks. A wrong verdict is fine; an Error (reserved for unusable caller input),
// a crash, a leak, or a persisted state that does not load back is not.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "attest/evidence.h"
#include "attest/verify.h"
#include "crypto/digest.h"
#include "crypto/keys.h"
#include "policy/compiled.h"
#include "policy/policy.h"

namespace {

using namespace ctrust;
using namespace ctrust::attest;

// The public half of the SimHost host AK that answered the seed challenges.
constexpr std::string_view kSeedHostAkPem =
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEmBUqeu3McQnzc8tPDO7g5xi0VpfW\n"
    "kvc3S8Pf0EzwWISc3RN6xbWVtQaShchNKhgZNfTS9BUCJb03RnSvYMalPg==\n"
    "-----END PUBLIC KEY-----\n";

Bytes sha256_of(std::string_view s) {
  auto d = crypto::digest_bytes(crypto::HashAlg::kSha256, as_bytes(s));
  if (!d) std::abort();
  return Bytes(d->view().begin(), d->view().end());
}

// What the verifier side holds: the registered host, reference values, a policy and the
// challenge the seeds answer (nonce 00 01 .. 1f, from the start of every log, all=true).
struct Verifier {
  HostKeys keys;
  ReferenceValues refs;
  PolicyChoice choice;
  Challenge challenge;
};

const Verifier& verifier() {
  static const Verifier* v = [] {
    auto ak = crypto::PublicKey::from_pem(kSeedHostAkPem);
    if (!ak) std::abort();
    auto* out = new Verifier{HostKeys{std::move(*ak), kDefaultHostPcr}, {}, {}, {}};
    out->refs.agent_binaries = {"sha256:" + to_hex(sha256_of("ctrustd binary"))};
    out->refs.agent_configs = {"sha256:" + to_hex(sha256_of("ctrustd config"))};
    Bytes image = sha256_of("image");
    policy::Policy p;
    p.name = "app";
    p.issuer = "fuzz";
    p.not_before = 0;
    p.not_after = 4102444800;
    p.allow.push_back(
        {*crypto::digest_bytes(crypto::HashAlg::kSha256, as_bytes(std::string_view("busybox"))),
         {}});
    p.allow.push_back(
        {*crypto::digest_bytes(crypto::HashAlg::kSha256, as_bytes(std::string_view("app"))),
         {"/usr/bin/app"}});
    p.images.push_back(*crypto::Digest::from_bytes(crypto::HashAlg::kSha256, image));
    if (!policy::normalize(p)) std::abort();
    auto compiled = policy::CompiledPolicy::compile(p);
    if (!compiled) std::abort();
    out->choice.name = "app@1";
    out->choice.digest = "sha256:" + to_hex(sha256_of("policy document"));
    out->choice.compiled = std::make_shared<policy::CompiledPolicy>(std::move(*compiled));
    out->choice.images = {"sha256:" + to_hex(image)};
    for (int i = 0; i < static_cast<int>(kNonceBytes); ++i) {
      out->challenge.nonce.push_back(static_cast<std::uint8_t>(i));
    }
    out->challenge.all = true;
    return out;
  }();
  return *v;
}

// to_json(parse(text)) must parse back to a value that serializes the same way.
template <typename T, typename Parse>
void check_round_trip(const T& value, Parse parse) {
  std::string text = to_json(value).dump();
  auto again = parse(text);
  if (!again) __builtin_trap();
  if (to_json(*again).dump() != text) __builtin_trap();
}

void verify(const Evidence& evidence) {
  const Verifier& v = verifier();
  HostState host;
  std::map<std::string, ContainerState> containers;
  AttestationInput in;
  in.challenge = &v.challenge;
  in.evidence = &evidence;
  in.host = &v.keys;
  in.refs = &v.refs;
  in.policies = [&v](const std::string&, const std::string&,
                     const std::string&) -> std::optional<PolicyChoice> { return v.choice; };
  in.now = 1000;
  auto outcome = verify_attestation(host, containers, in);
  // Errors are for unusable caller input; everything wrong with evidence is a verdict.
  if (!outcome) __builtin_trap();
  // The states a verifier persists must serialize (valid UTF-8) and load back.
  std::string host_text = host.to_json().dump();
  if (!HostState::from_json(nlohmann::json::parse(host_text))) __builtin_trap();
  for (const auto& [id, st] : containers) {
    std::string text = st.to_json().dump();
    if (!ContainerState::from_json(nlohmann::json::parse(text))) __builtin_trap();
  }
}

}  // namespace

// The TSS marshalling code logs every malformed structure to stderr; quiet it.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  ::setenv("TSS2_LOG", "all+none", 0);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto c = parse_challenge(text)) check_round_trip(*c, parse_challenge);
  if (auto i = parse_identity(text)) check_round_trip(*i, parse_identity);
  if (auto r = parse_activate_request(text)) check_round_trip(*r, parse_activate_request);
  if (auto r = parse_activate_response(text)) check_round_trip(*r, parse_activate_response);
  if (auto e = parse_evidence(text)) {
    check_round_trip(*e, parse_evidence);
    verify(*e);
  }
  return 0;
}
