// The compiled, read-only form of a policy that the exec decision consults.
//
// Per digest algorithm, the allowed digests live in one flat array of slots (digest bytes
// followed by a 32-bit path-rule index), 1/0.6 times the number of entries. A
// digest's home slot is its top 64 bits scaled to the table size; entries are placed in
// digest order, each in its home slot or the first free one after it ("ordered linear
// probing"), so a lookup reads the home slot and at most a few neighbours in the same cache
// lines, and stops at the first empty slot or larger digest; the common case (home slot or
// the next) is decided without a data-dependent branch. Digests are cryptographic
// hashes chosen by the policy's signer, not by the container, so homes are uniform: O(1)
// with one memory access, no pointers, no allocation. Memory for sha256: 60 bytes per
// entry; path patterns are kept apart in one arena (their bytes plus one per entry).
//
// Thread safety: immutable after compile(); lookups may run concurrently.
#pragma once

#include <regex.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "policy/policy.h"

namespace ctrust::policy {

enum class Verdict : std::uint8_t {
  kAllowed,        // the digest is listed and the path matches (or any path is allowed)
  kExcluded,       // the digest is not listed but the path matches an exclude rule
  kUnknownDigest,  // neither
  kWrongPath,      // the digest is listed only for other paths
};
std::string_view verdict_name(Verdict v);

class CompiledPolicy {
 public:
  static Result<CompiledPolicy> compile(const Policy& policy);

  CompiledPolicy(CompiledPolicy&&) noexcept;
  CompiledPolicy& operator=(CompiledPolicy&&) noexcept;
  ~CompiledPolicy();

  // Membership by digest only: the hot path.
  bool contains(const crypto::Digest& digest) const { return find(digest) != nullptr; }
  // The full judgement of a file `digest` seen at `path` (raw bytes).
  Verdict check(const crypto::Digest& digest, std::string_view path) const;
  // The path patterns a listed digest is limited to (empty: any path, or not listed).
  std::vector<std::string> paths_for(const crypto::Digest& digest) const;
  bool excluded(std::string_view path) const;

  Mode mode() const { return mode_; }
  std::size_t size() const { return size_; }
  // Bytes held by the digest tables (entries and buckets), and by the path patterns.
  std::size_t table_bytes() const;
  std::size_t path_bytes() const;

 private:
  static constexpr std::uint32_t kAnyPath = 0xffffffff;
  static constexpr std::uint32_t kEmpty = 0xfffffffe;
  // Anonymous memory for a table, on transparent huge pages where the kernel allows
  // (MADV_HUGEPAGE): a lookup in a table of tens of MiB then costs one cache miss instead
  // of a cache miss plus a page walk.
  class Slab {
   public:
    Slab() = default;
    explicit Slab(std::size_t size);
    Slab(Slab&& other) noexcept;
    Slab& operator=(Slab&& other) noexcept;
    ~Slab();
    std::uint8_t* data() const { return data_; }
    std::size_t size() const { return size_; }

   private:
    std::uint8_t* data_ = nullptr;
    std::size_t size_ = 0;
    std::size_t mapped_ = 0;
  };
  struct Table {
    std::size_t digest_size = 0;
    std::size_t stride = 0;  // digest_size + 4
    std::size_t homes = 0;   // home slots; the array may run a little past them
    std::size_t slots = 0;
    Slab data;  // slots * stride bytes
  };
  struct Regex;
  CompiledPolicy() = default;
  const std::uint8_t* find(const crypto::Digest& digest) const;
  template <std::size_t N>
  static const std::uint8_t* find_n(const Table& t, const std::uint8_t* digest);
  bool path_allowed(std::uint32_t rule, std::string_view path) const;

  Mode mode_ = Mode::kEnforce;
  std::size_t size_ = 0;
  std::array<Table, 4> tables_;  // by HashAlg
  // Path patterns: per entry with paths, its patterns NUL-terminated and then an empty one;
  // a slot's rule field is the offset of its list (or kAnyPath).
  std::string arena_;
  std::vector<std::unique_ptr<Regex>> excludes_;
};

}  // namespace ctrust::policy
