// Every Store method, run against each backend: round trips, upserts, leases, the one
// transaction of save_attestation, history paging, policies, cascades, migrations, damaged
// rows, and concurrent use from threads and from two stores ("verifiers") at once.
#include "store_cases.h"

#include <gmock/gmock.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

namespace ctrust::store::test {

using ::testing::HasSubstr;

namespace {

bool in_ci() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string(ci) == "true";
}

AgentRow make_agent(const std::string& id, std::int64_t next_due = 0) {
  AgentRow a;
  a.id = id;
  a.url = "https://" + id + ".example:8891";
  a.identity = {{"ek", {{"sha256", "00ff"}}}, {"ak_name", "000b1234"}, {"note", "grüße"}};
  a.state = {{"offset", 7}, {"pcrs", {{"10", "ab"}}}};
  a.status = "registered";
  a.registered_at = 100;
  a.updated_at = 100;
  a.next_due = next_due;
  return a;
}

ContainerRow make_container(const std::string& id, const std::string& verdict = "affirming") {
  ContainerRow c;
  c.container_id = id;
  c.state = {{"offset", 3}};
  c.verdict = verdict;
  c.reasons = nlohmann::json::array({"because " + id});
  c.updated_at = 200;
  return c;
}

VerdictEvent make_event(const std::string& container_id, const std::string& verdict,
                        std::int64_t time = 300) {
  VerdictEvent e;
  e.container_id = container_id;
  e.time = time;
  e.verdict = verdict;
  e.reasons = nlohmann::json::array({{{"rule", "r"}, {"container", container_id}}});
  e.ear = "eyJhbGciOiJFUzI1NiJ9.e30.sig";
  return e;
}

void expect_agent_eq(const AgentRow& a, const AgentRow& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.url, b.url);
  EXPECT_EQ(a.identity, b.identity);
  EXPECT_EQ(a.state, b.state);
  EXPECT_EQ(a.status, b.status);
  EXPECT_EQ(a.registered_at, b.registered_at);
  EXPECT_EQ(a.updated_at, b.updated_at);
  EXPECT_EQ(a.next_due, b.next_due);
  EXPECT_EQ(a.owner, b.owner);
  EXPECT_EQ(a.lease_until, b.lease_until);
}

std::vector<std::string> ids_of(const std::vector<AgentRow>& agents) {
  std::vector<std::string> ids;
  ids.reserve(agents.size());
  for (const AgentRow& a : agents) ids.push_back(a.id);
  return ids;
}

std::vector<std::string> ids_of(const std::vector<ContainerRow>& containers) {
  std::vector<std::string> ids;
  ids.reserve(containers.size());
  for (const ContainerRow& c : containers) ids.push_back(c.container_id);
  return ids;
}

PolicyRow make_policy(const std::string& name, std::uint64_t serial, const std::string& digest) {
  PolicyRow p;
  p.name = name;
  p.serial = serial;
  p.digest = digest;
  p.document = R"({"name":")" + name + R"(","serial":)" + std::to_string(serial) + "}";
  p.signer = "sha256:" + std::string(64, 'a');
  p.added_at = 1000 + static_cast<std::int64_t>(serial);
  return p;
}

// Saves one attestation without a lease.
void save(Store& store, const AgentRow& agent, const std::vector<ContainerRow>& containers,
          const std::vector<std::string>& removed, std::vector<VerdictEvent> events) {
  must(store.save_attestation(agent, "", containers, removed, events));
}

}  // namespace

void StoreTest::SetUp() {
  backend_ = GetParam().make();
  if (std::string why = backend_->unavailable(); !why.empty()) {
    if (in_ci()) FAIL() << GetParam().name << " is needed in CI: " << why;
    GTEST_SKIP() << why;
  }
  backend_->reset();
  auto store = open();
  ASSERT_TRUE(store.ok()) << store.error().message();
  store_ = std::move(store).value();
}

void StoreTest::TearDown() {
  store_.reset();
  backend_.reset();
}

Result<std::unique_ptr<Store>> StoreTest::open(const StoreOptions& options) const {
  return open_store(backend_->url(), options);
}

TEST_P(StoreTest, OpensAnEmptyDatabaseAtTheLatestSchema) {
  EXPECT_EQ(store_->backend(), GetParam().name);
  EXPECT_EQ(must(store_->schema_version()), kSchemaVersion);
  EXPECT_TRUE(must(store_->list_agents()).empty());
  EXPECT_TRUE(must(store_->list_policies()).empty());
  EXPECT_TRUE(must(store_->list_mappings()).empty());
  EXPECT_TRUE(must(store_->events("", "", 10, 0)).empty());
}

