#include "util/hex.h"

#include <gtest/gtest.h>

namespace ctrust {
namespace {

TEST(Hex, RoundTrip) {
  Bytes b = {0x00, 0x01, 0xab, 0xff};
  EXPECT_EQ(to_hex(b), "0001abff");
  auto back = from_hex("0001ABff");
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, b);
  EXPECT_EQ(to_hex({}), "");
  EXPECT_TRUE(from_hex("")->empty());
}

TEST(Hex, RejectsOddLengthAndBadDigits) {
  EXPECT_EQ(from_hex("abc").error().code(), Errc::kFormat);
  auto bad = from_hex("00zz");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message().find("position 2"), std::string::npos);
  EXPECT_FALSE(from_hex("0g").ok());
  EXPECT_FALSE(from_hex(std::string("0\0", 2)).ok());
}

}  // namespace
}  // namespace ctrust
