#include "util/text.h"

#include <gtest/gtest.h>

namespace ctrust {
namespace {

TEST(Printable, EscapesEverythingButPrintableAscii) {
  EXPECT_EQ(printable("ima-ng"), "ima-ng");
  EXPECT_EQ(printable("a\x1b[31m\rb"), "a\\x1b[31m\\x0db");
  EXPECT_EQ(printable(std::string("\0\xff\\", 3)), "\\x00\\xff\\x5c");
}

TEST(Printable, CutsLongInput) {
  EXPECT_EQ(printable(std::string(100, 'a'), 4), "aaaa...");
  EXPECT_EQ(printable("abcd", 4), "abcd");
}

}  // namespace
}  // namespace ctrust
