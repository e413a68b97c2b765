#include "policy/compiled.h"

#include <fnmatch.h>

#include <algorithm>
#include <cstring>

namespace ctrust::policy {

struct CompiledPolicy::Regex {
  regex_t re{};
  ~Regex() { ::regfree(&re); }
};

namespace {

// The top 64 bits of the digest scaled to [0, homes): monotonic in digest order.
std::size_t home_slot(const std::uint8_t* digest, std::size_t homes) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | digest[i];
  return static_cast<std::size_t>((static_cast<unsigned __int128>(v) * homes) >> 64);
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
    t.homes = std::max<std::size_t>(1, n + n / 6);  // load factor about 0.86
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
    t.slots = std::max(t.homes, next[k]) + 1;  // at least one empty slot ends every scan
    t.data.assign(t.slots * t.stride, 0);
    for (std::size_t s = 0; s < t.slots; ++s) {
      std::uint8_t* r = t.data.data() + s * t.stride + t.digest_size;
      for (int b = 0; b < 4; ++b) r[b] = static_cast<std::uint8_t>(kEmpty >> (8 * b));
    }
  }
  c.rule_offsets_.push_back(0);
  for (std::size_t i = 0; i < policy.allow.size(); ++i) {
    const Allow& a = policy.allow[i];
    Table& t = c.tables_[static_cast<std::size_t>(a.digest.alg)];
    std::uint32_t rule = kAnyPath;
    if (!a.paths.empty()) {
      rule = static_cast<std::uint32_t>(c.rule_offsets_.size() - 1);
      for (const std::string& p : a.paths) {
        c.arena_ += p;
        c.arena_ += '\0';
      }
      if (c.arena_.size() >= kEmpty) return Error(Errc::kLimit, "path patterns exceed 4 GiB");
      c.rule_offsets_.push_back(static_cast<std::uint32_t>(c.arena_.size()));
    }
    std::uint8_t* slot = t.data.data() + position[i] * t.stride;
    std::copy_n(a.digest.bytes.begin(), t.digest_size, slot);
    for (int b = 0; b < 4; ++b)
      slot[t.digest_size + b] = static_cast<std::uint8_t>(rule >> (8 * b));
  }
  c.rule_offsets_.shrink_to_fit();
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

const std::uint8_t* CompiledPolicy::find(const crypto::Digest& digest) const {
  const Table& t = tables_[static_cast<std::size_t>(digest.alg)];
  const std::uint8_t* slot = t.data.data() + home_slot(digest.bytes.data(), t.homes) * t.stride;
  const std::uint8_t* end = t.data.data() + t.data.size();
  // Entries sit in digest order at or after their home: stop at an empty slot (nothing
  // with this home) or at a larger digest.
  for (; slot < end; slot += t.stride) {
    if (load_le32(slot + t.digest_size) == kEmpty) return nullptr;
    int c = std::memcmp(slot, digest.bytes.data(), t.digest_size);
    if (c == 0) return slot;
    if (c > 0) return nullptr;
  }
  return nullptr;
}

bool CompiledPolicy::path_allowed(std::uint32_t rule, std::string_view path) const {
  if (rule == kAnyPath) return true;
  // fnmatch needs a C string; a path with a NUL in it matches nothing.
  if (path.find('\0') != std::string_view::npos) return false;
  std::string cpath;
  const char* p = arena_.data() + rule_offsets_[rule];
  const char* end = arena_.data() + rule_offsets_[rule + 1];
  while (p < end) {
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
  const char* p = arena_.data() + rule_offsets_[rule];
  const char* end = arena_.data() + rule_offsets_[rule + 1];
  while (p < end) {
    out.emplace_back(p);
    p += out.back().size() + 1;
  }
  return out;
}

std::size_t CompiledPolicy::table_bytes() const {
  std::size_t n = 0;
  for (const Table& t : tables_) {
    n += t.data.capacity();
  }
  return n;
}

std::size_t CompiledPolicy::path_bytes() const {
  return arena_.capacity() + rule_offsets_.capacity() * sizeof(std::uint32_t);
}

}  // namespace ctrust::policy
