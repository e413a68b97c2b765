// The verifier's cost per attestation (attest/verify.h), against a simulated host (SimHost):
//   - BM_VerifyContainerLog: one container whose log holds N ima-ng file entries (distinct
//     paths; 100,000 distinct contents, each run at 10 paths) judged by a policy of 100,000
//     allowed digests, all of the log's among them; verify_attestation of the whole
//     evidence from a fresh state. Items are log entries verified (BENCHMARKS.md: "log replay
//     and policy check", entries per second per core).
//   - BM_VerifyIncremental: the fleet's steady state: 10 containers, 10 new entries each per
//     round; one verify_attestation (11 ECDSA P-256 quote verifications) per iteration.
//   - BM_QuoteVerify: tpm::verify_quote on a SoftQuoter quote of the host's PCRs 0-9 and 13
//     (compare with `openssl speed ecdsap256`, verify/s).
// Making the evidence (SimHost hashing, extending and signing) is outside the timed region.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "attest/evidence.h"
#include "attest/soft_quoter.h"
#include "attest/verify.h"
#include "crypto/digest.h"
#include "policy/compiled.h"
#include "policy/policy.h"
#include "tpm/attest.h"
#include "tpm/pcr.h"

namespace {

using namespace ctrust;
using namespace ctrust::attest;

constexpr std::size_t kPolicyDigests = 100'000;

template <typename T>
T must(Result<T> r, const char* what) {
  if (!r) {
    std::fprintf(stderr, "bench_attest: %s: %s\n", what, r.error().message().c_str());
    std::abort();
  }
  return std::move(r).value();
}
void must(Result<void> r, const char* what) {
  if (!r) {
    std::fprintf(stderr, "bench_attest: %s: %s\n", what, r.error().message().c_str());
    std::abort();
  }
}

Bytes sha256_of(std::string_view s) {
  crypto::Digest d = must(crypto::digest_bytes(crypto::HashAlg::kSha256, as_bytes(s)), "sha256");
  return Bytes(d.view().begin(), d.view().end());
}

// The content of the file run at position i: kPolicyDigests distinct files, cycled.
std::string content(std::uint64_t i) {
  return "file content " + std::to_string(i % kPolicyDigests);
}

// A policy allowing the digests of every content(i) (at any path), and the image.
struct Verifier {
  Bytes image = sha256_of("image");
  Bytes policy_digest = sha256_of("policy document");
  ReferenceValues refs;
  PolicyChoice choice;

  Verifier() {
    refs.agent_binaries = {"sha256:" + to_hex(sha256_of("ctrustd binary"))};
    refs.agent_configs = {"sha256:" + to_hex(sha256_of("ctrustd config"))};
    policy::Policy p;
    p.name = "bench";
    p.issuer = "bench";
    p.not_before = 0;
    p.not_after = 4102444800;
    p.allow.reserve(kPolicyDigests);
    for (std::size_t i = 0; i < kPolicyDigests; ++i) {
      p.allow.push_back(
          {must(crypto::digest_bytes(crypto::HashAlg::kSha256, as_bytes(content(i))), "digest"),
           {}});
    }
    p.images.push_back(
        must(crypto::Digest::from_bytes(crypto::HashAlg::kSha256, image), "image digest"));
    must(policy::normalize(p), "normalize");
    choice.name = "bench@1";
    choice.digest = "sha256:" + to_hex(policy_digest);
    choice.compiled = std::make_shared<policy::CompiledPolicy>(
        must(policy::CompiledPolicy::compile(p), "compile"));
    choice.images = {"sha256:" + to_hex(image)};
  }

  AttestationInput input(const Challenge& ch, const Evidence& ev, const HostKeys& keys) const {
    AttestationInput in;
    in.challenge = &ch;
    in.evidence = &ev;
    in.host = &keys;
    in.refs = &refs;
    in.policies = [this](const std::string&, const std::string&,
                         const std::string&) -> std::optional<PolicyChoice> { return choice; };
    in.now = 1000;
    return in;
  }
};

const Verifier& verifier() {
  static const Verifier v;
  return v;
}

// ---------------------------------------------------------------------------------------
// One container with a log of N file entries: evidence for a verifier that holds nothing.

struct BigLog {
  std::optional<SimHost> host;
  std::optional<HostKeys> keys;
  Challenge challenge;
  Evidence evidence;

