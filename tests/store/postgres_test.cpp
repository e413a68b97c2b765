// The store cases against a real PostgreSQL server: the one run_pg_test.sh starts, found
// through CTRUST_TEST_PG_URL. Without it the cases skip, or fail when CI=true. Each case
// starts from an empty public schema.
#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <cstdlib>

#include "store_cases.h"

namespace ctrust::store::test {
namespace {

class PostgresBackend final : public TestBackend {
 public:
  PostgresBackend() {
    const char* url = std::getenv("CTRUST_TEST_PG_URL");
    url_ = url != nullptr ? url : "";
  }
  std::string unavailable() override {
    if (url_.empty()) return "CTRUST_TEST_PG_URL is not set (tests/store/run_pg_test.sh sets it)";
    return "";
  }
  void reset() override { exec("DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public"); }
  std::string url() const override { return url_; }
  void exec(const std::string& sql) override {
    PGconn* conn = PQconnectdb(url_.c_str());
    if (PQstatus(conn) != CONNECTION_OK) {
      ADD_FAILURE() << "cannot connect: " << PQerrorMessage(conn);
    } else {
      PQsetNoticeProcessor(
          conn, [](void*, const char*) {}, nullptr);
      PGresult* res = PQexec(conn, sql.c_str());
      ExecStatusType status = PQresultStatus(res);
      EXPECT_TRUE(status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK)
          << sql << ": " << PQerrorMessage(conn);
      PQclear(res);
    }
    PQfinish(conn);
  }
  std::string failing_event_trigger() const override {
    return "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
           " IF NEW.verdict = 'boom' THEN RAISE EXCEPTION 'boom'; END IF; RETURN NEW; END $$;"
           " CREATE TRIGGER boom BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION boom()";
  }

 private:
  std::string url_;
};

INSTANTIATE_TEST_SUITE_P(Postgres, StoreTest,
                         ::testing::Values(BackendParam{"postgresql",
                                                        [] {
                                                          return std::unique_ptr<TestBackend>(
                                                              std::make_unique<PostgresBackend>());
                                                        }}),
                         [](const auto& param_info) { return std::string(param_info.param.name); });

}  // namespace
}  // namespace ctrust::store::test
