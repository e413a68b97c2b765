// The SQLite backend: one connection, guarded by a mutex, with its prepared statements.
//
// One connection is enough: SQLite runs one writer at a time anyway, and the verifier's
// reads are short. Other processes on the same file are kept in step by WAL mode, a busy
// timeout and write transactions that take the lock up front (BEGIN IMMEDIATE), so they wait
// instead of failing half way.
#include <fcntl.h>
#include <sqlite3.h>

#include <array>
#include <charconv>
#include <mutex>

#include "store/sql.h"
#include "util/text.h"
#include "util/unique_handle.h"

namespace ctrust::store::detail {
namespace {

constexpr int kBusyTimeoutMs = 10000;
// STRICT tables need 3.37 (RETURNING 3.35).
constexpr int kMinSqliteVersion = 3037000;

struct SqliteTraits {
  using Value = sqlite3*;
  static constexpr sqlite3* invalid() { return nullptr; }
  static void release(sqlite3* db) { sqlite3_close_v2(db); }
};
using SqliteHandle = UniqueHandle<SqliteTraits>;

struct StatementTraits {
  using Value = sqlite3_stmt*;
  static constexpr sqlite3_stmt* invalid() { return nullptr; }
  static void release(sqlite3_stmt* stmt) { sqlite3_finalize(stmt); }
};
using StatementHandle = UniqueHandle<StatementTraits>;

Error sqlite_error(sqlite3* db, int rc, const std::string& what) {
  std::string message = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  Errc code = Errc::kIo;
  switch (rc & 0xff) {
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      code = Errc::kFormat;
      break;
    case SQLITE_CONSTRAINT:
    case SQLITE_MISMATCH:
    case SQLITE_TOOBIG:
      code = Errc::kInvalidArgument;
      break;
    default:
      break;
  }
  return Error(code, what + ": " + message, rc);
}

class SqliteConnection final : public Connection {
 public:
  explicit SqliteConnection(SqliteHandle db) : db_(std::move(db)) {}

  Result<std::vector<Row>> query(Stmt stmt, std::span<const Param> params) override {
    std::vector<Row> rows;
    CTRUST_TRY(run(stmt, params, &rows));
    return rows;
  }

  Result<std::int64_t> execute(Stmt stmt, std::span<const Param> params) override {
    CTRUST_TRY(run(stmt, params, nullptr));
    return static_cast<std::int64_t>(sqlite3_changes64(db_.get()));
  }

  Result<void> run_script(std::string_view sql) override {
    std::string text(sql);
    int rc = sqlite3_exec(db_.get(), text.c_str(), nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) return sqlite_error(db_.get(), rc, "running SQL");
    return ok_result();
  }

  Result<void> begin() override { return run_script("BEGIN IMMEDIATE"); }
  Result<void> commit() override { return run_script("COMMIT"); }
  Result<void> rollback() override {
    // A failed statement may already have rolled the transaction back.
    if (sqlite3_get_autocommit(db_.get()) != 0) return ok_result();
    return run_script("ROLLBACK");
  }

 private:
  struct Prepared {
    StatementHandle stmt;
    std::vector<std::size_t> param_of;  // [bind index - 1] -> index into the params
  };

  // Resets the statement and drops its bindings (which point into the caller's params).
  class ResetGuard {
   public:
    explicit ResetGuard(sqlite3_stmt* stmt) : stmt_(stmt) {}
    ResetGuard(const ResetGuard&) = delete;
    ResetGuard& operator=(const ResetGuard&) = delete;
    ~ResetGuard() {
      sqlite3_reset(stmt_);
      sqlite3_clear_bindings(stmt_);
    }

   private:
    sqlite3_stmt* stmt_;
  };

