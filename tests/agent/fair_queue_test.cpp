// The agent's job queue: fair between containers, bounded per container. Plain threads,
// no kernel.
#include "agent/fair_queue.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace ctrust::agent {
namespace {

TEST(FairQueueTest, OwnersTakeTurnsAndEachKeepsItsOrder) {
  FairQueue<int> q(8);
  for (int i = 0; i < 3; ++i) q.push(1, 10 + i);
  q.push(2, 20);
  q.push(2, 21);
  std::vector<std::pair<std::uint64_t, int>> got;
  for (int i = 0; i < 5; ++i) {
    auto j = q.pop();
    ASSERT_TRUE(j);
    got.push_back(*j);
    q.done(j->first);
  }
  std::vector<std::pair<std::uint64_t, int>> want = {{1, 10}, {2, 20}, {1, 11}, {2, 21}, {1, 12}};
  EXPECT_EQ(got, want);
}

TEST(FairQueueTest, AnOwnerAtItsLimitLeavesTheWorkerToOthers) {
  FairQueue<int> q(1);
  q.push(1, 1);
  q.push(1, 2);  // the busy container's second huge file
  q.push(2, 3);  // another container's exec
  auto a = q.pop();
  ASSERT_TRUE(a);
  EXPECT_EQ(a->second, 1);
  auto b = q.pop();  // owner 1 is at its limit: owner 2 goes first
  ASSERT_TRUE(b);
  EXPECT_EQ(b->first, 2U);
  // Owner 1's second job waits until its first is done.
  std::atomic<bool> popped{false};
  std::thread t([&] {
    auto c = q.pop();
    popped = c && c->second == 2;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(popped.load());
  q.done(1);
  t.join();
  EXPECT_TRUE(popped.load());
}

TEST(FairQueueTest, StopWakesWaitersAndClearDropsJobs) {
  FairQueue<int> q(1);
  std::thread t([&] { EXPECT_FALSE(q.pop()); });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  q.stop();
  t.join();
  q.push(3, 1);
  EXPECT_EQ(q.queued(), 1U);
  EXPECT_FALSE(q.pop());
  q.clear();
  EXPECT_EQ(q.queued(), 0U);
}

}  // namespace
}  // namespace ctrust::agent