TEST_P(StoreTest, ReopeningKeepsTheDataAndMigratesNothing) {
  must(store_->put_agent(make_agent("a1", 5)));
  store_.reset();
  for (int i = 0; i < 2; ++i) {
    auto again = must(open());
    EXPECT_EQ(must(again->schema_version()), kSchemaVersion);
    auto a = must(again->get_agent("a1"));
    ASSERT_TRUE(a.has_value());
    EXPECT_EQ(a->next_due, 5);
  }
}

TEST_P(StoreTest, ADatabaseNewerThanThisBuildIsRefused) {
  store_.reset();
  backend_->exec("UPDATE schema_version SET version = 99");
  auto r = open();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Errc::kUnsupported);
  EXPECT_THAT(r.error().message(), HasSubstr("schema version 99"));
  EXPECT_THAT(r.error().message(), HasSubstr(std::string(GetParam().name) + ": migrate"));
}

TEST_P(StoreTest, AgentsRoundTripAndPutReplacesEveryField) {
  AgentRow a = make_agent("a1", 50);
  a.owner = "v1";
  a.lease_until = 77;
  must(store_->put_agent(a));
  auto got = must(store_->get_agent("a1"));
  ASSERT_TRUE(got.has_value());
  expect_agent_eq(*got, a);

  AgentRow b;
  b.id = "a1";
  b.url = "https://other:1";
  b.identity = {{"ek", nullptr}, {"list", {1, 2.5, "x", true}}};
  b.state = nlohmann::json::object();
  b.status = "trusted";
  b.registered_at = -1;
  b.updated_at = std::numeric_limits<std::int64_t>::max();
  b.next_due = std::numeric_limits<std::int64_t>::min();
  must(store_->put_agent(b));
  got = must(store_->get_agent("a1"));
  ASSERT_TRUE(got.has_value());
  expect_agent_eq(*got, b);

  // Bytewise order whatever the database's locale: "B" < "a" < "a-2" < "a1".
  must(store_->put_agent(make_agent("a-2")));
  must(store_->put_agent(make_agent("B")));
  must(store_->put_agent(make_agent("a")));
  EXPECT_EQ(ids_of(must(store_->list_agents())), (std::vector<std::string>{"B", "a", "a-2", "a1"}));
  EXPECT_FALSE(must(store_->get_agent("absent")).has_value());
}

TEST_P(StoreTest, RefusesWhatItCouldNotReadBack) {
  const std::string op = std::string(GetParam().name) + ": put_agent";
  for (const std::string& id : {std::string(), std::string("a/b"), std::string("a b"),
                                std::string(129, 'a'), std::string("\xc3\xa9")}) {
    auto r = store_->put_agent(make_agent(id));
    ASSERT_FALSE(r.ok()) << id;
    EXPECT_EQ(r.error().code(), Errc::kInvalidArgument);
    EXPECT_THAT(r.error().message(), HasSubstr(op));
  }
  must(store_->put_agent(make_agent(std::string(128, 'a'))));

  AgentRow a = make_agent("a1");
  a.identity = {{"name", std::string("\xff\xfe")}};
  auto r = store_->put_agent(a);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Errc::kInvalidArgument);
  EXPECT_THAT(r.error().message(), HasSubstr("identity"));

  a = make_agent("a1");
  a.url = std::string("https://x\0y", 11);
  EXPECT_FALSE(store_->put_agent(a).ok());

  a = make_agent("a1");
  nlohmann::json deep = 1;
  for (std::size_t i = 0; i < kMaxJsonDepth; ++i) deep = nlohmann::json::array({deep});
  a.state = deep;
  must(store_->put_agent(a));
  EXPECT_EQ(must(store_->get_agent("a1"))->state, deep);
  a.state = nlohmann::json::array({deep});
  r = store_->put_agent(a);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.error().message(), HasSubstr("deeper"));
}

TEST_P(StoreTest, DeletingAnAgentTakesItsContainersAndEvents) {
  must(store_->put_agent(make_agent("a1")));
  must(store_->put_agent(make_agent("a2")));
  for (const char* id : {"a1", "a2"}) {
    save(*store_, make_agent(id), {make_container("c1"), make_container("c2")}, {},
         {make_event("", "affirming"), make_event("c1", "warning")});
  }
  EXPECT_TRUE(must(store_->delete_agent("a1")));
  EXPECT_FALSE(must(store_->get_agent("a1")).has_value());
  EXPECT_TRUE(must(store_->list_containers("a1")).empty());
  EXPECT_FALSE(must(store_->get_container("a1", "c1")).has_value());
  EXPECT_TRUE(must(store_->events("a1", "", 10, 0)).empty());
  EXPECT_FALSE(must(store_->delete_agent("a1")));
  // The other agent keeps everything.
  EXPECT_EQ(must(store_->list_containers("a2")).size(), 2U);
  EXPECT_EQ(must(store_->events("a2", "", 10, 0)).size(), 2U);
  EXPECT_EQ(must(store_->events("", "", 10, 0)).size(), 2U);
}

