// The compiled policy's lookup: the exec decision's hot path. Goal (issue 3): at most
// 100 ns per lookup with 1,000,000 allowed digests, at most 64 bytes per entry.
//
// Queries are random digests in random order over the whole table, so the figures include
// the cache misses a real agent sees; the table is far bigger than the caches.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <map>
#include <memory>
#include <random>

#include "policy/compiled.h"

namespace {

using ctrust::crypto::Digest;
using ctrust::crypto::HashAlg;
using ctrust::policy::CompiledPolicy;
using ctrust::policy::Policy;

Digest random_digest(std::mt19937_64& rng) {
  Digest d = Digest::zero(HashAlg::kSha256);
  for (std::size_t i = 0; i < 32; i += 8) {
    std::uint64_t v = rng();
    std::copy_n(reinterpret_cast<const std::uint8_t*>(&v), 8, d.bytes.begin() + i);
  }
  return d;
}

struct Fixture {
  std::vector<Digest> listed;
  std::vector<Digest> others;
  std::vector<std::string> paths;  // paths[i]: where listed[i] is allowed
  std::unique_ptr<CompiledPolicy> compiled;

  Fixture(std::size_t n, bool with_paths) {
    std::mt19937_64 rng(42);
    Policy p;
    p.name = "bench";
    p.issuer = "bench";
    p.not_after = 1;
    p.allow.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      Digest d = random_digest(rng);
      listed.push_back(d);
      ctrust::policy::Allow a{d, {}};
      paths.push_back("/usr/bin/tool-" + std::to_string(i));
      if (with_paths) a.paths.push_back(paths.back());
      p.allow.push_back(std::move(a));
    }
    for (std::size_t i = 0; i < n; ++i) others.push_back(random_digest(rng));
    // Shuffle the queries (keeping each digest with its path) so that consecutive lookups
    // land anywhere in the table.
    std::vector<std::size_t> order(n);
    for (std::size_t i = 0; i < n; ++i) order[i] = i;
    std::shuffle(order.begin(), order.end(), rng);
    std::vector<Digest> l2;
    std::vector<std::string> p2;
    for (std::size_t k : order) {
      l2.push_back(listed[k]);
      p2.push_back(paths[k]);
    }
    listed = std::move(l2);
    paths = std::move(p2);
    auto c = CompiledPolicy::compile(p);
    if (!c) std::abort();
    compiled = std::make_unique<CompiledPolicy>(std::move(*c));
  }
};

const Fixture& fixture(std::size_t n, bool with_paths) {
  static std::map<std::pair<std::size_t, bool>, std::unique_ptr<Fixture>> cache;
  auto& f = cache[{n, with_paths}];
  if (!f) f = std::make_unique<Fixture>(n, with_paths);
  return *f;
}

void report(benchmark::State& state, const Fixture& f) {
  state.SetItemsProcessed(state.iterations());
  state.counters["entries"] = static_cast<double>(f.compiled->size());
  state.counters["table_B_per_entry"] =
      static_cast<double>(f.compiled->table_bytes()) / static_cast<double>(f.compiled->size());
  state.counters["paths_B_per_entry"] =
      static_cast<double>(f.compiled->path_bytes()) / static_cast<double>(f.compiled->size());
}

void BM_ContainsListed(benchmark::State& state) {
  const Fixture& f = fixture(static_cast<std::size_t>(state.range(0)), false);
  std::size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(f.compiled->contains(f.listed[i]));
    if (++i == f.listed.size()) i = 0;
  }
  report(state, f);
}
BENCHMARK(BM_ContainsListed)->Arg(1000)->Arg(1000000);

void BM_ContainsUnlisted(benchmark::State& state) {
  const Fixture& f = fixture(static_cast<std::size_t>(state.range(0)), false);
  std::size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(f.compiled->contains(f.others[i]));
    if (++i == f.others.size()) i = 0;
  }
  report(state, f);
}
BENCHMARK(BM_ContainsUnlisted)->Arg(1000)->Arg(1000000);

// The full decision for a listed digest at the path it is listed for: the slot, then its
// path patterns (a second memory access).
void BM_CheckWithPath(benchmark::State& state) {
  const Fixture& f = fixture(static_cast<std::size_t>(state.range(0)), true);
  std::size_t i = 0;
  for (auto _ : state) {
    if (f.compiled->check(f.listed[i], f.paths[i]) != ctrust::policy::Verdict::kAllowed) {
      state.SkipWithError("a listed digest at its path was not allowed");
      break;
    }
    if (++i == f.listed.size()) i = 0;
  }
  report(state, f);
}
BENCHMARK(BM_CheckWithPath)->Arg(1000000);

}  // namespace

BENCHMARK_MAIN();
