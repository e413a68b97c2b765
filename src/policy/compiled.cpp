#include "policy/compiled.h"

#include <fnmatch.h>
#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

namespace ctrust::policy {

struct CompiledPolicy::Regex {
  regex_t re{};
  ~Regex() { ::regfree(&re); }
};

namespace {

std::uint64_t load_be64(const std::uint8_t* p) {
  std::uint64_t v;
  std::memcpy(&v, p, 8);
  return __builtin_bswap64(v);
}

__extension__ using Uint128 = unsigned __int128;

// The top 64 bits of the digest scaled to [0, homes): monotonic in digest order.
std::size_t home_slot(const std::uint8_t* digest, std::size_t homes) {
  return static_cast<std::size_t>((static_cast<Uint128>(load_be64(digest)) * homes) >> 64);
}

std::uint32_t load_le32(const std::uint8_t* p) {
  return std::uint32_t{p[0]} | std::uint32_t{p[1]} << 8 | std::uint32_t{p[2]} << 16 |
         std::uint32_t{p[3]} << 24;
}

bool has_glob(std::string_view p) { return p.find_first_of("*?[\\") != std::string_view::npos; }

}  // namespace

std::string_view verdict_name(Verdict v) {
  switch (v) {
    case Verdict::kAllowed:
      return "allowed";
    case Verdict::kExcluded:
      return "excluded";
    case Verdict::kUnknownDigest:
      return "unknown-digest";
    case Verdict::kWrongPath:
      return "wrong-path";
  }
  return "?";
}

CompiledPolicy::Slab::Slab(std::size_t size) : size_(size) {
  if (size == 0) return;
  constexpr std::size_t kHuge = std::size_t{2} << 20;
  bool huge = size >= kHuge;
  mapped_ = huge ? (size + kHuge - 1) / kHuge * kHuge : size;
  // Huge pages need 2 MiB alignment: map one huge page more and trim both ends.
  std::size_t reserve = huge ? mapped_ + kHuge : mapped_;
  void* p = ::mmap(nullptr, reserve, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    size_ = mapped_ = 0;
    return;
  }
  auto* base = static_cast<std::uint8_t*>(p);
  if (huge) {
    auto addr = reinterpret_cast<std::uintptr_t>(base);
    std::size_t lead = (kHuge - addr % kHuge) % kHuge;
    if (lead != 0) ::munmap(base, lead);
    ::munmap(base + lead + mapped_, kHuge - lead);
    base += lead;
    ::madvise(base, mapped_, MADV_HUGEPAGE);  // a hint; fine if refused
  }
  data_ = base;
}

CompiledPolicy::Slab::Slab(Slab&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      mapped_(std::exchange(other.mapped_, 0)) {}

CompiledPolicy::Slab& CompiledPolicy::Slab::operator=(Slab&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) ::munmap(data_, mapped_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    mapped_ = std::exchange(other.mapped_, 0);
  }
  return *this;
}

CompiledPolicy::Slab::~Slab() {
  if (data_ != nullptr) ::munmap(data_, mapped_);
}

CompiledPolicy::CompiledPolicy(CompiledPolicy&&) noexcept = default;
CompiledPolicy& CompiledPolicy::operator=(CompiledPolicy&&) noexcept = default;
CompiledPolicy::~CompiledPolicy() = default;

Result<CompiledPolicy> CompiledPolicy::compile(const Policy& input) {
  // normalize() sorts allow entries by (algorithm, bytes) and merges equal digests, which
  // is the order the tables need.
  Policy policy = input;
  CTRUST_TRY(normalize(policy));
  CompiledPolicy c;
  c.mode_ = policy.mode;
  c.size_ = policy.allow.size();
  if (policy.allow.size() >= kEmpty) {
    return Error(Errc::kLimit, "a policy may allow at most 2^32-2 digests");
  }
  std::array<std::size_t, 4> counts{};
  for (const Allow& a : policy.allow) ++counts[static_cast<std::size_t>(a.digest.alg)];
  // Where each entry goes: its home slot, or the first free slot after the previous entry.
  std::vector<std::size_t> position(policy.allow.size());
  std::array<std::size_t, 4> next{};
  for (crypto::HashAlg alg : crypto::kAllHashAlgs) {
    Table& t = c.tables_[static_cast<std::size_t>(alg)];
    std::size_t n = counts[static_cast<std::size_t>(alg)];
    t.digest_size = crypto::digest_size(alg);
    t.stride = t.digest_size + 4;
    t.homes = std::max<std::size_t>(1, n + n * 2 / 3);  // load factor 0.6: <= 60 B/entry
  }
  for (std::size_t i = 0; i < policy.allow.size(); ++i) {
    const crypto::Digest& d = policy.allow[i].digest;
    auto k = static_cast<std::size_t>(d.alg);
    std::size_t p = std::max(home_slot(d.bytes.data(), c.tables_[k].homes), next[k]);
    position[i] = p;
    next[k] = p + 1;
  }
  for (std::size_t k = 0; k < c.tables_.size(); ++k) {
    Table& t = c.tables_[k];
    // Two slots past the last position: the fast path reads a home slot and the next one,
    // and at least one empty slot ends every scan.
    t.slots = std::max(t.homes, next[k]) + 2;
    t.data = Slab(t.slots * t.stride);
    if (t.data.data() == nullptr) {
      return errno_error("cannot allocate " + std::to_string(t.slots * t.stride) +
                             " bytes for the compiled policy",
                         errno);
    }
    for (std::size_t s = 0; s < t.slots; ++s) {
      std::uint8_t* r = t.data.data() + s * t.stride + t.digest_size;
      for (int b = 0; b < 4; ++b) r[b] = static_cast<std::uint8_t>(kEmpty >> (8 * b));
    }
  }
  for (std::size_t i = 0; i < policy.allow.size(); ++i) {
    const Allow& a = policy.allow[i];
    Table& t = c.tables_[static_cast<std::size_t>(a.digest.alg)];
    std::uint32_t rule = kAnyPath;
    if (!a.paths.empty()) {
      // The slot holds the arena offset of the entry's patterns: each NUL-terminated, the
      // list ended by an empty one. One memory access from the slot to the patterns.
      rule = static_cast<std::uint32_t>(c.arena_.size());
      for (const std::string& p : a.paths) {
        c.arena_ += p;
        c.arena_ += '\0';
      }
      c.arena_ += '\0';
      if (c.arena_.size() >= kEmpty) return Error(Errc::kLimit, "path patterns exceed 4 GiB");
    }
    std::uint8_t* slot = t.data.data() + position[i] * t.stride;
    std::copy_n(a.digest.bytes.begin(), t.digest_size, slot);
    for (int b = 0; b < 4; ++b)
      slot[t.digest_size + b] = static_cast<std::uint8_t>(rule >> (8 * b));
  }
  c.arena_.shrink_to_fit();
  for (const std::string& re : policy.excludes) {
    auto r = std::make_unique<Regex>();
    if (::regcomp(&r->re, re.c_str(), REG_EXTENDED) != 0) {
      return Error(Errc::kFormat, "exclude \"" + re + "\" does not compile");
    }
    c.excludes_.push_back(std::move(r));
  }
  return c;
}

namespace {

// Equality and order of two N-byte digests without data-dependent branches, so that the
// CPU can overlap the cache misses of consecutive lookups instead of stalling on a
// mispredicted branch after each one.
template <std::size_t N>
bool equal_digest(const std::uint8_t* a, const std::uint8_t* b) {
  std::uint64_t diff = 0;
  std::size_t i = 0;
  for (; i + 8 <= N; i += 8) {
    std::uint64_t x;
    std::uint64_t y;
    std::memcpy(&x, a + i, 8);
    std::memcpy(&y, b + i, 8);
    diff |= x ^ y;
  }
  if constexpr (N % 8 != 0) {
    std::uint32_t x;
    std::uint32_t y;
    std::memcpy(&x, a + i, 4);
    std::memcpy(&y, b + i, 4);
    diff |= x ^ y;
  }
  return diff == 0;
}

}  // namespace

template <std::size_t N>
const std::uint8_t* CompiledPolicy::find_n(const Table& t, const std::uint8_t* digest) {
  constexpr std::size_t kStride = N + 4;
  const std::uint8_t* slot = t.data.data() + home_slot(digest, t.homes) * kStride;
  // Fast path: the home slot and the next one (at a load of 0.6 nearly every digest is in
  // one of them), decided with a single rarely-taken branch.
  bool empty0 = load_le32(slot + N) == kEmpty;
  bool empty1 = load_le32(slot + kStride + N) == kEmpty;
  bool eq0 = !empty0 & equal_digest<N>(slot, digest);
  bool eq1 = !empty1 & equal_digest<N>(slot + kStride, digest);
  // Only the next slot's first 64 bits are compared for order (equal prefixes, rare, take
  // the slow path): the fewer instructions per lookup, the more lookups the CPU keeps in
  // flight while it waits for memory.
  bool further = !eq0 & !eq1 & !empty0 & !empty1 & (load_be64(slot + kStride) <= load_be64(digest));
  if (__builtin_expect(!further, 1)) {
    // slot, slot + kStride or null, chosen with arithmetic rather than branches (the
    // compiler turns a pointer ?: into a branch here, which costs 30-50 % at 1M entries).
    auto hit =
        reinterpret_cast<std::uintptr_t>(slot) + static_cast<std::uintptr_t>(!eq0 & eq1) * kStride;
    hit &= -static_cast<std::uintptr_t>(eq0 | eq1);
    return reinterpret_cast<const std::uint8_t*>(hit);  // NOLINT(performance-no-int-to-ptr)
  }
  // Entries sit in digest order at or after their home: scan on until an empty slot
  // (nothing more with this home) or a larger digest.
  const std::uint8_t* end = t.data.data() + t.data.size();
  for (slot += 2 * kStride; slot < end; slot += kStride) {
    if (load_le32(slot + N) == kEmpty) return nullptr;
    int c = std::memcmp(slot, digest, N);
    if (c == 0) return slot;
    if (c > 0) return nullptr;
  }
  return nullptr;
}

const std::uint8_t* CompiledPolicy::find(const crypto::Digest& digest) const {
  const Table& t = tables_[static_cast<std::size_t>(digest.alg)];
  switch (digest.alg) {
    case crypto::HashAlg::kSha1:
      return find_n<20>(t, digest.bytes.data());
    case crypto::HashAlg::kSha256:
      return find_n<32>(t, digest.bytes.data());
    case crypto::HashAlg::kSha384:
      return find_n<48>(t, digest.bytes.data());
    case crypto::HashAlg::kSha512:
      return find_n<64>(t, digest.bytes.data());
  }
  return nullptr;
}

bool CompiledPolicy::path_allowed(std::uint32_t rule, std::string_view path) const {
  if (rule == kAnyPath) return true;
  // fnmatch needs a C string; a path with a NUL in it matches nothing.
  if (path.find('\0') != std::string_view::npos) return false;
  std::string cpath;
  for (const char* p = arena_.data() + rule; *p != '\0';) {
    std::string_view pattern(p);
    if (!has_glob(pattern)) {
      if (pattern == path) return true;
    } else {
      if (cpath.empty()) cpath.assign(path);
      if (::fnmatch(p, cpath.c_str(), FNM_PATHNAME) == 0) return true;
    }
    p += pattern.size() + 1;
  }
  return false;
}

bool CompiledPolicy::excluded(std::string_view path) const {
  if (excludes_.empty() || path.find('\0') != std::string_view::npos) return false;
  std::string cpath(path);
  for (const auto& r : excludes_) {
    // Matched at the start of the path, as Keylime's re.match() does. POSIX returns the
    // leftmost match, so a match at offset 0 exists exactly when rm_so is 0.
    regmatch_t m{};
    if (::regexec(&r->re, cpath.c_str(), 1, &m, 0) == 0 && m.rm_so == 0) return true;
  }
  return false;
}

Verdict CompiledPolicy::check(const crypto::Digest& digest, std::string_view path) const {
  if (const std::uint8_t* e = find(digest)) {
    const Table& t = tables_[static_cast<std::size_t>(digest.alg)];
    std::uint32_t rule = load_le32(e + t.digest_size);
    if (path_allowed(rule, path)) return Verdict::kAllowed;
    return excluded(path) ? Verdict::kExcluded : Verdict::kWrongPath;
  }
  return excluded(path) ? Verdict::kExcluded : Verdict::kUnknownDigest;
}

std::vector<std::string> CompiledPolicy::paths_for(const crypto::Digest& digest) const {
  std::vector<std::string> out;
  const std::uint8_t* e = find(digest);
  if (e == nullptr) return out;
  const Table& t = tables_[static_cast<std::size_t>(digest.alg)];
  std::uint32_t rule = load_le32(e + t.digest_size);
  if (rule == kAnyPath) return out;
  for (const char* p = arena_.data() + rule; *p != '\0';) {
    out.emplace_back(p);
    p += out.back().size() + 1;
  }
  return out;
}

std::size_t CompiledPolicy::table_bytes() const {
  std::size_t n = 0;
  for (const Table& t : tables_) {
    n += t.data.size();
  }
  return n;
}

std::size_t CompiledPolicy::path_bytes() const { return arena_.capacity(); }

}  // namespace ctrust::policy