TEST_P(StoreTest, ClaimDueTakesDueAgentsThatAreFreeOwnedOrExpired) {
  auto put = [&](const std::string& id, std::int64_t due, const std::string& owner,
                 std::int64_t lease) {
    AgentRow a = make_agent(id, due);
    a.owner = owner;
    a.lease_until = lease;
    must(store_->put_agent(a));
  };
  put("free", 900, "", 0);
  put("later", 2000, "", 0);        // not due
  put("held", 800, "v2", 1500);     // another verifier's lease holds
  put("expired", 850, "v2", 1000);  // lease_until == now: expired
  put("mine", 950, "v1", 1500);     // already ours
  put("due-now", 1000, "", 0);      // next_due == now: due

  auto claimed = must(store_->claim_due("v1", 1000, 30, 10));
  EXPECT_EQ(ids_of(claimed), (std::vector<std::string>{"expired", "free", "mine", "due-now"}));
  for (const AgentRow& a : claimed) {
    EXPECT_EQ(a.owner, "v1");
    EXPECT_EQ(a.lease_until, 1030);
    auto stored = must(store_->get_agent(a.id));
    EXPECT_EQ(stored->owner, "v1");
    EXPECT_EQ(stored->lease_until, 1030);
  }
  EXPECT_EQ(must(store_->get_agent("held"))->owner, "v2");
  EXPECT_EQ(must(store_->get_agent("held"))->lease_until, 1500);
  EXPECT_EQ(must(store_->get_agent("later"))->owner, "");

  EXPECT_EQ(ids_of(must(store_->claim_due("v2", 1000, 1000, 10))),
            (std::vector<std::string>{"held"}));
  EXPECT_TRUE(must(store_->claim_due("v3", 1010, 30, 10)).empty());
  // Expired at 1030, and the limit takes the earliest due first.
  EXPECT_EQ(ids_of(must(store_->claim_due("v3", 1030, 30, 1))),
            (std::vector<std::string>{"expired"}));

  must(store_->release("v1"));
  auto free = must(store_->get_agent("free"));
  EXPECT_EQ(free->owner, "");
  EXPECT_EQ(free->lease_until, 0);
  EXPECT_EQ(must(store_->get_agent("expired"))->owner, "v3");
  EXPECT_EQ(must(store_->get_agent("held"))->owner, "v2");
  // v2 is alive (its heartbeat runs to 2000), so v3's share is 3 of the 6 agents: the one
  // it holds and two more, the earliest due first.
  EXPECT_EQ(ids_of(must(store_->claim_due("v3", 1030, 30, 10))),
            (std::vector<std::string>{"expired", "free", "mine"}));

  EXPECT_TRUE(must(store_->claim_due("v4", 5000, 30, 0)).empty());
  for (const auto& r : {store_->claim_due("", 1000, 30, 1), store_->claim_due("v1", 1000, 0, 1),
                        store_->claim_due("v1", std::numeric_limits<std::int64_t>::max(), 1, 1)}) {
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code(), Errc::kInvalidArgument);
  }
  EXPECT_FALSE(store_->release("").ok());
}

