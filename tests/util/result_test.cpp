#include "util/result.h"

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include <cerrno>

namespace ctrust {
namespace {

Result<int> half(int x) {
  if (x % 2 != 0) return Error(Errc::kInvalidArgument, "odd");
  return x / 2;
}

Result<int> quarter(int x) {
  CTRUST_ASSIGN_OR_RETURN(int h, half(x));
  CTRUST_ASSIGN_OR_RETURN(int q, half(h));
  return q;
}

Result<void> check_even(int x) {
  CTRUST_TRY(half(x));
  return ok_result();
}

TEST(Result, HoldsValueOrError) {
  auto ok = half(8);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, 4);
  auto bad = half(3);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code(), Errc::kInvalidArgument);
  EXPECT_EQ(bad.error().message(), "odd");
}

TEST(Result, MacrosPropagateTheFirstError) {
  EXPECT_EQ(*quarter(8), 2);
  EXPECT_FALSE(quarter(6).ok());  // 6/2 = 3 is odd
  EXPECT_TRUE(check_even(2).ok());
  EXPECT_EQ(check_even(5).error().message(), "odd");
}

TEST(Result, ContextIsPrefixed) {
  Error e = Error(Errc::kIo, "boom").with_context("reading x");
  EXPECT_EQ(e.message(), "reading x: boom");
}

TEST(Result, ErrnoErrorCarriesNativeCode) {
  Error e = errno_error("open f", ENOENT);
  EXPECT_EQ(e.native(), ENOENT);
  EXPECT_NE(e.message().find("No such file"), std::string::npos);
}

TEST(Result, OpensslErrorDrainsTheQueue) {
  EXPECT_EQ(EVP_MD_fetch(nullptr, "NO-SUCH-DIGEST", nullptr), nullptr);
  Error e = openssl_error("fetch");
  EXPECT_EQ(e.code(), Errc::kCrypto);
  EXPECT_NE(e.native(), 0);
  EXPECT_EQ(ERR_peek_error(), 0u);
}

}  // namespace
}  // namespace ctrust
