#include "policy/compiled.h"

#include <fnmatch.h>

#include <bit>
#include <cstring>

namespace ctrust::policy {

struct CompiledPolicy::Regex {
  regex_t re{};
  ~Regex() { ::regfree(&re); }
};

namespace {

std::uint64_t top_bits(const std::uint8_t* digest, unsigned bits) {
  if (bits == 0) return 0;
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | digest[i];
  return v >> (64 - bits);
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
  if (policy.allow.size() >= kAnyPath) {
    return Error(Errc::kLimit, "a policy may allow at most 2^32-2 digests");
  }
  std::array<std::size_t, 4> counts{};
  for (const Allow& a : policy.allow) ++counts[static_cast<std::size_t>(a.digest.alg)];
  for (crypto::HashAlg alg : crypto::kAllHashAlgs) {
    Table& t = c.tables_[static_cast<std::size_t>(alg)];
    std::size_t n = counts[static_cast<std::size_t>(alg)];
    t.digest_size = crypto::digest_size(alg);
    t.stride = t.digest_size + 4;
    t.bits = n <= 1 ? 0 : static_cast<unsigned>(std::bit_width(n - 1));
    t.entries.reserve(n * t.stride);
    t.buckets.assign((std::size_t{1} << t.bits) + 1, 0);
  }
  c.rule_offsets_.push_back(0);
  for (const Allow& a : policy.allow) {
    Table& t = c.tables_[static_cast<std::size_t>(a.digest.alg)];
    std::uint32_t rule = kAnyPath;
    if (!a.paths.empty()) {
      rule = static_cast<std::uint32_t>(c.rule_offsets_.size() - 1);
      for (const std::string& p : a.paths) {
        c.arena_ += p;
        c.arena_ += '\0';
      }
      if (c.arena_.size() >= kAnyPath) return Error(Errc::kLimit, "path patterns exceed 4 GiB");
      c.rule_offsets_.push_back(static_cast<std::uint32_t>(c.arena_.size()));
    }
    t.entries.insert(t.entries.end(), a.digest.bytes.begin(),
                     a.digest.bytes.begin() + static_cast<std::ptrdiff_t>(t.digest_size));
    for (int i = 0; i < 4; ++i) t.entries.push_back(static_cast<std::uint8_t>(rule >> (8 * i)));
    ++t.buckets[top_bits(a.digest.bytes.data(), t.bits) + 1];
  }
  for (Table& t : c.tables_) {
    for (std::size_t i = 1; i < t.buckets.size(); ++i) t.buckets[i] += t.buckets[i - 1];
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
  std::uint64_t b = top_bits(digest.bytes.data(), t.bits);
  std::uint32_t end = t.buckets[b + 1];
  const std::uint8_t* base = t.entries.data();
  for (std::uint32_t i = t.buckets[b]; i < end; ++i) {
    const std::uint8_t* e = base + static_cast<std::size_t>(i) * t.stride;
    if (std::memcmp(e, digest.bytes.data(), t.digest_size) == 0) return e;
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
    std::uint32_t rule = 0;
    for (int i = 0; i < 4; ++i) rule |= std::uint32_t{e[t.digest_size + i]} << (8 * i);
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
  std::uint32_t rule = 0;
  for (int i = 0; i < 4; ++i) rule |= std::uint32_t{e[t.digest_size + i]} << (8 * i);
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
    n += t.entries.capacity() + t.buckets.capacity() * sizeof(std::uint32_t);
  }
  return n;
}

std::size_t CompiledPolicy::path_bytes() const {
  return arena_.capacity() + rule_offsets_.capacity() * sizeof(std::uint32_t);
}

}  // namespace ctrust::policy
