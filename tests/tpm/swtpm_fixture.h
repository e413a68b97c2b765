// A real swtpm per test (the TPM the TPM tests talk to), in a temp directory that is
// removed afterwards. Without swtpm the tests skip outside CI and fail in CI.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>
#include <string>

#include "support/temp_dir.h"
#include "tpm/swtpm.h"
#include "tpm/tpm.h"

namespace ctrust::testing {

inline bool in_ci() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string(ci) == "true";
}

class SwtpmTest : public ::testing::Test {
 protected:
  // Starts a swtpm with state in `dir` (default: a fresh one) and returns its TCTI.
  std::string start_swtpm(const std::string& dir = "",
                          tpm::SwtpmStartup startup = tpm::SwtpmStartup::kClear) {
    tpm::SwtpmOptions options;
    options.state_dir = dir.empty() ? temp_.path() : dir;
    options.socket = options.state_dir + "/tpm.sock";
    options.startup = startup;
    auto swtpm = tpm::Swtpm::start(options);
    if (!swtpm) {
      if (swtpm.error().code() == Errc::kNotFound && !in_ci()) {
        skip_reason_ = swtpm.error().message();
        return "";
      }
      ADD_FAILURE() << swtpm.error().message();
      return "";
    }
    swtpm_ = std::move(*swtpm);
    return swtpm_->tcti();
  }

  // Opens the TPM at `tcti`; fails the test when it cannot.
  std::optional<tpm::Tpm> open(const std::string& tcti) {
    auto t = tpm::Tpm::open(tcti);
    if (!t) {
      ADD_FAILURE() << t.error().message();
      return std::nullopt;
    }
    return std::move(*t);
  }

  TempDir temp_;
  std::optional<tpm::Swtpm> swtpm_;
  std::string skip_reason_;
};

// Starts a swtpm and opens it into `tpm_var`, or skips/returns.
#define CTRUST_OPEN_SWTPM(tpm_var)                           \
  std::string tcti_##tpm_var = start_swtpm();                \
  if (tcti_##tpm_var.empty()) {                              \
    if (!skip_reason_.empty()) GTEST_SKIP() << skip_reason_; \
    return;                                                  \
  }                                                          \
  auto tpm_var##_opt = open(tcti_##tpm_var);                 \
  ASSERT_TRUE(tpm_var##_opt.has_value());                    \
  tpm::Tpm& tpm_var = *tpm_var##_opt

}  // namespace ctrust::testing
