// The store cases against SQLite in a temp dir, plus what only SQLite has (the file's mode,
// WAL), the store URLs, and the password hygiene of PostgreSQL URLs (no server needed: the
// connection is refused).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "store_cases.h"
#include "support/temp_dir.h"

namespace ctrust::store::test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class SqliteBackend final : public TestBackend {
 public:
  std::string unavailable() override { return ""; }
  void reset() override {
    for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path() + suffix);
  }
  std::string url() const override { return "sqlite:" + path(); }
  void exec(const std::string& sql) override {
    sqlite3* db = nullptr;
    int rc = sqlite3_open(path().c_str(), &db);
    if (rc == SQLITE_OK) {
      sqlite3_busy_timeout(db, 10000);
      rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
    }
    EXPECT_EQ(rc, SQLITE_OK) << sql << ": " << sqlite3_errmsg(db);
    sqlite3_close(db);
  }
  std::string failing_event_trigger() const override {
    return "CREATE TRIGGER boom BEFORE INSERT ON events WHEN NEW.verdict = 'boom'"
           " BEGIN SELECT RAISE(ABORT, 'boom'); END";
  }
  std::string path() const { return dir_.file("store.db"); }

 private:
  ctrust::testing::TempDir dir_;
};

INSTANTIATE_TEST_SUITE_P(
    Sqlite, StoreTest,
    ::testing::Values(BackendParam{
        "sqlite", [] { return std::unique_ptr<TestBackend>(std::make_unique<SqliteBackend>()); }}),
    [](const auto& param_info) { return std::string(param_info.param.name); });

TEST(SqliteStore, TheFileIsPrivateAndInWalMode) {
  ctrust::testing::TempDir dir;
  const std::string path = dir.file("v.db");
  auto store = must(open_store("sqlite:" + path));
  AgentRow a;
  a.id = "a1";
  must(store->put_agent(a));
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600U);
  ASSERT_EQ(::stat((path + "-wal").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600U);
}

TEST(SqliteStore, AcceptsItsUrlForms) {
  ctrust::testing::TempDir dir;
  auto three_slashes = open_store("sqlite://" + dir.file("a.db"));
  ASSERT_TRUE(three_slashes.ok()) << three_slashes.error().message();
  EXPECT_TRUE(std::filesystem::exists(dir.file("a.db")));
  auto memory = open_store("sqlite::memory:");
  ASSERT_TRUE(memory.ok()) << memory.error().message();
  EXPECT_EQ((*memory)->backend(), "sqlite");
  EXPECT_EQ(must((*memory)->schema_version()), kSchemaVersion);
  for (const char* bad : {"sqlite:", "sqlite://host/x.db", "mysql://x", "", "/tmp/x.db"}) {
    auto r = open_store(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code(), Errc::kInvalidArgument) << bad;
  }
}

TEST(SqliteStore, AFileThatIsNotADatabaseIsRefused) {
  ctrust::testing::TempDir dir;
  const std::string path = dir.file("junk.db");
  std::ofstream(path) << std::string(4096, 'x');
  auto r = open_store("sqlite:" + path);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Errc::kFormat);
  EXPECT_THAT(r.error().message(), HasSubstr(path));
  auto missing_dir = open_store("sqlite:" + dir.file("no/such/dir.db"));
  ASSERT_FALSE(missing_dir.ok());
  EXPECT_EQ(missing_dir.error().code(), Errc::kIo);
}

TEST(StoreUrl, RedactsPasswords) {
  EXPECT_EQ(redact_url("postgresql://alice:s3cret@db:5432/ctrust"),
            "postgresql://alice:***@db:5432/ctrust");
  EXPECT_EQ(redact_url("postgres://alice:p@ss@db/x"), "postgres://alice:***@db/x");
  EXPECT_EQ(redact_url("postgresql://db/x?user=a&password=pw&sslmode=require"),
            "postgresql://db/x?user=a&password=***&sslmode=require");
  EXPECT_EQ(redact_url("postgresql://alice@db/x"), "postgresql://alice@db/x");
  EXPECT_EQ(redact_url("postgresql://db:5432,db2:5433/x"), "postgresql://db:5432,db2:5433/x");
  EXPECT_EQ(redact_url("postgresql://alice:oops/x"), "postgresql://alice:***/x");
  EXPECT_EQ(redact_url("host=db password=pw user=a"), "host=db password=*** user=a");
  EXPECT_EQ(redact_url("sqlite:/var/lib/ctrust/v.db"), "sqlite:/var/lib/ctrust/v.db");
}

TEST(StoreUrl, PostgresErrorsNeverCarryThePassword) {
  for (const std::string url :
       {"postgresql://alice:s3cret-pw@127.0.0.1:1/ctrust",
        "postgres://alice@127.0.0.1:1/ctrust?password=an0ther-pw&connect_timeout=2",
        "postgresql://alice:p%40ss-w0rd@127.0.0.1:1/ctrust",
        "postgresql://alice:bad-p0rt-pw/ctrust"}) {
    auto r = open_store(url);
    ASSERT_FALSE(r.ok()) << redact_url(url);
    const std::string& m = r.error().message();
    EXPECT_THAT(m, HasSubstr("postgresql"));
    for (const char* secret :
         {"s3cret-pw", "an0ther-pw", "p%40ss-w0rd", "p@ss-w0rd", "bad-p0rt-pw"}) {
      EXPECT_THAT(m, Not(HasSubstr(secret))) << m;
    }
    if (!have_postgres()) {
      EXPECT_EQ(r.error().code(), Errc::kUnsupported);
    }
  }
  if (have_postgres()) {
    StoreOptions none;
    none.pool_size = 0;
    auto r = open_store("postgresql://127.0.0.1:1/x", none);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code(), Errc::kInvalidArgument);
  }
}

}  // namespace
}  // namespace ctrust::store::test
