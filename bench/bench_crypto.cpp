// Digest throughput in process: ctrust's one-shot digest_bytes() at the sizes that matter
// (16-64 bytes: PCR extends; ~100 bytes to 1 KiB: log records; 8 KiB: OpenSSL's reference
// block; 1 MiB: files), the streaming Hasher with the 256 KiB chunks digest_fd() uses, and
// the fs-verity Merkle tree. Each ctrust figure has a bare-OpenSSL twin (EVP_Digest with a
// pre-fetched EVP_MD) so that the wrapper's overhead is a ratio measured in the same run.
//
// Run with --benchmark_enable_random_interleaving=true --benchmark_repetitions=N to get
// medians that are robust on a shared machine (scripts/bench does).
#include <benchmark/benchmark.h>
#include <openssl/evp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <vector>

#include "crypto/digest.h"
#include "crypto/fsverity.h"
#include "util/unique_handle.h"

namespace {

using ctrust::Bytes;
using ctrust::ByteView;
using ctrust::crypto::Digest;
using ctrust::crypto::HashAlg;

constexpr std::size_t kMiB = 1 << 20;

// Deterministic, incompressible-looking bytes (the hash does not care, but be honest).
Bytes make_data(std::size_t n) {
  Bytes b(n);
  std::uint64_t x = 0x9e3779b97f4a7c15ULL;
  for (auto& c : b) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c = static_cast<std::uint8_t>(x);
  }
  return b;
}

template <typename T>
T check(ctrust::Result<T> r, benchmark::State& state) {
  if (!r) {
    state.SkipWithError(r.error().message().c_str());
    return T{};
  }
  return std::move(*r);
}

void set_bytes(benchmark::State& state, std::size_t per_iteration) {
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                          static_cast<std::int64_t>(per_iteration));
}

// ctrust::crypto::digest_bytes (per-thread context, EVP_DigestInit_ex2 + Update + Final).
void BM_DigestBytes(benchmark::State& state, HashAlg alg) {
  const auto size = static_cast<std::size_t>(state.range(0));
  const Bytes data = make_data(size);
  for (auto _ : state) {
    Digest d = check(ctrust::crypto::digest_bytes(alg, data), state);
    benchmark::DoNotOptimize(d);
  }
  set_bytes(state, size);
}

// The reference: OpenSSL's own one-shot with the method fetched once, as `openssl speed
// -evp` does its loop (which reuses one context; EVP_Digest makes its own each call, so
// this bound is, if anything, slightly pessimistic).
void BM_OpenSslEvpDigest(benchmark::State& state, HashAlg alg) {
  const auto size = static_cast<std::size_t>(state.range(0));
  const Bytes data = make_data(size);
  const EVP_MD* md = ctrust::crypto::evp_md(alg);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  unsigned char out[EVP_MAX_MD_SIZE];
  for (auto _ : state) {
    if (EVP_DigestInit_ex2(ctx, md, nullptr) != 1 ||
        EVP_DigestUpdate(ctx, data.data(), data.size()) != 1 ||
        EVP_DigestFinal_ex(ctx, out, nullptr) != 1) {
      state.SkipWithError("EVP digest failed");
      break;
    }
    benchmark::DoNotOptimize(out);
  }
  EVP_MD_CTX_free(ctx);
  set_bytes(state, size);
}

#define CTRUST_DIGEST_SIZES ->Arg(16)->Arg(64)->Arg(1024)->Arg(8192)->Arg(1 << 20)

BENCHMARK_CAPTURE(BM_DigestBytes, sha1, HashAlg::kSha1) CTRUST_DIGEST_SIZES;
BENCHMARK_CAPTURE(BM_DigestBytes, sha256, HashAlg::kSha256) CTRUST_DIGEST_SIZES;
BENCHMARK_CAPTURE(BM_DigestBytes, sha384, HashAlg::kSha384) CTRUST_DIGEST_SIZES;
BENCHMARK_CAPTURE(BM_DigestBytes, sha512, HashAlg::kSha512) CTRUST_DIGEST_SIZES;
BENCHMARK_CAPTURE(BM_OpenSslEvpDigest, sha256, HashAlg::kSha256) CTRUST_DIGEST_SIZES;

// Hasher::update over a 16 MiB message in the 256 KiB chunks that digest_fd() reads.
void BM_HasherStream256K(benchmark::State& state, HashAlg alg) {
  constexpr std::size_t kChunk = 256 * 1024;
  constexpr std::size_t kTotal = 16 * kMiB;
  const Bytes data = make_data(kChunk);
  auto hasher = ctrust::crypto::Hasher::create(alg);
  if (!hasher) {
    state.SkipWithError(hasher.error().message().c_str());
    return;
  }
  for (auto _ : state) {
    for (std::size_t done = 0; done < kTotal; done += kChunk) {
      if (!hasher->update(data)) state.SkipWithError("update failed");
    }
    Digest d = check(hasher->finish(), state);
    benchmark::DoNotOptimize(d);
  }
  set_bytes(state, kTotal);
}
BENCHMARK_CAPTURE(BM_HasherStream256K, sha1, HashAlg::kSha1);
BENCHMARK_CAPTURE(BM_HasherStream256K, sha256, HashAlg::kSha256);
BENCHMARK_CAPTURE(BM_HasherStream256K, sha384, HashAlg::kSha384);
BENCHMARK_CAPTURE(BM_HasherStream256K, sha512, HashAlg::kSha512);

// digest_fd() on a 64 MiB memfd: the whole-file path (pread copy + hash), without disk.
void BM_DigestFd(benchmark::State& state, HashAlg alg) {
  constexpr std::size_t kTotal = 64 * kMiB;
  ctrust::UniqueFd fd(::memfd_create("ctrust-bench", MFD_CLOEXEC));
  if (!fd) {
    state.SkipWithError("memfd_create failed");
    return;
  }
  const Bytes chunk = make_data(kMiB);
  for (std::size_t done = 0; done < kTotal; done += chunk.size()) {
    if (::write(fd.get(), chunk.data(), chunk.size()) != static_cast<ssize_t>(chunk.size())) {
      state.SkipWithError("writing the memfd failed");
      return;
    }
  }
  for (auto _ : state) {
    Digest d = check(ctrust::crypto::digest_fd(alg, fd.get()), state);
    benchmark::DoNotOptimize(d);
  }
  set_bytes(state, kTotal);
}
BENCHMARK_CAPTURE(BM_DigestFd, sha256, HashAlg::kSha256)->Unit(benchmark::kMillisecond);

// FsVerityHasher over 1 MiB in one update (256 data blocks + one tree block + descriptor).
void BM_FsVerity1M(benchmark::State& state, HashAlg alg) {
  const Bytes data = make_data(kMiB);
  ctrust::crypto::FsVerityParams params;
  params.alg = alg;
  for (auto _ : state) {
    auto hasher = ctrust::crypto::FsVerityHasher::create(params);
    if (!hasher) {
      state.SkipWithError(hasher.error().message().c_str());
      break;
    }
    if (!hasher->update(data)) state.SkipWithError("update failed");
    Digest d = check(hasher->finish(), state);
    benchmark::DoNotOptimize(d);
  }
  set_bytes(state, kMiB);
}
BENCHMARK_CAPTURE(BM_FsVerity1M, sha256, HashAlg::kSha256);
BENCHMARK_CAPTURE(BM_FsVerity1M, sha512, HashAlg::kSha512);

}  // namespace

BENCHMARK_MAIN();
