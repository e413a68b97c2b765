// Measurement-list throughput in process, in entries per second: parsing the binary form
// from memory, Replayer::add (template-digest re-check plus one extend per bank) for the
// sha1-header and sha256-header forms, parsing ASCII lines, template_digest alone, and a
// whole verify_log() over an in-memory log. Together with `ctrust log verify` on a file
// (scripts/bench) these split the cost of verification into parse, hash and I/O.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "imalog/ascii.h"
#include "imalog/binary.h"
#include "imalog/entry.h"
#include "imalog/replay.h"

namespace {

using ctrust::Bytes;
using ctrust::crypto::Digest;
using ctrust::crypto::HashAlg;
namespace imalog = ctrust::imalog;

// A fixed pool of entries that Replayer::add and friends cycle through (fits in L2, like
// the one record a streaming reader holds, but varied enough to defeat branch history).
constexpr std::size_t kPool = 4096;

// ima-ng entries like those of a running system (~130-byte template data), 1 % violations,
// all in PCR 10; a seeded generator so that every run measures the same bytes.
std::vector<imalog::Entry> make_entries(std::size_t n, HashAlg header_alg) {
  std::mt19937_64 rng(42);
  std::vector<imalog::Entry> out;
  out.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    std::string name = "/usr/lib/x86_64-linux-gnu/libfoo" + std::to_string(rng() % 1000) + "-" +
                       std::to_string(rng() % 1'000'000) + ".so." + std::to_string(rng() % 4);
    ctrust::Result<imalog::Entry> e = ctrust::Error(ctrust::Errc::kInternal, "unset");
    if (i % 100 == 99) {
      e = imalog::make_violation("ima-ng", 10, name, HashAlg::kSha256, header_alg);
    } else {
      imalog::MeasurementSpec spec;
      spec.name = name;
      spec.file_digest = Digest::zero(HashAlg::kSha256);
      for (std::size_t j = 0; j < 32; j += 8) {
        std::uint64_t v = rng();
        for (std::size_t k = 0; k < 8; ++k)
          spec.file_digest.bytes[j + k] = static_cast<std::uint8_t>(v >> (8 * k));
      }
      e = imalog::make_entry(spec, header_alg);
    }
    if (!e) {
      std::fprintf(stderr, "make_entries: %s\n", e.error().message().c_str());
      std::abort();
    }
    out.push_back(std::move(*e));
  }
  return out;
}

Bytes make_binary_log(std::size_t n, HashAlg header_alg) {
  Bytes log;
  for (const imalog::Entry& e : make_entries(n, header_alg)) {
    if (!imalog::append_binary(log, e)) std::abort();
  }
  return log;
}

void set_items(benchmark::State& state, std::size_t per_iteration) {
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) *
                          static_cast<std::int64_t>(per_iteration));
}