// Each verifier takes agents nobody holds only up to ceil(agents / verifiers alive); one
// that holds two or more than another hands it agents (never one that is due, so never one
// in flight); a dead one's agents are shared once its heartbeat and leases run out.
TEST_P(StoreTest, EachVerifierClaimsItsFairShare) {
  for (int i = 0; i < 6; ++i) must(store_->put_agent(make_agent("a" + std::to_string(i), 0)));
  auto held = [&](const std::string& owner) {
    int n = 0;
    for (const AgentRow& a : must(store_->list_agents())) n += a.owner == owner ? 1 : 0;
    return n;
  };
  // Claims and "attests" (saves with next_due = `next`), as the verifier loop does.
  auto claim = [&](const std::string& owner, std::int64_t now, std::int64_t next) {
    auto got = must(store_->claim_due(owner, now, 60, 10));
    for (AgentRow a : got) {
      a.next_due = next;
      std::vector<VerdictEvent> events;
      must(store_->save_attestation(a, owner, {}, {}, events));
    }
    return got.size();
  };
  EXPECT_EQ(claim("v1", 100, 101), 6U);             // alone: all of them
  EXPECT_EQ(claim("v2", 100, 101), 0U);             // v1's leases hold
  EXPECT_EQ(must(store_->shed("v1", 100, 60)), 3);  // half of them to v2
  EXPECT_EQ(held("v1"), 3);
  EXPECT_EQ(held("v2"), 3);
  EXPECT_EQ(must(store_->get_agent("a0"))->lease_until, 160);  // v2's lease, not v1's
  EXPECT_EQ(must(store_->shed("v1", 100, 60)), 0);
  EXPECT_EQ(must(store_->shed("v2", 100, 60)), 0);
  EXPECT_EQ(claim("v1", 101, 102), 3U);
  EXPECT_EQ(claim("v2", 101, 102), 3U);  // its own now
  // A third comes up: 2 each, one from each of the others.
  EXPECT_EQ(claim("v3", 101, 102), 0U);
  EXPECT_EQ(must(store_->shed("v1", 101, 60)), 1);
  EXPECT_EQ(must(store_->shed("v2", 101, 60)), 1);
  for (const char* v : {"v1", "v2", "v3"}) {
    EXPECT_EQ(claim(v, 102, 103), 2U) << v;
    EXPECT_EQ(must(store_->shed(v, 102, 60)), 0) << v;
  }
  // A due agent is never handed over (it may be in flight): v1's are due at 103.
  EXPECT_TRUE(must(store_->claim_due("v4", 103, 60, 0)).empty());  // v4 is alive, holds 0
  EXPECT_EQ(must(store_->shed("v1", 103, 60)), 0);
  EXPECT_EQ(must(store_->shed("v1", 102, 60)), 1);  // not due yet at 102: one to v4
  EXPECT_EQ(held("v4"), 1);
  must(store_->release("v4"));           // v4 stops: its agent is free, its share gone
  EXPECT_EQ(claim("v1", 103, 200), 2U);  // its own, and the free one
  // v3 dies (its last heartbeat and leases run to 162); at 162 the others share its two.
  EXPECT_EQ(claim("v2", 103, 200), 2U);
  EXPECT_EQ(claim("v1", 161, 200), 0U);
  EXPECT_EQ(claim("v1", 162, 200), 1U);
  EXPECT_EQ(claim("v2", 162, 200), 1U);
  EXPECT_EQ(held("v1"), 3);
  EXPECT_EQ(held("v2"), 3);
  EXPECT_EQ(held("v3"), 0);
  // v2 stops cleanly: its agents and its share go to v1 at once.
  must(store_->release("v2"));
  EXPECT_EQ(must(store_->claim_due("v1", 200, 60, 10)).size(), 6U);
  EXPECT_FALSE(store_->shed("", 200, 60).ok());
  EXPECT_FALSE(store_->shed("v1", 200, 0).ok());
}

// Without its heartbeat table (a damaged database) a claim or a hand-over is an error, and
// no agent changes hands.
TEST_P(StoreTest, ClaimAndShedFailWithoutTheVerifiersTable) {
  must(store_->put_agent(make_agent("a1", 0)));
  backend_->exec("DROP TABLE verifiers");
  auto claimed = store_->claim_due("v1", 100, 60, 10);
  ASSERT_FALSE(claimed.ok());
  EXPECT_THAT(claimed.error().message(), HasSubstr("claim_due"));
  EXPECT_FALSE(store_->shed("v1", 100, 60).ok());
  EXPECT_EQ(must(store_->get_agent("a1"))->owner, "");
}

TEST_P(StoreTest, SaveAttestationWritesTheResultsTogether) {
  must(store_->put_agent(make_agent("a1", 0)));
  ASSERT_EQ(must(store_->claim_due("v1", 10, 60, 5)).size(), 1U);

  AgentRow result = make_agent("a1");
  result.url = "https://ignored:1";  // only state, status, updated_at and next_due are saved
  result.identity = {{"ignored", true}};
  result.registered_at = 999;
  result.state = {{"offset", 42}};
  result.status = "trusted";
  result.updated_at = 20;
  result.next_due = 80;
  std::vector<VerdictEvent> events = {make_event("", "affirming"), make_event("c1", "warning")};
  must(store_->save_attestation(result, "v1", {make_container("c1"), make_container("c2")}, {},
                                events));
  EXPECT_GT(events[0].id, 0);
  EXPECT_GT(events[1].id, events[0].id);
  EXPECT_EQ(events[0].agent_id, "a1");

  auto a = must(store_->get_agent("a1"));
  ASSERT_TRUE(a.has_value());
  AgentRow expected = make_agent("a1");
  expected.state = result.state;
  expected.status = "trusted";
  expected.updated_at = 20;
  expected.next_due = 80;
  expected.owner = "v1";
  expected.lease_until = 70;
  expect_agent_eq(*a, expected);

  auto containers = must(store_->list_containers("a1"));
  ASSERT_EQ(ids_of(containers), (std::vector<std::string>{"c1", "c2"}));
  EXPECT_EQ(containers[0].agent_id, "a1");
  EXPECT_EQ(containers[0].state, make_container("c1").state);
  EXPECT_EQ(containers[0].reasons, make_container("c1").reasons);
  EXPECT_EQ(containers[0].verdict, "affirming");
  EXPECT_EQ(containers[0].updated_at, 200);

  // Upsert c2, remove c1 (and a container that is not there), append one event.
  ContainerRow c2 = make_container("c2", "contraindicated");
  c2.agent_id = "a1";
  c2.updated_at = 30;
  std::vector<VerdictEvent> more = {make_event("c2", "contraindicated", 31)};
  must(store_->save_attestation(result, "v1", {c2}, {"c1", "gone"}, more));
  EXPECT_GT(more[0].id, events[1].id);
  containers = must(store_->list_containers("a1"));
  ASSERT_EQ(ids_of(containers), (std::vector<std::string>{"c2"}));
  EXPECT_EQ(containers[0].verdict, "contraindicated");
  EXPECT_EQ(containers[0].updated_at, 30);
  auto c = must(store_->get_container("a1", "c2"));
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->verdict, "contraindicated");
  EXPECT_FALSE(must(store_->get_container("a1", "c1")).has_value());

  // Without an owner the save does not look at leases; an absent agent is kNotFound.
  std::vector<VerdictEvent> none;
  must(store_->save_attestation(result, "", {}, {}, none));
  auto r = store_->save_attestation(make_agent("absent"), "", {}, {}, none);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Errc::kNotFound);
  ContainerRow foreign = make_container("c9");
  foreign.agent_id = "a2";
  r = store_->save_attestation(result, "v1", {foreign}, {}, none);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Errc::kInvalidArgument);
  EXPECT_FALSE(must(store_->get_container("a1", "c9")).has_value());
}