  explicit BigLog(std::uint64_t n) {
    const Verifier& v = verifier();
    host.emplace(must(SimHost::create(), "SimHost"));
    keys.emplace(HostKeys{must(host->ak().public_key(), "host AK"), kDefaultHostPcr});
    must(host->add_container("c1", v.image, v.policy_digest, "bench"), "add_container");
    for (std::uint64_t i = 0; i < n; ++i) {
      must(host->exec(
               "c1",
               "/usr/lib/bench/d" + std::to_string(i / 1000) + "/f" + std::to_string(i) + ".so",
               content(i)),
           "exec");
    }
    challenge = must(make_challenge(HostState{}, {}), "make_challenge");
    evidence = must(host->answer(challenge), "answer");
  }
};

const BigLog& big_log(std::uint64_t n) {
  static std::map<std::uint64_t, std::unique_ptr<BigLog>> cache;
  auto& f = cache[n];
  if (!f) f = std::make_unique<BigLog>(n);
  return *f;
}

void BM_VerifyContainerLog(benchmark::State& state) {
  const auto n = static_cast<std::uint64_t>(state.range(0));
  const BigLog& f = big_log(n);
  const Verifier& v = verifier();
  AttestationInput in = v.input(f.challenge, f.evidence, *f.keys);
  std::uint64_t entries = 0;
  for (auto _ : state) {
    HostState host;
    std::map<std::string, ContainerState> containers;
    auto out = verify_attestation(host, containers, in);
    if (!out) return state.SkipWithError(out.error().message().c_str());
    const ContainerState& c = containers["c1"];
    if (out->host_status != Status::kAffirming || c.status != Status::kAffirming ||
        c.allowed != n) {
      return state.SkipWithError("the log did not verify as affirming");
    }
    entries += out->entries_verified;
    state.PauseTiming();  // freeing the states is not the verifier's work per entry
    containers.clear();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(entries));
  state.counters["entries"] = static_cast<double>(n);
  state.counters["policy_digests"] = static_cast<double>(kPolicyDigests);
}
BENCHMARK(BM_VerifyContainerLog)->Arg(1'000'000)->Unit(benchmark::kMillisecond);

// ---------------------------------------------------------------------------------------
// The steady state: 10 containers, 10 new entries each per attestation.

void BM_VerifyIncremental(benchmark::State& state) {
  constexpr int kContainers = 10;
  constexpr int kNewEntries = 10;
  const Verifier& v = verifier();
  SimHost sim = must(SimHost::create(), "SimHost");
  HostKeys keys{must(sim.ak().public_key(), "host AK"), kDefaultHostPcr};
  for (int c = 0; c < kContainers; ++c) {
    must(sim.add_container("c" + std::to_string(c), v.image, v.policy_digest, "bench"),
         "add_container");
  }
  HostState host;
  std::map<std::string, ContainerState> containers;
  std::uint64_t next = 0;
  std::uint64_t rounds = 0;
  auto round = [&](bool timed) -> bool {
    for (int c = 0; c < kContainers; ++c) {
      for (int k = 0; k < kNewEntries; ++k, ++next) {
        must(sim.exec("c" + std::to_string(c), "/usr/bin/t" + std::to_string(next), content(next)),
             "exec");
      }
    }
    Challenge ch = must(make_challenge(host, containers), "make_challenge");
    Evidence ev = must(sim.answer(ch), "answer");
    AttestationInput in = v.input(ch, ev, keys);
    if (timed) state.ResumeTiming();
    auto out = verify_attestation(host, containers, in);
    if (timed) state.PauseTiming();
    if (!out || out->host_status != Status::kAffirming) return false;
    for (const auto& c : out->containers) {
      if (c.status != Status::kAffirming) return false;
    }
    return true;
  };
  // The first round verifies the whole logs; the steady state starts after it.
  if (!round(false)) return state.SkipWithError("the first round did not verify");
  for (auto _ : state) {
    state.PauseTiming();
    if (!round(true)) {
      state.ResumeTiming();
      return state.SkipWithError("a round did not verify as affirming");
    }
    ++rounds;
    state.ResumeTiming();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(rounds));
  state.counters["entries_per_round"] = kContainers * kNewEntries;
  state.counters["quotes_per_round"] = kContainers + 1;
}
BENCHMARK(BM_VerifyIncremental)->Unit(benchmark::kMicrosecond);

// ---------------------------------------------------------------------------------------
// One quote verification: ECDSA P-256 over the TPMS_ATTEST, parse, nonce and PCR digest.

void BM_QuoteVerify(benchmark::State& state) {
  SoftQuoter ak = must(SoftQuoter::create(), "SoftQuoter");
  crypto::PublicKey key = must(ak.public_key(), "AK");
  std::vector<std::pair<unsigned, Bytes>> pcrs;
  tpm::PcrValues values;
  tpm::PcrBank bank;
  for (unsigned i : {0u, 1u, 2u, 3u, 4u, 5u, 6u, 7u, 8u, 9u, 13u}) {
    Bytes value = sha256_of("pcr " + std::to_string(i));
    pcrs.emplace_back(i, value);
    bank.pcrs.push_back(i);
    values.values.push_back(
        must(crypto::Digest::from_bytes(crypto::HashAlg::kSha256, value), "pcr"));
  }
  values.selection.push_back(bank);
  Bytes nonce = sha256_of("nonce");
  QuoteEvidence q = must(ak.quote(pcrs, nonce), "quote");
  for (auto _ : state) {
    auto verdict = tpm::verify_quote(key, q.message, q.signature, ByteView(nonce), &values);
    if (!verdict || !verdict->ok()) return state.SkipWithError("the quote did not verify");
    benchmark::DoNotOptimize(verdict);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_QuoteVerify)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
