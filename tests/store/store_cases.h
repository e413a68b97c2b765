// The store's test cases, written once and run against each backend.
//
// store_cases.cpp holds the TEST_P cases over StoreTest; each test binary instantiates them
// with its backend (sqlite_test.cpp, postgres_test.cpp). A TestBackend gives the cases a
// fresh database and a way around the store (raw SQL) to damage rows or fake a newer schema.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <stdexcept>
#include <string>

#include "store/store.h"

namespace ctrust::store::test {

class TestBackend {
 public:
  virtual ~TestBackend() = default;
  // Empty if the backend can be used here, else the reason it cannot.
  virtual std::string unavailable() = 0;
  // Makes the database empty (no tables).
  virtual void reset() = 0;
  virtual std::string url() const = 0;
  // Runs SQL directly, bypassing the store; a failure fails the test.
  virtual void exec(const std::string& sql) = 0;
  // SQL that makes inserting an event whose verdict is "boom" fail.
  virtual std::string failing_event_trigger() const = 0;
};

struct BackendParam {
  const char* name;  // what Store::backend() says
  std::unique_ptr<TestBackend> (*make)();
};

inline std::string PrintToString(const BackendParam& p) { return p.name; }

// The value of a Result, or an exception (which fails the test) with its message.
template <typename T>
T must(Result<T> r) {
  if (!r.ok()) throw std::runtime_error(r.error().message());
  return std::move(r).value();
}
inline void must(Result<void> r) {
  if (!r.ok()) throw std::runtime_error(r.error().message());
}

class StoreTest : public ::testing::TestWithParam<BackendParam> {
 protected:
  void SetUp() override;
  void TearDown() override;
  Result<std::unique_ptr<Store>> open(const StoreOptions& options = {}) const;

  std::unique_ptr<TestBackend> backend_;
  std::unique_ptr<Store> store_;
};

}  // namespace ctrust::store::test