TEST_P(StoreTest, SaveAttestationWithALostLeaseWritesNothing) {
  must(store_->put_agent(make_agent("a1", 0)));
  save(*store_, make_agent("a1"), {make_container("c0")}, {}, {make_event("", "affirming")});
  // v1 held the lease, it expired, v2 took it over.
  ASSERT_EQ(must(store_->claim_due("v1", 10, 5, 1)).size(), 1U);
  ASSERT_EQ(must(store_->claim_due("v2", 20, 60, 1)).size(), 1U);
  const auto before = must(store_->get_agent("a1"));

  AgentRow result = make_agent("a1");
  result.state = {{"offset", 99}};
  result.status = "untrusted";
  std::vector<VerdictEvent> events = {make_event("c1", "contraindicated")};
  auto r = store_->save_attestation(result, "v1", {make_container("c1")}, {"c0"}, events);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Errc::kInvalidArgument);
  EXPECT_THAT(r.error().message(), HasSubstr("lease lost"));
  EXPECT_EQ(events[0].id, 0);
  expect_agent_eq(*must(store_->get_agent("a1")), *before);
  EXPECT_EQ(ids_of(must(store_->list_containers("a1"))), (std::vector<std::string>{"c0"}));
  EXPECT_EQ(must(store_->events("", "", 10, 0)).size(), 1U);

  // The holder may save; so may v2 after its own lease expired if nobody took it over.
  must(store_->save_attestation(result, "v2", {}, {}, events));
  EXPECT_GT(events[0].id, 0);
}

TEST_P(StoreTest, SaveAttestationRollsBackAFailureHalfWay) {
  must(store_->put_agent(make_agent("a1")));
  save(*store_, make_agent("a1"), {make_container("c0")}, {}, {});
  backend_->exec(backend_->failing_event_trigger());
  const auto before = must(store_->get_agent("a1"));

  AgentRow result = make_agent("a1");
  result.state = {{"offset", 99}};
  std::vector<VerdictEvent> events = {make_event("", "affirming"), make_event("c1", "boom")};
  auto r = store_->save_attestation(result, "", {make_container("c1")}, {"c0"}, events);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.error().message(), HasSubstr(std::string(GetParam().name) + ": save_attestation"));
  expect_agent_eq(*must(store_->get_agent("a1")), *before);
  EXPECT_EQ(ids_of(must(store_->list_containers("a1"))), (std::vector<std::string>{"c0"}));
  EXPECT_TRUE(must(store_->events("", "", 10, 0)).empty());
  EXPECT_EQ(events[0].id, 0);

  // The connection is still good afterwards.
  events.pop_back();
  must(store_->save_attestation(result, "", {make_container("c1")}, {"c0"}, events));
  EXPECT_EQ(ids_of(must(store_->list_containers("a1"))), (std::vector<std::string>{"c1"}));
}

