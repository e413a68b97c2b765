// Internal to ctrust_store: the small SQL layer both backends implement.
//
// SqlStore (sql_store.cpp) holds all the store's logic once, over a Database that lends out
// Connections. A Connection runs numbered statements (Stmt) whose text comes from sql.cpp,
// one dialect per backend, with parameters bound by position ($1, $2, ...) and never spliced
// into the text. Rows come back as cells (NULL, integer or text), so the decoding and its
// checks on damaged data live in one place too.
//
// Threading: a Database is shared by all threads; a Connection is used by one thread at a
// time, only inside Database::with_connection.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "store/store.h"
#include "util/result.h"

namespace ctrust::store::detail {

enum class Dialect : std::uint8_t { kSqlite, kPostgres };

enum class Stmt : std::uint8_t {
  kLockSchema,  // serialises migrations between processes (PostgreSQL advisory lock)
  kGetVersion,
  kInsertVersion,
  kSetVersion,
  kPutAgent,
  kGetAgent,
  kListAgents,
  kDeleteAgent,
  kAgentExists,
  kClaimOwn,
  kClaimFree,
  kRelease,
  kHeartbeat,
  kForgetVerifier,
  kForgetStaleVerifiers,
  kShare,
  kHandOver,
  kUpdateAgentResult,
  kPutContainer,
  kDeleteContainer,
  kListContainers,
  kGetContainer,
  kInsertEvent,
  kEventsAny,
  kEventsAgent,
  kEventsContainer,
  kEventsAgentContainer,
  kInsertPolicy,
  kPolicyDigest,
  kGetPolicy,
  kGetPolicyByDigest,
  kListPolicies,
  kDeletePolicy,
  kDeletePolicyMappings,
  kPutMapping,
  kDeleteMapping,
  kListMappings,
  kCount,  // not a statement: the number of them
};
inline constexpr std::size_t kStmtCount = static_cast<std::size_t>(Stmt::kCount);

// The text of `stmt` in `dialect`; parameters are written $1, $2, ...
std::string_view statement_sql(Stmt stmt, Dialect dialect);
// Creates the schema_version table if missing (run inside the migration transaction).
std::string_view version_table_sql(Dialect dialect);
// migrations(d)[i] takes the schema from version i to i + 1.
std::span<const std::string_view> migrations(Dialect dialect);

// A statement parameter; the text must outlive the call.
using Param = std::variant<std::int64_t, std::string_view>;
// A result cell: NULL, an integer or text (anything else is returned as its text).
using Cell = std::variant<std::monostate, std::int64_t, std::string>;
using Row = std::vector<Cell>;

class Connection {
 public:
  virtual ~Connection() = default;
  // Runs `stmt` and returns its rows (none for a statement without RETURNING).
  virtual Result<std::vector<Row>> query(Stmt stmt, std::span<const Param> params) = 0;
  // Runs `stmt` and returns the number of rows it changed.
  virtual Result<std::int64_t> execute(Stmt stmt, std::span<const Param> params) = 0;
  // Runs constant SQL text without parameters (migrations), possibly several statements.
  virtual Result<void> run_script(std::string_view sql) = 0;
  // A write transaction (SQLite: BEGIN IMMEDIATE, so that it cannot fail later on a lock).
  virtual Result<void> begin() = 0;
  virtual Result<void> commit() = 0;
  virtual Result<void> rollback() = 0;
};

class Database {
 public:
  virtual ~Database() = default;
  virtual std::string_view backend() const = 0;
  virtual Dialect dialect() const = 0;
  // Calls `fn` with a connection that no other thread uses until `fn` returns.
  virtual Result<void> with_connection(const std::function<Result<void>(Connection&)>& fn) = 0;
};

// "/path/file.db" or ":memory:".
Result<std::unique_ptr<Database>> open_sqlite(const std::string& path);
// A libpq URL; connects once at open to report a bad URL or server right away.
Result<std::unique_ptr<Database>> open_postgres(const std::string& url, std::size_t pool_size);

// The Store over `db`, after running the migrations.
Result<std::unique_ptr<Store>> make_sql_store(std::unique_ptr<Database> db);

// The passwords a libpq URL carries, as written and percent-decoded, to scrub from messages.
std::vector<std::string> url_secrets(std::string_view url);
// `message` with every occurrence of each secret replaced by "***".
std::string scrub(std::string message, std::span<const std::string> secrets);

}  // namespace ctrust::store::detail
