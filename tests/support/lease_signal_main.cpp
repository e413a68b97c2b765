// main() for test binaries that take digest-cache leases (agent/digest_cache.h): the lease
// signal must be blocked before GoogleTest and before any thread starts, so that every
// thread inherits the blocked mask.
#include <gtest/gtest.h>

#include <cstdio>

#include "agent/digest_cache.h"

int main(int argc, char** argv) {
  if (auto blocked = ctrust::agent::block_lease_signal(); !blocked) {
    std::fprintf(stderr, "%s\n", blocked.error().message().c_str());
    return 1;
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