TEST_P(StoreTest, EventsComeNewestFirstWithFiltersLimitAndPaging) {
  must(store_->put_agent(make_agent("a")));
  must(store_->put_agent(make_agent("b")));
  // (agent, container) in the order they happen.
  const std::vector<std::pair<std::string, std::string>> order = {
      {"a", ""},   {"a", "c1"}, {"b", "c1"}, {"a", "c2"}, {"b", ""},
      {"a", "c1"}, {"b", "c2"}, {"a", ""},   {"b", "c1"}, {"a", "c1"}};
  std::vector<std::int64_t> ids;
  for (std::size_t i = 0; i < order.size(); ++i) {
    std::vector<VerdictEvent> e = {
        make_event(order[i].second, "warning", static_cast<std::int64_t>(i))};
    must(store_->save_attestation(make_agent(order[i].first), "", {}, {}, e));
    ids.push_back(e[0].id);
  }
  auto all = must(store_->events("", "", 100, 0));
  ASSERT_EQ(all.size(), order.size());
  for (std::size_t i = 0; i < all.size(); ++i) {
    const std::size_t k = order.size() - 1 - i;
    EXPECT_EQ(all[i].id, ids[k]);
    EXPECT_EQ(all[i].agent_id, order[k].first);
    EXPECT_EQ(all[i].container_id, order[k].second);
    EXPECT_EQ(all[i].time, static_cast<std::int64_t>(k));
    EXPECT_EQ(all[i].verdict, "warning");
    EXPECT_EQ(all[i].reasons, make_event(order[k].second, "warning").reasons);
    EXPECT_EQ(all[i].ear, make_event("", "").ear);
  }
  auto count = [&](const std::string& agent, const std::string& container) {
    auto got = must(store_->events(agent, container, 100, 0));
    for (const VerdictEvent& e : got) {
      if (!agent.empty()) {
        EXPECT_EQ(e.agent_id, agent);
      }
      if (!container.empty()) {
        EXPECT_EQ(e.container_id, container);
      }
    }
    EXPECT_TRUE(std::is_sorted(got.begin(), got.end(),
                               [](const auto& x, const auto& y) { return x.id > y.id; }));
    return got.size();
  };
  EXPECT_EQ(count("a", ""), 6U);
  EXPECT_EQ(count("b", ""), 4U);
  EXPECT_EQ(count("a", "c1"), 3U);
  EXPECT_EQ(count("", "c1"), 5U);
  EXPECT_EQ(count("c", ""), 0U);

  auto newest = must(store_->events("", "", 3, 0));
  ASSERT_EQ(newest.size(), 3U);
  EXPECT_EQ(newest[0].id, ids.back());
  EXPECT_TRUE(must(store_->events("", "", 0, 0)).empty());

  // Paging back three at a time visits everything once, in order.
  std::vector<std::int64_t> paged;
  for (std::int64_t before = 0;;) {
    auto page = must(store_->events("a", "", 3, before));
    if (page.empty()) break;
    for (const VerdictEvent& e : page) paged.push_back(e.id);
    before = page.back().id;
  }
  std::vector<std::int64_t> expected;
  for (const VerdictEvent& e : all) {
    if (e.agent_id == "a") expected.push_back(e.id);
  }
  EXPECT_EQ(paged, expected);
}

