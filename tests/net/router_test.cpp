#include "net/router.h"

#include <gtest/gtest.h>

#include "net/rate_limiter.h"

namespace ctrust::net {
namespace {

using Outcome = Router::Outcome;

TEST(Router, MatchesLiteralsAndParams) {
  Router router;
  auto list = router.add("GET", "/v1/agents");
  auto one = router.add("GET", "/v1/agents/{id}");
  auto container = router.add("GET", "/v1/agents/{id}/containers/{cid}");
  auto put = router.add("PUT", "/v1/agents/{id}");
  auto fresh = router.add("GET", "/v1/agents/new");
  ASSERT_TRUE(list.ok() && one.ok() && container.ok() && put.ok() && fresh.ok());

  auto l = router.find("GET", "/v1/agents");
  EXPECT_EQ(l.outcome, Outcome::kMatched);
  EXPECT_EQ(l.route, *list);
  EXPECT_TRUE(l.params.empty());

  l = router.find("GET", "/v1/agents/a%20b/containers/c1");
  ASSERT_EQ(l.outcome, Outcome::kMatched);
  EXPECT_EQ(l.route, *container);
  EXPECT_EQ(l.params.at("id"), "a b");
  EXPECT_EQ(l.params.at("cid"), "c1");

  // Literal beats parameter, whatever the order of add().
  l = router.find("GET", "/v1/agents/new");
  EXPECT_EQ(l.route, *fresh);
  l = router.find("HEAD", "/v1/agents/x");
  EXPECT_EQ(l.route, *one);
  l = router.find("PUT", "/v1/agents/x");
  EXPECT_EQ(l.route, *put);

  l = router.find("DELETE", "/v1/agents/x");
  EXPECT_EQ(l.outcome, Outcome::kMethodNotAllowed);
  EXPECT_EQ(l.allow, "GET, PUT");

  EXPECT_EQ(router.find("GET", "/v1/agent").outcome, Outcome::kNotFound);
  EXPECT_EQ(router.find("GET", "/v1/agents/").outcome, Outcome::kNotFound);  // empty param
  EXPECT_EQ(router.find("GET", "/v1/agents/x/containers").outcome, Outcome::kNotFound);
}

TEST(Router, RefusesDangerousPaths) {
  Router router;
  ASSERT_TRUE(router.add("GET", "/files/{name}").ok());
  ASSERT_TRUE(router.add("GET", "/files/{dir}/{name}").ok());
  for (const char* path : {"/files/..", "/files/%2e%2e", "/files/%2E%2e/x", "/files/a..b",
                           "/files/a%2Fb", "/files/a%2fb", "/files/a%00", "/files/%zz", "/files/%4",
                           "/files/a%0a", "files/x", "", "http://h/files/x"}) {
    auto l = router.find("GET", path);
    EXPECT_EQ(l.outcome, Outcome::kBadPath) << path;
    EXPECT_FALSE(l.reason.empty()) << path;
  }
  std::string with_nul = "/files/a";
  with_nul += '\0';
  EXPECT_EQ(router.find("GET", with_nul).outcome, Outcome::kBadPath);
  EXPECT_EQ(router.find("GET", "/files/a.b").outcome, Outcome::kMatched);
  EXPECT_EQ(router.find("GET", "/files/%41").params.at("name"), "A");
}

TEST(Router, RefusesBadPatterns) {
  Router router;
  EXPECT_FALSE(router.add("GET", "no-slash").ok());
  EXPECT_FALSE(router.add("GET", "/a/{").ok());
  EXPECT_FALSE(router.add("GET", "/a/{}").ok());
  EXPECT_FALSE(router.add("GET", "/a/{x}y").ok());
  EXPECT_FALSE(router.add("GET", "/a/b{x}").ok());
  EXPECT_FALSE(router.add("GET", "/a/{x}/{x}").ok());
  EXPECT_FALSE(router.add("", "/a").ok());
  EXPECT_FALSE(router.add("G T", "/a").ok());
  ASSERT_TRUE(router.add("GET", "/a/{x}").ok());
  EXPECT_FALSE(router.add("GET", "/a/{y}").ok()) << "same shape";
  EXPECT_TRUE(router.add("POST", "/a/{y}").ok());
}

TEST(RateLimiter, BurstThenRate) {
  RateLimiter limiter(2.0, 3.0);
  auto t0 = RateLimiter::Clock::now();
  EXPECT_EQ(limiter.acquire("a", t0), 0);
  EXPECT_EQ(limiter.acquire("a", t0), 0);
  EXPECT_EQ(limiter.acquire("a", t0), 0);
  EXPECT_EQ(limiter.acquire("a", t0), 1);  // empty: half a second to the next token
  EXPECT_EQ(limiter.acquire("b", t0), 0) << "per peer";
  EXPECT_EQ(limiter.acquire("a", t0 + std::chrono::milliseconds(600)), 0);
  EXPECT_EQ(limiter.acquire("a", t0 + std::chrono::milliseconds(600)), 1);
  // Refills up to the burst only.
  auto later = t0 + std::chrono::seconds(100);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(limiter.acquire("a", later), 0);
  EXPECT_GT(limiter.acquire("a", later), 0);

  RateLimiter slow(0.1, 1.0);
  EXPECT_EQ(slow.acquire("x", t0), 0);
  EXPECT_EQ(slow.acquire("x", t0), 10);
}

TEST(RateLimiter, DisabledAndBounded) {
  RateLimiter off(0, 100);
  EXPECT_FALSE(off.enabled());
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(off.acquire("a"), 0);
  RateLimiter no_burst(10, 0);
  EXPECT_FALSE(no_burst.enabled());

  RateLimiter small(1.0, 1.0, 4);
  auto t0 = RateLimiter::Clock::now();
  for (int i = 0; i < 100; ++i) EXPECT_EQ(small.acquire("p" + std::to_string(i), t0), 0);
  // The newest peers are still tracked.
  EXPECT_GT(small.acquire("p99", t0), 0);
}

}  // namespace
}  // namespace ctrust::net
