// TPM and vTPM figures (issue 4), against real swtpm processes:
//   - in-process PCR extend latency (one ESAPI connection, every active bank / sha256 only);
//   - quote latency (ECC P-256 AK, one PCR) and software quote verifications per core;
//   - swtpm start until the first answered command;
//   - vTPM attach from the warm pool (goal: at most 2 ms) and a cold vTPM (manufacture:
//     swtpm_setup with an EK certificate from the local CA, swtpm start, AK creation).
// swtpm is a separate process, so the TPM figures include a UNIX-socket round trip each.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "tpm/swtpm.h"
#include "tpm/tpm.h"
#include "tpm/vtpm.h"

namespace {

using namespace ctrust;

std::string make_temp_dir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "ctrust-bench-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
  return tmpl;
}

struct SwtpmFixture {
  std::string dir = make_temp_dir();
  std::optional<tpm::Swtpm> swtpm;
  std::optional<tpm::Tpm> tpm;
  SwtpmFixture() {
    ::setenv("TSS2_LOG", "all+none", 0);
    tpm::SwtpmOptions options;
    options.state_dir = dir;
    options.socket = dir + "/tpm.sock";
    auto s = tpm::Swtpm::start(options);
    if (!s) return;
    swtpm = std::move(*s);
    auto t = tpm::Tpm::open(swtpm->tcti());
    if (t) tpm = std::move(*t);
  }
  ~SwtpmFixture() {
    tpm.reset();
    swtpm.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

SwtpmFixture& fixture() {
  static SwtpmFixture f;
  return f;
}

void BM_PcrExtendAllBanks(benchmark::State& state) {
  auto& f = fixture();
  if (!f.tpm) return state.SkipWithError("swtpm not available");
  auto banks = f.tpm->active_banks();
  std::vector<crypto::Digest> digests;
  for (auto alg : *banks) digests.push_back(crypto::Digest::zero(alg));
  for (auto _ : state) {
    if (!f.tpm->pcr_extend(16, digests)) return state.SkipWithError("extend failed");
  }
  state.SetLabel(std::to_string(digests.size()) + " banks");
}
BENCHMARK(BM_PcrExtendAllBanks)->Unit(benchmark::kMicrosecond);

void BM_PcrExtendSha256(benchmark::State& state) {
  auto& f = fixture();
  if (!f.tpm) return state.SkipWithError("swtpm not available");
  std::vector<crypto::Digest> digests{crypto::Digest::zero(crypto::HashAlg::kSha256)};
  for (auto _ : state) {
    if (!f.tpm->pcr_extend(16, digests)) return state.SkipWithError("extend failed");
  }
}
BENCHMARK(BM_PcrExtendSha256)->Unit(benchmark::kMicrosecond);

void BM_Quote(benchmark::State& state) {
  auto& f = fixture();
  if (!f.tpm) return state.SkipWithError("swtpm not available");
  auto ak = f.tpm->attestation_key(tpm::KeyAlg::kEccP256);
  auto sel = tpm::parse_pcr_list("sha256:10");
  if (!ak || !sel) return state.SkipWithError("no AK");
  Bytes nonce(32, 7);
  for (auto _ : state) {
    auto q = f.tpm->quote(*ak, *sel, nonce);
    if (!q) return state.SkipWithError(q.error().message().c_str());
    benchmark::DoNotOptimize(q->message.data());
  }
}
BENCHMARK(BM_Quote)->Unit(benchmark::kMillisecond);

void BM_QuoteVerify(benchmark::State& state) {
  auto& f = fixture();
  if (!f.tpm) return state.SkipWithError("swtpm not available");
  auto alg = state.range(0) == 0 ? tpm::KeyAlg::kEccP256 : tpm::KeyAlg::kRsa2048;
  auto ak = f.tpm->create_transient_ak(alg);
  auto sel = tpm::parse_pcr_list("sha256:10");
  Bytes nonce(32, 7);
  auto q = f.tpm->quote(*ak, *sel, nonce);
  if (!q) return state.SkipWithError("quote failed");
  auto key = ak->public_area().public_key();
  for (auto _ : state) {
    auto v = tpm::verify_quote(*key, q->message, q->signature, nonce, &q->pcrs);
    if (!v || !v->ok()) return state.SkipWithError("verification failed");
  }
  state.SetItemsProcessed(state.iterations());
  state.SetLabel(alg == tpm::KeyAlg::kEccP256 ? "ecdsa-p256" : "rsa2048");
}
BENCHMARK(BM_QuoteVerify)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);

void BM_SwtpmColdStart(benchmark::State& state) {
  std::string dir = make_temp_dir();
  tpm::SwtpmOptions options;
  options.state_dir = dir;
  options.socket = dir + "/tpm.sock";
  for (auto _ : state) {
    auto s = tpm::Swtpm::start(options);
    if (!s) return state.SkipWithError(s.error().message().c_str());
    state.PauseTiming();
    s->stop();
    state.ResumeTiming();
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}
BENCHMARK(BM_SwtpmColdStart)->Iterations(20)->Unit(benchmark::kMillisecond);

constexpr int kPoolRounds = 8;

void BM_VtpmAttachFromPool(benchmark::State& state) {
  ::setenv("TSS2_LOG", "all+none", 0);
  std::string dir = make_temp_dir();
  tpm::VtpmConfig config;
  config.root = dir + "/vtpm";
  config.pool_size = kPoolRounds;
  auto manager = tpm::VtpmManager::open(config);
  if (!manager || !(*manager)->fill_pool()) return state.SkipWithError("cannot fill the pool");
  int n = 0;
  for (auto _ : state) {
    auto info = (*manager)->create("bench-" + std::to_string(n++));
    if (!info) return state.SkipWithError(info.error().message().c_str());
    // Manufacture refills the pool on its own thread; pause so it does not run into the
    // next attach's time (an agent's attaches are far apart compared to this loop).
    state.PauseTiming();
    if (!(*manager)->fill_pool()) return state.SkipWithError("refill failed");
    state.ResumeTiming();
  }
  for (int i = 0; i < n; ++i) (void)(*manager)->destroy("bench-" + std::to_string(i));
  (*manager)->drain_pool();
  manager->reset();
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}
BENCHMARK(BM_VtpmAttachFromPool)->Iterations(kPoolRounds)->Unit(benchmark::kMicrosecond);

void BM_VtpmCold(benchmark::State& state) {
  ::setenv("TSS2_LOG", "all+none", 0);
  std::string dir = make_temp_dir();
  tpm::VtpmConfig config;
  config.root = dir + "/vtpm";
  config.pool_size = 0;
  auto manager = tpm::VtpmManager::open(config);
  if (!manager) return state.SkipWithError("cannot open the manager");
  int n = 0;
  for (auto _ : state) {
    auto info = (*manager)->create("cold-" + std::to_string(n++));
    if (!info) return state.SkipWithError(info.error().message().c_str());
  }
  for (int i = 0; i < n; ++i) (void)(*manager)->destroy("cold-" + std::to_string(i));
  manager->reset();
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}
BENCHMARK(BM_VtpmCold)->Iterations(4)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