TEST_P(StoreTest, PoliciesKeepEverySerialAndRefuseADigestClash) {
  must(store_->put_policy(make_policy("app", 1, "sha256:01")));
  must(store_->put_policy(make_policy("app", 3, "sha256:03")));
  must(store_->put_policy(make_policy("app", 2, "sha256:02")));
  must(store_->put_policy(make_policy("base", 7, "sha256:07")));

  auto latest = must(store_->get_policy("app"));
  ASSERT_TRUE(latest.has_value());
  PolicyRow want = make_policy("app", 3, "sha256:03");
  EXPECT_EQ(latest->serial, 3U);
  EXPECT_EQ(latest->digest, want.digest);
  EXPECT_EQ(latest->document, want.document);
  EXPECT_EQ(latest->signer, want.signer);
  EXPECT_EQ(latest->added_at, want.added_at);
  EXPECT_FALSE(must(store_->get_policy("absent")).has_value());

  auto old = must(store_->get_policy_by_digest("sha256:01"));
  ASSERT_TRUE(old.has_value());
  EXPECT_EQ(old->name, "app");
  EXPECT_EQ(old->serial, 1U);
  EXPECT_FALSE(must(store_->get_policy_by_digest("sha256:ff")).has_value());

  auto list = must(store_->list_policies());
  ASSERT_EQ(list.size(), 2U);
  EXPECT_EQ(list[0].name, "app");
  EXPECT_EQ(list[0].serial, 3U);
  EXPECT_EQ(list[1].name, "base");

  // The same (name, serial, digest) again is a no-op; another digest is refused.
  must(store_->put_policy(make_policy("app", 2, "sha256:02")));
  auto r = store_->put_policy(make_policy("app", 2, "sha256:99"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Errc::kInvalidArgument);
  EXPECT_THAT(r.error().message(), HasSubstr("sha256:02"));
  EXPECT_FALSE(must(store_->get_policy_by_digest("sha256:99")).has_value());

  const std::uint64_t top = std::numeric_limits<std::int64_t>::max();
  must(store_->put_policy(make_policy("app", top, "sha256:top")));
  EXPECT_EQ(must(store_->get_policy("app"))->serial, top);
  EXPECT_FALSE(store_->put_policy(make_policy("app", top + 1, "sha256:x")).ok());
  EXPECT_FALSE(store_->put_policy(make_policy("", 1, "sha256:x")).ok());
}

TEST_P(StoreTest, MappingsAreUniquePerKindAndKey) {
  must(store_->put_mapping({"image", "sha256:aa", "app"}));
  must(store_->put_mapping({"container", "sha256:aa", "other"}));
  must(store_->put_mapping({"image", "sha256:aa", "app2"}));  // replaces
  must(store_->put_mapping({"image", "sha256:00", "app"}));
  auto list = must(store_->list_mappings());
  ASSERT_EQ(list.size(), 3U);
  EXPECT_EQ(list[0].kind, "container");
  EXPECT_EQ(list[1].kind, "image");
  EXPECT_EQ(list[1].key, "sha256:00");
  EXPECT_EQ(list[2].key, "sha256:aa");
  EXPECT_EQ(list[2].policy, "app2");
  EXPECT_TRUE(must(store_->delete_mapping("image", "sha256:aa")));
  EXPECT_FALSE(must(store_->delete_mapping("image", "sha256:aa")));
  EXPECT_EQ(must(store_->list_mappings()).size(), 2U);
  auto r = store_->put_mapping({"pod", "x", "app"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Errc::kInvalidArgument);
  EXPECT_FALSE(store_->put_mapping({"image", "", "app"}).ok());
  EXPECT_FALSE(store_->put_mapping({"image", "k\n", "app"}).ok());
}

TEST_P(StoreTest, DeletingAPolicyTakesEverySerialAndItsMappings) {
  must(store_->put_policy(make_policy("app", 1, "sha256:01")));
  must(store_->put_policy(make_policy("app", 2, "sha256:02")));
  must(store_->put_policy(make_policy("keep", 1, "sha256:k1")));
  must(store_->put_mapping({"image", "i1", "app"}));
  must(store_->put_mapping({"container", "c1", "app"}));
  must(store_->put_mapping({"image", "i2", "keep"}));
  EXPECT_TRUE(must(store_->delete_policy("app")));
  EXPECT_FALSE(must(store_->get_policy("app")).has_value());
  EXPECT_FALSE(must(store_->get_policy_by_digest("sha256:01")).has_value());
  auto mappings = must(store_->list_mappings());
  ASSERT_EQ(mappings.size(), 1U);
  EXPECT_EQ(mappings[0].policy, "keep");
  EXPECT_FALSE(must(store_->delete_policy("app")));
  EXPECT_EQ(must(store_->list_policies()).size(), 1U);
}

TEST_P(StoreTest, DamagedJsonIsAFormatErrorNamingTheRow) {
  must(store_->put_agent(make_agent("a1")));
  save(*store_, make_agent("a1"), {make_container("c1")}, {}, {make_event("c1", "warning")});
  backend_->exec("UPDATE agents SET state = '{\"offset\":' WHERE id = 'a1'");
  auto names_the_row = [](const Error& e) {
    EXPECT_EQ(e.code(), Errc::kFormat);
    EXPECT_THAT(e.message(), HasSubstr("agent \"a1\""));
    EXPECT_THAT(e.message(), HasSubstr("column state"));
  };
  auto one = store_->get_agent("a1");
  ASSERT_FALSE(one.ok());
  names_the_row(one.error());
  auto all = store_->list_agents();
  ASSERT_FALSE(all.ok());
  names_the_row(all.error());
  backend_->exec("UPDATE agents SET state = '{}' WHERE id = 'a1'");
  EXPECT_TRUE(store_->get_agent("a1").ok());

  backend_->exec("UPDATE containers SET reasons = '[1,' WHERE container_id = 'c1'");
  auto c = store_->list_containers("a1");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code(), Errc::kFormat);
  EXPECT_THAT(c.error().message(), HasSubstr("container \"c1\""));

  // Duplicate keys are refused too: two readers must not see different values.
  backend_->exec(R"(UPDATE events SET reasons = '{"a":1,"a":2}')");
  auto e = store_->events("", "", 10, 0);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.error().code(), Errc::kFormat);
  EXPECT_THAT(e.error().message(), HasSubstr("column reasons"));
}

