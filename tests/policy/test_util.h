// Helpers shared by the policy tests: digests of known content, a small valid policy, and
// an in-memory entry source for judging logs.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "crypto/digest.h"
#include "imalog/source.h"
#include "policy/policy.h"

namespace ctrust::policy::testing {

inline crypto::Digest digest_of(const std::string& content,
                                crypto::HashAlg alg = crypto::HashAlg::kSha256) {
  auto d = crypto::digest_bytes(alg, as_bytes(content));
  EXPECT_TRUE(d.ok());
  return *d;
}

inline std::string digest_text(const crypto::Digest& d) {
  return std::string(crypto::hash_name(d.alg)) + ":" + d.hex();
}

// 2026-01-01T00:00:00Z and 2027-01-01T00:00:00Z.
inline constexpr std::int64_t kJan2026 = 1767225600;
inline constexpr std::int64_t kJan2027 = 1798761600;
inline constexpr std::int64_t kMid2026 = 1782864000;  // 2026-07-01T00:00:00Z

// A small valid policy: one any-path entry, one entry limited to two paths, an exclude, an
// image and an extension member.
inline Policy sample_policy() {
  Policy p;
  p.name = "web frontend";
  p.issuer = "platform team <platform@example.com>";
  p.serial = 7;
  p.not_before = kJan2026;
  p.not_after = kJan2027;
  p.mode = Mode::kAudit;
  p.images.push_back(digest_of("image"));
  p.allow.push_back(Allow{digest_of("busybox"), {}});
  p.allow.push_back(Allow{digest_of("app"), {"/usr/bin/app", "/opt/app/bin/*"}});
  p.allow.push_back(Allow{digest_of("legacy", crypto::HashAlg::kSha1), {"/bin/legacy"}});
  p.excludes.push_back("/tmp/");
  p.extensions["x-build"] = {{"pipeline", 42}, {"tags", {"a", "b"}}};
  auto n = normalize(p);
  EXPECT_TRUE(n.ok()) << n.error().message();
  return p;
}

// Compares every field, including the signature.
inline void expect_same_policy(const Policy& a, const Policy& b) {
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.issuer, b.issuer);
  EXPECT_EQ(a.serial, b.serial);
  EXPECT_EQ(a.not_before, b.not_before);
  EXPECT_EQ(a.not_after, b.not_after);
  EXPECT_EQ(a.mode, b.mode);
  EXPECT_EQ(a.images, b.images);
  ASSERT_EQ(a.allow.size(), b.allow.size());
  for (std::size_t i = 0; i < a.allow.size(); ++i) {
    EXPECT_EQ(a.allow[i].digest, b.allow[i].digest) << "allow[" << i << "]";
    EXPECT_EQ(a.allow[i].paths, b.allow[i].paths) << "allow[" << i << "]";
  }
  EXPECT_EQ(a.excludes, b.excludes);
  EXPECT_EQ(a.extensions, b.extensions);
  ASSERT_EQ(a.signature.has_value(), b.signature.has_value());
  if (a.signature) {
    EXPECT_EQ(a.signature->alg, b.signature->alg);
    EXPECT_EQ(a.signature->key_id, b.signature->key_id);
    EXPECT_EQ(a.signature->value, b.signature->value);
    EXPECT_EQ(a.signature->certificates, b.signature->certificates);
  }
}

// Yields the given entries in order.
class VectorSource final : public imalog::EntrySource {
 public:
  explicit VectorSource(std::vector<imalog::Entry> entries) : entries_(std::move(entries)) {}
  Result<bool> next(imalog::Entry& out) override {
    if (pos_ == entries_.size()) return false;
    out = entries_[pos_++];
    return true;
  }
  std::uint64_t count() const override { return pos_; }
  std::uint64_t offset() const override { return pos_; }

 private:
  std::vector<imalog::Entry> entries_;
  std::size_t pos_ = 0;
};

}  // namespace ctrust::policy::testing
