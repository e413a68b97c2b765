#include "crypto/digest.h"

#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "util/file.h"

namespace ctrust::crypto {
namespace {

const char* openssl_name(HashAlg alg) {
  switch (alg) {
    case HashAlg::kSha1:
      return "SHA1";
    case HashAlg::kSha256:
      return "SHA256";
    case HashAlg::kSha384:
      return "SHA384";
    case HashAlg::kSha512:
      return "SHA512";
  }
  return "";
}

EVP_MD_CTX* thread_ctx() {
  thread_local UniquePtr<EVP_MD_CTX, EVP_MD_CTX_free> ctx(EVP_MD_CTX_new());
  return ctx.get();
}

}  // namespace

std::string_view hash_name(HashAlg alg) {
  switch (alg) {
    case HashAlg::kSha1:
      return "sha1";
    case HashAlg::kSha256:
      return "sha256";
    case HashAlg::kSha384:
      return "sha384";
    case HashAlg::kSha512:
      return "sha512";
  }
  return "";
}

std::optional<HashAlg> parse_hash_alg(std::string_view name) {
  // Called once per log entry: compare case-insensitively without allocating.
  auto same = [](std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
             return std::tolower(static_cast<unsigned char>(x)) == y;
           });
  };
  for (HashAlg alg : kAllHashAlgs) {
    if (same(name, hash_name(alg))) return alg;
  }
  return std::nullopt;
}

std::optional<HashAlg> hash_alg_for_size(std::size_t size) {
  for (HashAlg alg : kAllHashAlgs) {
    if (digest_size(alg) == size) return alg;
  }
  return std::nullopt;
}

bool Digest::is_zero() const {
  ByteView v = view();
  return std::all_of(v.begin(), v.end(), [](std::uint8_t b) { return b == 0; });
}

bool Digest::operator==(const Digest& other) const {
  return alg == other.alg && std::memcmp(bytes.data(), other.bytes.data(), size()) == 0;
}

Result<Digest> Digest::from_bytes(HashAlg alg, ByteView bytes) {
  if (bytes.size() != digest_size(alg)) {
    return Error(Errc::kFormat, std::string(hash_name(alg)) + " digest must be " +
                                    std::to_string(digest_size(alg)) + " bytes, got " +
                                    std::to_string(bytes.size()));
  }
  Digest d{alg, {}};
  std::copy(bytes.begin(), bytes.end(), d.bytes.begin());
  return d;
}

Result<Digest> Digest::from_hex(HashAlg alg, std::string_view hex) {
  auto raw = ctrust::from_hex(hex);
  if (!raw) return std::move(raw).error().with_context(std::string(hash_name(alg)) + " digest");
  return from_bytes(alg, *raw);
}

const EVP_MD* evp_md(HashAlg alg) {
  // Explicit fetches once: implicit fetching on every EVP_DigestInit costs a lock and a
  // lookup per call, which dominates when hashing 100-byte log records.
  static const std::array<EVP_MD*, 4> kMds = [] {
    std::array<EVP_MD*, 4> mds{};
    for (HashAlg a : kAllHashAlgs) {
      mds[static_cast<std::size_t>(a)] = EVP_MD_fetch(nullptr, openssl_name(a), nullptr);
    }
    return mds;
  }();
  return kMds[static_cast<std::size_t>(alg)];
}

Result<Hasher> Hasher::create(HashAlg alg) {
  const EVP_MD* md = evp_md(alg);
  if (md == nullptr)
    return openssl_error(std::string("digest ") + openssl_name(alg) + " unavailable");
  Ctx ctx(EVP_MD_CTX_new());
  if (!ctx) return openssl_error("EVP_MD_CTX_new");
  if (EVP_DigestInit_ex2(ctx.get(), md, nullptr) != 1) return openssl_error("EVP_DigestInit_ex2");
  return Hasher(alg, std::move(ctx));
}

Result<void> Hasher::update(ByteView data) {
  if (EVP_DigestUpdate(ctx_.get(), data.data(), data.size()) != 1)
    return openssl_error("EVP_DigestUpdate");
  return ok_result();
}

Result<Digest> Hasher::finish() {
  Digest d{alg_, {}};
  if (EVP_DigestFinal_ex(ctx_.get(), d.bytes.data(), nullptr) != 1)
    return openssl_error("EVP_DigestFinal_ex");
  if (EVP_DigestInit_ex2(ctx_.get(), evp_md(alg_), nullptr) != 1)
    return openssl_error("EVP_DigestInit_ex2");
  return d;
}

Result<void> Hasher::copy_state_from(const Hasher& other) {
  if (other.alg_ != alg_) return Error(Errc::kInternal, "copy_state_from: algorithms differ");
  if (EVP_MD_CTX_copy_ex(ctx_.get(), other.ctx_.get()) != 1)
    return openssl_error("EVP_MD_CTX_copy_ex");
  return ok_result();
}

Result<Digest> digest_concat(HashAlg alg, ByteView a, ByteView b) {
  EVP_MD_CTX* ctx = thread_ctx();
  Digest d{alg, {}};
  if (ctx == nullptr || EVP_DigestInit_ex2(ctx, evp_md(alg), nullptr) != 1 ||
      EVP_DigestUpdate(ctx, a.data(), a.size()) != 1 ||
      (!b.empty() && EVP_DigestUpdate(ctx, b.data(), b.size()) != 1) ||
      EVP_DigestFinal_ex(ctx, d.bytes.data(), nullptr) != 1) {
    return openssl_error(std::string("computing ") + openssl_name(alg));
  }
  return d;
}

Result<Digest> digest_bytes(HashAlg alg, ByteView data) { return digest_concat(alg, data, {}); }

Result<Digest> digest_fd(HashAlg alg, int fd, const ProgressFn& progress) {
  CTRUST_ASSIGN_OR_RETURN(Hasher hasher, Hasher::create(alg));
  CTRUST_TRY(for_each_chunk(
      fd, [&](ByteView chunk) { return hasher.update(chunk); }, progress));
  return hasher.finish();
}

Result<Digest> digest_file(HashAlg alg, const std::string& path, const ProgressFn& progress) {
  CTRUST_ASSIGN_OR_RETURN(UniqueFd fd, open_read(path));
  auto d = digest_fd(alg, fd.get(), progress);
  if (!d) return std::move(d).error().with_context(path);
  return d;
}

}  // namespace ctrust::crypto