TEST_P(StoreTest, ConcurrentUseFromEightThreads) {
  store_.reset();
  StoreOptions options;
  options.pool_size = 3;
  store_ = must(open(options));
  constexpr int kThreads = 8;
  constexpr int kAgents = 20;
  std::mutex mu;
  std::map<std::string, std::string> claimed_by;  // agent -> owner
  std::atomic<int> failures{0};
  auto worker = [&](int t) {
    try {
      const std::string owner = "v" + std::to_string(t);
      for (int i = 0; i < kAgents; ++i) {
        const std::string id = "t" + std::to_string(t) + "-" + std::to_string(i);
        must(store_->put_agent(make_agent(id, 0)));
        std::vector<VerdictEvent> events = {make_event("c1", "affirming")};
        must(store_->save_attestation(make_agent(id, 0), "",
                                      {make_container("c1"), make_container("c2")}, {}, events));
        if (must(store_->list_containers(id)).size() != 2) ++failures;
        if (must(store_->events(id, "", 10, 0)).size() != 1) ++failures;
        for (const AgentRow& a : must(store_->claim_due(owner, 100, 3600, 3))) {
          std::lock_guard lock(mu);
          auto [it, inserted] = claimed_by.emplace(a.id, owner);
          if (!inserted && it->second != owner) ++failures;
        }
        (void)must(store_->list_agents());
      }
    } catch (const std::exception& e) {
      ++failures;
      std::lock_guard lock(mu);
      ADD_FAILURE() << "thread " << t << ": " << e.what();
    }
  };
  // All eight are alive from the start, so that their shares (ceil(agents / 8)) are known
  // while they claim.
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_TRUE(must(store_->claim_due("v" + std::to_string(t), 100, 3600, 0)).empty());
  }
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) threads.emplace_back(worker, t);
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(must(store_->list_agents()).size(), std::size_t{kThreads} * kAgents);
  EXPECT_EQ(must(store_->events("", "", 1000, 0)).size(), std::size_t{kThreads} * kAgents);
}

// Two "verifiers" (stores of their own) with four threads each claim the same agents and
// save each one's attestation (which moves next_due past `now`), as the verifier loop does:
// while the leases hold, no agent is handed out twice, and every agent is handed out.
TEST_P(StoreTest, TwoStoresNeverHandOutTheSameAgent) {
  constexpr int kAgents = 300;
  constexpr std::int64_t kNow = 1000;
  for (int i = 0; i < kAgents; ++i) must(store_->put_agent(make_agent("a" + std::to_string(i), i)));
  auto second = must(open());
  Store* stores[2] = {store_.get(), second.get()};
  std::mutex mu;
  std::map<std::string, std::vector<std::string>> owners_of;
  std::atomic<int> errors{0};
  // All eight are alive from the start: each may take up to ceil(300 / 8) = 38.
  for (int v = 0; v < 2; ++v) {
    for (int t = 0; t < 4; ++t) {
      const std::string owner = "verifier" + std::to_string(v) + "-" + std::to_string(t);
      EXPECT_TRUE(must(store_->claim_due(owner, kNow, 3600, 0)).empty());
    }
  }
  std::vector<std::thread> threads;
  threads.reserve(8);
  for (int s = 0; s < 2; ++s) {
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, s, t] {
        const std::string owner = "verifier" + std::to_string(s) + "-" + std::to_string(t);
        try {
          for (;;) {
            auto got = must(stores[s]->claim_due(owner, kNow, 3600, 7));
            if (got.empty()) return;
            {
              std::lock_guard lock(mu);
              for (const AgentRow& a : got) owners_of[a.id].push_back(owner);
            }
            for (AgentRow& a : got) {
              a.next_due = kNow + 60;
              a.status = "trusted";
              std::vector<VerdictEvent> events;
              must(stores[s]->save_attestation(a, owner, {}, {}, events));
            }
          }
        } catch (const std::exception& e) {
          ++errors;
          std::lock_guard lock(mu);
          ADD_FAILURE() << owner << ": " << e.what();
        }
      });
    }
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(owners_of.size(), std::size_t{kAgents});
  for (const auto& [id, owners] : owners_of) EXPECT_EQ(owners.size(), 1U) << id;
  // Once they are due again and the leases expired, another verifier takes them all.
  EXPECT_EQ(must(second->claim_due("late", kNow + 3600, 60, kAgents + 1)).size(),
            std::size_t{kAgents});
}

// Not a benchmark: a rough number for the report, no assertion on time.
TEST_P(StoreTest, TimesAThousandSaveAttestations) {
  constexpr int kCalls = 1000;
  constexpr int kContainers = 10;
  must(store_->put_agent(make_agent("a1", 0)));
  ASSERT_EQ(must(store_->claim_due("v1", 0, 3600, 1)).size(), 1U);
  std::vector<ContainerRow> containers;
  containers.reserve(kContainers);
  for (int c = 0; c < kContainers; ++c)
    containers.push_back(make_container("c" + std::to_string(c)));
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kCalls; ++i) {
    AgentRow a = make_agent("a1", i);
    a.state = {{"offset", i}};
    for (ContainerRow& c : containers) c.updated_at = i;
    std::vector<VerdictEvent> events = {
        make_event("c" + std::to_string(i % kContainers), "warning")};
    must(store_->save_attestation(a, "v1", containers, {}, events));
  }
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - start)
                      .count();
  std::cout << "[ timing ] " << GetParam().name << ": " << kCalls << " save_attestation calls ("
            << kContainers << " containers, 1 event each): " << ms << " ms\n";
  EXPECT_EQ(must(store_->events("a1", "", 2000, 0)).size(), std::size_t{kCalls});
}

}  // namespace ctrust::store::test
