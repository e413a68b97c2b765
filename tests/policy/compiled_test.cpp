// The compiled lookup: verdicts, glob and exclude semantics, every hash algorithm, large
// random policies and the memory bound per entry.
#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <set>
#include <string>

#include "policy/compiled.h"
#include "policy/interop.h"
#include "policy/test_util.h"

namespace ctrust::policy {
namespace {

using crypto::Digest;
using crypto::HashAlg;
using testing::digest_of;

Policy header() {
  Policy p;
  p.name = "compiled";
  p.issuer = "tests";
  p.not_before = testing::kJan2026;
  p.not_after = testing::kJan2027;
  return p;
}

CompiledPolicy compile_ok(const Policy& p) {
  auto c = CompiledPolicy::compile(p);
  EXPECT_TRUE(c.ok()) << c.error().message();
  return std::move(*c);
}

Digest random_digest(std::mt19937_64& rng, HashAlg alg) {
  Digest d = Digest::zero(alg);
  for (std::size_t i = 0; i < d.size(); i += 8) {
    std::uint64_t v = rng();
    for (std::size_t j = 0; j < 8 && i + j < d.size(); ++j)
      d.bytes[i + j] = static_cast<std::uint8_t>(v >> (8 * j));
  }
  return d;
}

TEST(Compiled, Verdicts) {
  Policy p = header();
  p.mode = Mode::kAudit;
  Digest any = digest_of("any"), app = digest_of("app"), unknown = digest_of("unknown");
  p.allow.push_back({any, {}});
  p.allow.push_back({app, {"/usr/bin/app", "/opt/app/*"}});
  p.excludes = {"/tmp/", "/var/cache/[a-z]+/"};
  CompiledPolicy c = compile_ok(p);
  EXPECT_EQ(c.size(), 2u);
  EXPECT_EQ(c.mode(), Mode::kAudit);
  EXPECT_TRUE(c.contains(any));
  EXPECT_TRUE(c.contains(app));
  EXPECT_FALSE(c.contains(unknown));

  EXPECT_EQ(c.check(any, "/anything/at/all"), Verdict::kAllowed);
  EXPECT_EQ(c.check(any, ""), Verdict::kAllowed);
  EXPECT_EQ(c.check(app, "/usr/bin/app"), Verdict::kAllowed);
  EXPECT_EQ(c.check(app, "/opt/app/run"), Verdict::kAllowed);
  EXPECT_EQ(c.check(app, "/usr/bin/app2"), Verdict::kWrongPath);
  EXPECT_EQ(c.check(app, "/usr/bin/ap"), Verdict::kWrongPath);
  EXPECT_EQ(c.check(app, "/bin/app"), Verdict::kWrongPath);
  EXPECT_EQ(c.check(unknown, "/usr/bin/app"), Verdict::kUnknownDigest);
  // Excludes are consulted for unlisted digests and for listed ones at other paths.
  EXPECT_EQ(c.check(unknown, "/tmp/x"), Verdict::kExcluded);
  EXPECT_EQ(c.check(app, "/tmp/app"), Verdict::kExcluded);
  EXPECT_EQ(c.check(unknown, "/var/cache/apt/pkg"), Verdict::kExcluded);
  EXPECT_EQ(c.check(unknown, "/var/cache/APT/pkg"), Verdict::kUnknownDigest);

  EXPECT_EQ(c.paths_for(app), (std::vector<std::string>{"/opt/app/*", "/usr/bin/app"}));
  EXPECT_TRUE(c.paths_for(any).empty());
  EXPECT_TRUE(c.paths_for(unknown).empty());

  EXPECT_EQ(verdict_name(Verdict::kAllowed), "allowed");
  EXPECT_EQ(verdict_name(Verdict::kExcluded), "excluded");
  EXPECT_EQ(verdict_name(Verdict::kUnknownDigest), "unknown-digest");
  EXPECT_EQ(verdict_name(Verdict::kWrongPath), "wrong-path");
}

TEST(Compiled, ExcludesMatchAtThePathStart) {
  Policy p = header();
  p.excludes = {"/tmp/", "/a|/b", "ignored"};
  CompiledPolicy c = compile_ok(p);
  EXPECT_TRUE(c.excluded("/tmp/x"));
  EXPECT_TRUE(c.excluded("/tmp/"));
  EXPECT_FALSE(c.excluded("/x/tmp/"));
  EXPECT_FALSE(c.excluded("/tmp"));
  EXPECT_FALSE(c.excluded("//tmp/x"));
  EXPECT_TRUE(c.excluded("/a"));
  EXPECT_TRUE(c.excluded("/bcd"));
  EXPECT_FALSE(c.excluded("/x/b"));  // "/b" matches, but not at the start
  EXPECT_TRUE(c.excluded("ignored/at/start"));
  EXPECT_FALSE(c.excluded("/ignored"));
  // A NUL-containing name never matches an exclude (nor a path rule).
  EXPECT_FALSE(c.excluded(std::string("/tmp/a\0b", 8)));
  Policy none = header();
  EXPECT_FALSE(compile_ok(none).excluded("/tmp/x"));
}

TEST(Compiled, GlobsUseFnmPathname) {
  Policy p = header();
  Digest d = digest_of("glob");
  p.allow.push_back({d, {"/usr/lib/*.so", "/opt/?/bin", "/srv/[ab]x", "/data/*/*"}});
  CompiledPolicy c = compile_ok(p);
  EXPECT_EQ(c.check(d, "/usr/lib/libc.so"), Verdict::kAllowed);
  EXPECT_EQ(c.check(d, "/usr/lib/.so"), Verdict::kAllowed);
  EXPECT_EQ(c.check(d, "/usr/lib/x86/libc.so"), Verdict::kWrongPath);  // '*' stops at '/'
  EXPECT_EQ(c.check(d, "/opt/a/bin"), Verdict::kAllowed);
  EXPECT_EQ(c.check(d, "/opt/ab/bin"), Verdict::kWrongPath);
  EXPECT_EQ(c.check(d, "/opt///bin"), Verdict::kWrongPath);  // '?' does not match '/'
  EXPECT_EQ(c.check(d, "/srv/ax"), Verdict::kAllowed);
  EXPECT_EQ(c.check(d, "/srv/bx"), Verdict::kAllowed);
  EXPECT_EQ(c.check(d, "/srv/cx"), Verdict::kWrongPath);
  EXPECT_EQ(c.check(d, "/data/x/y"), Verdict::kAllowed);
  EXPECT_EQ(c.check(d, "/data/x"), Verdict::kWrongPath);
  EXPECT_EQ(c.check(d, "/data/x/y/z"), Verdict::kWrongPath);
  EXPECT_EQ(c.check(d, std::string("/srv/ax\0", 8)), Verdict::kWrongPath);
}

TEST(Compiled, LiteralPathsWithGlobCharactersMatchOnlyThemselves) {
  Policy p = header();
  Digest d = digest_of("literal");
  std::vector<std::string> names = {"/bin/a*b", "/x/[1]", "/q?", "/back\\slash", "/plain"};
  std::vector<std::string> patterns;
  for (const auto& n : names) patterns.push_back(literal_pattern(n));
  p.allow.push_back({d, patterns});
  CompiledPolicy c = compile_ok(p);
  for (const auto& n : names) EXPECT_EQ(c.check(d, n), Verdict::kAllowed) << n;
  for (const char* other : {"/bin/ab", "/bin/axxb", "/x/1", "/x/[", "/q", "/qx", "/q\\?",
                            "/backslash", "/back\\\\slash", "/plai", "/bin/a\\*b"}) {
    EXPECT_EQ(c.check(d, other), Verdict::kWrongPath) << other;
  }
}

TEST(Compiled, LiteralPatternRoundTrip) {
  EXPECT_EQ(literal_pattern("/usr/bin/ls"), "/usr/bin/ls");
  EXPECT_EQ(literal_pattern("/a*?[\\]"), "/a\\*\\?\\[\\\\]");
  for (const char* path : {"/usr/bin/ls", "/a*b", "/[x]", "/\\", "/q?", "/ odd\nname"}) {
    auto back = pattern_literal(literal_pattern(path));
    ASSERT_TRUE(back.has_value()) << path;
    EXPECT_EQ(*back, path);
  }
  EXPECT_FALSE(pattern_literal("/usr/*").has_value());
  EXPECT_FALSE(pattern_literal("/a?").has_value());
  EXPECT_FALSE(pattern_literal("/[ab]").has_value());
  EXPECT_FALSE(pattern_literal("/trailing\\").has_value());
  EXPECT_EQ(pattern_literal("/a\\*"), std::optional<std::string>("/a*"));
}

TEST(Compiled, EveryHashAlgorithm) {
  Policy p = header();
  std::vector<Digest> listed;
  for (HashAlg alg : crypto::kAllHashAlgs) {
    for (int i = 0; i < 5; ++i) {
      Digest d = digest_of("file " + std::to_string(i), alg);
      listed.push_back(d);
      p.allow.push_back({d, {"/f" + std::to_string(i)}});
    }
  }
  CompiledPolicy c = compile_ok(p);
  EXPECT_EQ(c.size(), listed.size());
  for (const Digest& d : listed) {
    EXPECT_TRUE(c.contains(d)) << testing::digest_text(d);
  }
  for (HashAlg alg : crypto::kAllHashAlgs) {
    for (int i = 0; i < 5; ++i) {
      Digest d = digest_of("file " + std::to_string(i), alg);
      EXPECT_EQ(c.check(d, "/f" + std::to_string(i)), Verdict::kAllowed);
      EXPECT_EQ(c.check(d, "/f" + std::to_string((i + 1) % 5)), Verdict::kWrongPath);
      EXPECT_EQ(c.paths_for(d), std::vector<std::string>{"/f" + std::to_string(i)});
      EXPECT_FALSE(c.contains(digest_of("other " + std::to_string(i), alg)));
    }
  }
  // The same leading bytes under another algorithm are another digest.
  Digest s384 = digest_of("file 0", HashAlg::kSha384);
  Digest as256 = Digest::zero(HashAlg::kSha256);
  std::copy_n(s384.bytes.begin(), 32, as256.bytes.begin());
  EXPECT_FALSE(c.contains(as256));
  Digest s512 = digest_of("file 0", HashAlg::kSha512);
  Digest as384 = Digest::zero(HashAlg::kSha384);
  std::copy_n(s512.bytes.begin(), 48, as384.bytes.begin());
  EXPECT_FALSE(c.contains(as384));
}

TEST(Compiled, SmallSizes) {
  // 0, 1, 2, 3, ... entries: bucket tables of every small shape.
  std::mt19937_64 rng(7);
  for (std::size_t n = 0; n < 40; ++n) {
    Policy p = header();
    std::vector<Digest> listed;
    for (std::size_t i = 0; i < n; ++i) {
      listed.push_back(random_digest(rng, HashAlg::kSha256));
      p.allow.push_back({listed.back(), {}});
    }
    CompiledPolicy c = compile_ok(p);
    EXPECT_EQ(c.size(), n);
    for (const Digest& d : listed) EXPECT_TRUE(c.contains(d)) << n;
    for (int i = 0; i < 50; ++i) EXPECT_FALSE(c.contains(random_digest(rng, HashAlg::kSha256)));
    // Digests at the extremes of the bucket range.
    Digest lo = Digest::zero(HashAlg::kSha256);
    Digest hi = Digest::zero(HashAlg::kSha256);
    std::fill_n(hi.bytes.begin(), 32, 0xff);
    EXPECT_FALSE(c.contains(lo));
    EXPECT_FALSE(c.contains(hi));
    p.allow.push_back({lo, {}});
    p.allow.push_back({hi, {}});
    CompiledPolicy c2 = compile_ok(p);
    EXPECT_TRUE(c2.contains(lo));
    EXPECT_TRUE(c2.contains(hi));
  }
}

TEST(Compiled, DuplicateDigestsMergeAndAnyPathWins) {
  Policy p = header();
  Digest d = digest_of("dup"), e = digest_of("dup2");
  p.allow.push_back({d, {"/a"}});
  p.allow.push_back({d, {"/b"}});
  p.allow.push_back({e, {"/a"}});
  p.allow.push_back({e, {}});
  CompiledPolicy c = compile_ok(p);
  EXPECT_EQ(c.size(), 2u);
  EXPECT_EQ(c.check(d, "/a"), Verdict::kAllowed);
  EXPECT_EQ(c.check(d, "/b"), Verdict::kAllowed);
  EXPECT_EQ(c.check(d, "/c"), Verdict::kWrongPath);
  EXPECT_EQ(c.check(e, "/anywhere"), Verdict::kAllowed);
}

TEST(Compiled, InvalidPoliciesDoNotCompile) {
  Policy p = header();
  p.excludes = {"("};
  EXPECT_FALSE(CompiledPolicy::compile(p).ok());
  p = header();
  p.allow.push_back({digest_of("x"), {"relative"}});
  EXPECT_FALSE(CompiledPolicy::compile(p).ok());
}

TEST(Compiled, HundredThousandRandomDigests) {
  std::mt19937_64 rng(20260101);
  Policy p = header();
  std::vector<Digest> listed;
  listed.reserve(100000);
  for (int i = 0; i < 100000; ++i) {
    HashAlg alg = (i % 10 == 0) ? HashAlg::kSha512 : HashAlg::kSha256;
    listed.push_back(random_digest(rng, alg));
    p.allow.push_back({listed.back(), {}});
  }
  CompiledPolicy c = compile_ok(p);
  EXPECT_EQ(c.size(), 100000u);
  std::size_t missing = 0;
  for (const Digest& d : listed) missing += c.contains(d) ? 0 : 1;
  EXPECT_EQ(missing, 0u);
  std::size_t false_hits = 0;
  for (int i = 0; i < 100000; ++i) {
    false_hits +=
        c.contains(random_digest(rng, i % 2 ? HashAlg::kSha256 : HashAlg::kSha512)) ? 1 : 0;
  }
  EXPECT_EQ(false_hits, 0u);
  // One changed bit in a listed digest is another digest.
  std::size_t near_hits = 0;
  for (int i = 0; i < 1000; ++i) {
    Digest d = listed[static_cast<std::size_t>(i) * 97];
    d.bytes[static_cast<std::size_t>(i) % d.size()] ^= static_cast<std::uint8_t>(1u << (i % 8));
    near_hits += c.contains(d) ? 1 : 0;
  }
  EXPECT_EQ(near_hits, 0u);
}

TEST(Compiled, MillionSha256EntriesTakeAtMost64BytesEach) {
  std::mt19937_64 rng(1);
  Policy p = header();
  constexpr std::size_t kN = 1000000;
  p.allow.reserve(kN);
  for (std::size_t i = 0; i < kN; ++i)
    p.allow.push_back({random_digest(rng, HashAlg::kSha256), {}});
  std::vector<Digest> sample;
  for (std::size_t i = 0; i < kN; i += 1000) sample.push_back(p.allow[i].digest);
  CompiledPolicy c = compile_ok(p);
  ASSERT_EQ(c.size(), kN);
  double per_entry = static_cast<double>(c.table_bytes()) / static_cast<double>(c.size());
  EXPECT_LE(per_entry, 64.0) << c.table_bytes() << " bytes";
  EXPECT_GE(per_entry, 36.0) << "entries are 32 digest bytes plus a 4-byte rule index";
  EXPECT_LE(c.path_bytes(), 64u) << "no path rules were given";
  for (const Digest& d : sample) EXPECT_TRUE(c.contains(d));
  for (int i = 0; i < 1000; ++i) EXPECT_FALSE(c.contains(random_digest(rng, HashAlg::kSha256)));
}

}  // namespace
}  // namespace ctrust::policy