// BinaryReader::from_memory + next() over a whole log of N entries.
void BM_BinaryParse(benchmark::State& state, HashAlg header_alg) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const Bytes log = make_binary_log(n, header_alg);
  imalog::Entry e;
  for (auto _ : state) {
    auto reader = imalog::BinaryReader::from_memory(log);
    if (!reader) {
      state.SkipWithError(reader.error().message().c_str());
      break;
    }
    std::size_t count = 0;
    for (;;) {
      auto more = reader->next(e);
      if (!more) {
        state.SkipWithError(more.error().message().c_str());
        break;
      }
      if (!*more) break;
      ++count;
    }
    benchmark::DoNotOptimize(count);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                          static_cast<std::int64_t>(log.size()));
  set_items(state, n);
}
BENCHMARK_CAPTURE(BM_BinaryParse, sha1_header, HashAlg::kSha1)->Arg(100'000);
BENCHMARK_CAPTURE(BM_BinaryParse, sha256_header, HashAlg::kSha256)->Arg(100'000);

// Replayer::add, one entry per iteration: parse_fields, the template-digest re-check in
// the header bank, then template digest (if another bank) and extend for each bank.
void BM_ReplayerAdd(benchmark::State& state, HashAlg header_alg, std::vector<HashAlg> banks) {
  const std::vector<imalog::Entry> entries = make_entries(kPool, header_alg);
  imalog::Replayer replayer(banks);
  std::size_t i = 0;
  for (auto _ : state) {
    auto st = replayer.add(entries[i]);
    if (!st || *st == imalog::EntryStatus::kBadTemplateDigest) {
      state.SkipWithError("Replayer::add failed");
      break;
    }
    i = (i + 1) % kPool;
  }
  set_items(state, 1);
}
BENCHMARK_CAPTURE(BM_ReplayerAdd, sha256_header_bank_sha256, HashAlg::kSha256,
                  std::vector<HashAlg>{HashAlg::kSha256});
BENCHMARK_CAPTURE(BM_ReplayerAdd, sha256_header_banks_sha1_sha256, HashAlg::kSha256,
                  std::vector<HashAlg>{HashAlg::kSha1, HashAlg::kSha256});
BENCHMARK_CAPTURE(BM_ReplayerAdd, sha1_header_bank_sha256, HashAlg::kSha1,
                  std::vector<HashAlg>{HashAlg::kSha256});
BENCHMARK_CAPTURE(BM_ReplayerAdd, sha1_header_banks_sha1_sha256, HashAlg::kSha1,
                  std::vector<HashAlg>{HashAlg::kSha1, HashAlg::kSha256});

// parse_ascii_line on lines as the kernel prints them.
void BM_ParseAsciiLine(benchmark::State& state) {
  std::vector<std::string> lines;
  for (const imalog::Entry& e : make_entries(kPool, HashAlg::kSha1)) {
    std::string line;
    if (!imalog::append_ascii(line, e)) std::abort();
    line.pop_back();  // the newline
    lines.push_back(std::move(line));
  }
  std::size_t i = 0;
  for (auto _ : state) {
    auto e = imalog::parse_ascii_line(lines[i]);
    if (!e) {
      state.SkipWithError(e.error().message().c_str());
      break;
    }
    benchmark::DoNotOptimize(e);
    i = (i + 1) % kPool;
  }
  set_items(state, 1);
}
BENCHMARK(BM_ParseAsciiLine);

// template_digest alone: one hash over ~130 bytes of template data.
void BM_TemplateDigest(benchmark::State& state, HashAlg bank) {
  const std::vector<imalog::Entry> entries = make_entries(kPool, HashAlg::kSha1);
  std::size_t i = 0;
  for (auto _ : state) {
    auto d = imalog::template_digest(entries[i], bank);
    if (!d) {
      state.SkipWithError(d.error().message().c_str());
      break;
    }
    benchmark::DoNotOptimize(d);
    i = (i + 1) % kPool;
  }
  set_items(state, 1);
}
BENCHMARK_CAPTURE(BM_TemplateDigest, sha1, HashAlg::kSha1);
BENCHMARK_CAPTURE(BM_TemplateDigest, sha256, HashAlg::kSha256);

// parse_fields alone, the validation Replayer::add does before hashing.
void BM_ParseFields(benchmark::State& state) {
  const std::vector<imalog::Entry> entries = make_entries(kPool, HashAlg::kSha256);
  std::size_t i = 0;
  for (auto _ : state) {
    auto f = imalog::parse_fields(entries[i]);
    if (!f) {
      state.SkipWithError(f.error().message().c_str());
      break;
    }
    benchmark::DoNotOptimize(f);
    i = (i + 1) % kPool;
  }
  set_items(state, 1);
}
BENCHMARK(BM_ParseFields);

// verify_log over an in-memory sha256-header log of N entries against its own sha256 PCR
// values: what `ctrust log verify --pcrs sha256,FILE` does, without the file I/O.
void BM_VerifyLogMemory(benchmark::State& state, HashAlg header_alg, std::vector<HashAlg> banks) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const Bytes log = make_binary_log(n, header_alg);
  imalog::ExpectedPcrs expected;
  {
    imalog::Replayer replayer(banks);
    for (const imalog::Entry& e : make_entries(n, header_alg)) {
      if (!replayer.add(e)) std::abort();
    }
    for (const imalog::PcrBank& b : replayer.banks()) {
      for (std::uint32_t i = 0; i < imalog::kNumPcrs; ++i) {
        if ((b.extended & (1u << i)) != 0) expected[b.alg][i] = b.values[i];
      }
    }
  }
  auto open = [&]() -> ctrust::Result<std::unique_ptr<imalog::EntrySource>> {
    CTRUST_ASSIGN_OR_RETURN(imalog::BinaryReader r, imalog::BinaryReader::from_memory(log));
    return std::unique_ptr<imalog::EntrySource>(
        std::make_unique<imalog::BinaryReader>(std::move(r)));
  };
  for (auto _ : state) {
    auto report = imalog::verify_log(open, expected);
    if (!report || !report->ok()) {
      state.SkipWithError("verify_log did not verify");
      break;
    }
    benchmark::DoNotOptimize(report);
  }
  set_items(state, n);
}
BENCHMARK_CAPTURE(BM_VerifyLogMemory, sha256_header_bank_sha256, HashAlg::kSha256,
                  std::vector<HashAlg>{HashAlg::kSha256})
    ->Arg(100'000)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_VerifyLogMemory, sha1_header_banks_sha1_sha256, HashAlg::kSha1,
                  std::vector<HashAlg>{HashAlg::kSha1, HashAlg::kSha256})
    ->Arg(100'000)
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
