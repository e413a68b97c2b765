#include "util/unique_handle.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <vector>

namespace ctrust {
namespace {

std::vector<int>* g_released = nullptr;

struct CountingTraits {
  using Value = int;
  static constexpr int invalid() { return -1; }
  static void release(int v) { g_released->push_back(v); }
};
using Counted = UniqueHandle<CountingTraits>;

class UniqueHandleTest : public ::testing::Test {
 protected:
  void SetUp() override { g_released = &released_; }
  void TearDown() override { g_released = nullptr; }
  std::vector<int> released_;
};

TEST_F(UniqueHandleTest, ReleasesOnceOnDestruction) {
  { Counted h(7); }
  EXPECT_EQ(released_, std::vector<int>{7});
}

TEST_F(UniqueHandleTest, MoveTransfersOwnership) {
  Counted a(1);
  Counted b(std::move(a));
  EXPECT_FALSE(a.valid());  // NOLINT(bugprone-use-after-move): checking the moved-from state
  EXPECT_EQ(b.get(), 1);
  Counted c(2);
  c = std::move(b);
  EXPECT_EQ(released_, std::vector<int>{2});  // c's old value released on assignment
  EXPECT_EQ(c.get(), 1);
  c.reset();
  EXPECT_EQ(released_, (std::vector<int>{2, 1}));
}

TEST_F(UniqueHandleTest, ReleaseGivesUpOwnership) {
  Counted a(5);
  EXPECT_EQ(a.release(), 5);
  EXPECT_FALSE(a.valid());
  EXPECT_TRUE(released_.empty());
}

TEST(UniqueFd, ClosesTheDescriptor) {
  int raw = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(raw, 0);
  { UniqueFd fd(raw); }
  EXPECT_EQ(::fcntl(raw, F_GETFD), -1);
  EXPECT_EQ(errno, EBADF);
}

}  // namespace
}  // namespace ctrust