  Result<Prepared*> prepare(Stmt stmt) {
    Prepared& p = cache_[static_cast<std::size_t>(stmt)];
    if (p.stmt) return &p;
    std::string_view sql = statement_sql(stmt, Dialect::kSqlite);
    sqlite3_stmt* raw = nullptr;
    int rc = sqlite3_prepare_v3(db_.get(), sql.data(), static_cast<int>(sql.size()),
                                SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
    StatementHandle handle(raw);
    if (rc != SQLITE_OK) return sqlite_error(db_.get(), rc, "preparing a statement");
    // $N are named parameters to SQLite, numbered in order of first use: map them back.
    std::vector<std::size_t> param_of;
    int count = sqlite3_bind_parameter_count(raw);
    for (int i = 1; i <= count; ++i) {
      const char* name = sqlite3_bind_parameter_name(raw, i);
      std::string_view n = name != nullptr ? name : "";
      std::size_t number = 0;
      if (n.size() < 2 || n[0] != '$' ||
          std::from_chars(n.data() + 1, n.data() + n.size(), number).ec != std::errc() ||
          number == 0) {
        return Error(Errc::kInternal, "statement parameter " + printable(n) + " is not $N");
      }
      param_of.push_back(number - 1);
    }
    p.stmt = std::move(handle);
    p.param_of = std::move(param_of);
    return &p;
  }

  Result<void> run(Stmt stmt, std::span<const Param> params, std::vector<Row>* rows) {
    CTRUST_ASSIGN_OR_RETURN(Prepared * p, prepare(stmt));
    sqlite3_stmt* s = p->stmt.get();
    ResetGuard guard(s);
    for (std::size_t i = 0; i < p->param_of.size(); ++i) {
      if (p->param_of[i] >= params.size()) {
        return Error(Errc::kInternal, "statement needs more parameters than were given");
      }
      const Param& param = params[p->param_of[i]];
      const int index = static_cast<int>(i + 1);
      int rc = SQLITE_OK;
      if (const auto* v = std::get_if<std::int64_t>(&param)) {
        rc = sqlite3_bind_int64(s, index, *v);
      } else {
        std::string_view text = std::get<std::string_view>(param);
        // A null pointer would bind NULL; the destructor nullptr is SQLITE_STATIC (the text
        // outlives the statement's use, and the guard clears the bindings).
        const char* data = text.data() != nullptr ? text.data() : "";
        rc = sqlite3_bind_text64(s, index, data, text.size(), nullptr, SQLITE_UTF8);
      }
      if (rc != SQLITE_OK) return sqlite_error(db_.get(), rc, "binding a parameter");
    }
    for (;;) {
      int rc = sqlite3_step(s);
      if (rc == SQLITE_DONE) return ok_result();
      if (rc != SQLITE_ROW) return sqlite_error(db_.get(), rc, "running a statement");
      if (rows == nullptr) continue;
      const int columns = sqlite3_column_count(s);
      Row row;
      row.reserve(static_cast<std::size_t>(columns));
      for (int c = 0; c < columns; ++c) {
        switch (sqlite3_column_type(s, c)) {
          case SQLITE_NULL:
            row.emplace_back(std::monostate());
            break;
          case SQLITE_INTEGER:
            row.emplace_back(static_cast<std::int64_t>(sqlite3_column_int64(s, c)));
            break;
          default: {
            const auto* text = sqlite3_column_text(s, c);
            const int size = sqlite3_column_bytes(s, c);
            row.emplace_back(text != nullptr ? std::string(reinterpret_cast<const char*>(text),
                                                           static_cast<std::size_t>(size))
                                             : std::string());
            break;
          }
        }
      }
      rows->push_back(std::move(row));
    }
  }

  SqliteHandle db_;
  std::array<Prepared, kStmtCount> cache_;
};

class SqliteDatabase final : public Database {
 public:
  explicit SqliteDatabase(SqliteHandle db) : connection_(std::move(db)) {}

  std::string_view backend() const override { return "sqlite"; }
  Dialect dialect() const override { return Dialect::kSqlite; }

  Result<void> with_connection(const std::function<Result<void>(Connection&)>& fn) override {
    std::lock_guard lock(mu_);
    return fn(connection_);
  }

 private:
  std::mutex mu_;
  SqliteConnection connection_;
};

// The single text value a PRAGMA returns.
Result<std::string> pragma_text(sqlite3* db, const char* sql, const std::string& where) {
  sqlite3_stmt* raw = nullptr;
  int rc = sqlite3_prepare_v2(db, sql, -1, &raw, nullptr);
  StatementHandle stmt(raw);
  if (rc != SQLITE_OK) return sqlite_error(db, rc, where + ": " + sql);
  rc = sqlite3_step(raw);
  if (rc != SQLITE_ROW) return sqlite_error(db, rc, where + ": " + sql);
  const auto* text = sqlite3_column_text(raw, 0);
  return std::string(text != nullptr ? reinterpret_cast<const char*>(text) : "");
}

}  // namespace

Result<std::unique_ptr<Database>> open_sqlite(const std::string& path) {
  if (sqlite3_libversion_number() < kMinSqliteVersion) {
    return Error(Errc::kUnsupported, std::string("sqlite: SQLite 3.37 or newer is needed, have ") +
                                         sqlite3_libversion());
  }
  const bool memory = path == ":memory:";
  const std::string where = "sqlite: " + (memory ? path : printable(path, 256));
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
  if (memory) {
    flags |= SQLITE_OPEN_MEMORY;
  } else {
    // Created here so that it is private from the start; SQLite gives the -wal and -shm
    // files the mode of the database file.
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!fd) return errno_error(where + ": cannot create the database file", errno);
  }
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  SqliteHandle db(raw);
  if (rc != SQLITE_OK) return sqlite_error(raw, rc, where + ": cannot open");
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, kBusyTimeoutMs);
  CTRUST_ASSIGN_OR_RETURN(std::string mode, pragma_text(raw, "PRAGMA journal_mode = WAL", where));
  if (mode != "wal" && !(memory && mode == "memory")) {
    return Error(Errc::kUnsupported,
                 where + ": cannot use WAL mode (journal mode is " + printable(mode) + ")");
  }
  // NORMAL is safe in WAL mode: a power loss can lose the last commits, never consistency.
  for (const char* pragma : {"PRAGMA foreign_keys = ON", "PRAGMA synchronous = NORMAL"}) {
    rc = sqlite3_exec(raw, pragma, nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) return sqlite_error(raw, rc, where + ": " + pragma);
  }
  CTRUST_ASSIGN_OR_RETURN(std::string fk, pragma_text(raw, "PRAGMA foreign_keys", where));
  if (fk != "1") return Error(Errc::kUnsupported, where + ": SQLite without foreign keys");
  return std::unique_ptr<Database>(std::make_unique<SqliteDatabase>(std::move(db)));
}

}  // namespace ctrust::store::detail
