// The PostgreSQL backend: a pool of libpq connections, each with its prepared statements.
//
// Connections are opened on demand up to the pool size and handed to one thread at a time;
// a connection that broke (server restart, network) or was left inside a transaction is
// closed on return and replaced by the next caller. Parameters go in binary form (the types
// are declared when the statement is prepared: int8 and text), results come back as text.
// Every message from libpq passes through scrub() with the URL's passwords, and the URL is
// only ever shown redacted.
#include <libpq-fe.h>

#include <array>
#include <charconv>
#include <climits>
#include <condition_variable>
#include <mutex>

#include "store/sql.h"
#include "util/text.h"
#include "util/unique_handle.h"

namespace ctrust::store::detail {
namespace {

// pg_type OIDs (stable since forever; catalog/pg_type_d.h is a server header).
constexpr Oid kInt2Oid = 21;
constexpr Oid kInt4Oid = 23;
constexpr Oid kInt8Oid = 20;
constexpr Oid kTextOid = 25;

struct ConnTraits {
  using Value = PGconn*;
  static constexpr PGconn* invalid() { return nullptr; }
  static void release(PGconn* conn) { PQfinish(conn); }
};
using ConnHandle = UniqueHandle<ConnTraits>;

struct ResultTraits {
  using Value = PGresult*;
  static constexpr PGresult* invalid() { return nullptr; }
  static void release(PGresult* res) { PQclear(res); }
};
using ResultHandle = UniqueHandle<ResultTraits>;

void ignore_notice(void* /*arg*/, const char* /*message*/) {}

// libpq messages end in newlines and may span lines: one line for an Error.
std::string one_line(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '\n' || c == '\r') {
      if (!out.empty() && out.back() != ' ') out += "; ";
    } else {
      out.push_back(c);
    }
  }
  while (!out.empty() && (out.back() == ' ' || out.back() == ';')) out.pop_back();
  return out;
}

std::string statement_name(Stmt stmt) { return "ctrust_" + std::to_string(static_cast<int>(stmt)); }

class PgConnection final : public Connection {
 public:
  PgConnection(ConnHandle conn, const std::vector<std::string>& secrets)
      : conn_(std::move(conn)), secrets_(secrets) {}

  // Fit to go back into the pool: connected, and not left inside a transaction.
  bool reusable() const {
    return PQstatus(conn_.get()) == CONNECTION_OK &&
           PQtransactionStatus(conn_.get()) == PQTRANS_IDLE;
  }

  Result<std::vector<Row>> query(Stmt stmt, std::span<const Param> params) override {
    CTRUST_ASSIGN_OR_RETURN(ResultHandle res, run(stmt, params));
    const int rows = PQntuples(res.get());
    const int columns = PQnfields(res.get());
    std::vector<Row> out;
    out.reserve(static_cast<std::size_t>(rows));
    for (int r = 0; r < rows; ++r) {
      Row row;
      row.reserve(static_cast<std::size_t>(columns));
      for (int c = 0; c < columns; ++c) {
        if (PQgetisnull(res.get(), r, c) != 0) {
          row.emplace_back(std::monostate());
          continue;
        }
        std::string_view value(PQgetvalue(res.get(), r, c),
                               static_cast<std::size_t>(PQgetlength(res.get(), r, c)));
        const Oid type = PQftype(res.get(), c);
        std::int64_t number = 0;
        if ((type == kInt8Oid || type == kInt4Oid || type == kInt2Oid) &&
            std::from_chars(value.data(), value.data() + value.size(), number).ec == std::errc()) {
          row.emplace_back(number);
        } else {
          row.emplace_back(std::string(value));
        }
      }
      out.push_back(std::move(row));
    }
    return out;
  }

  Result<std::int64_t> execute(Stmt stmt, std::span<const Param> params) override {
    CTRUST_ASSIGN_OR_RETURN(ResultHandle res, run(stmt, params));
    std::string_view count = PQcmdTuples(res.get());
    std::int64_t n = 0;
    if (!count.empty()) std::from_chars(count.data(), count.data() + count.size(), n);
    return n;
  }

  Result<void> run_script(std::string_view sql) override {
    CTRUST_TRY(exec_text(sql, "running SQL"));
    return ok_result();
  }

  Result<void> begin() override {
    CTRUST_TRY(exec_text("BEGIN", "BEGIN"));
    return ok_result();
  }
  Result<void> commit() override {
    CTRUST_ASSIGN_OR_RETURN(ResultHandle res, exec_text("COMMIT", "COMMIT"));
    // COMMIT of a failed transaction "succeeds" with the tag ROLLBACK.
    if (std::string_view(PQcmdStatus(res.get())) != "COMMIT") {
      return Error(Errc::kIo, "COMMIT: the transaction was rolled back");
    }
    return ok_result();
  }
  Result<void> rollback() override {
    if (PQtransactionStatus(conn_.get()) == PQTRANS_IDLE) return ok_result();
    CTRUST_TRY(exec_text("ROLLBACK", "ROLLBACK"));
    return ok_result();
  }

 private:
  Error error(const std::string& what, const PGresult* res) const {
    std::string message;
    const char* primary =
        res != nullptr ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : nullptr;
    const char* sqlstate = res != nullptr ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
    message = primary != nullptr ? one_line(primary) : one_line(PQerrorMessage(conn_.get()));
    if (message.empty()) message = "unknown error";
    Errc code = Errc::kIo;
    if (sqlstate != nullptr) {
      message += std::string(" (SQLSTATE ") + sqlstate + ")";
      // Class 22: data exception; class 23: integrity constraint violation.
      if (std::string_view(sqlstate).starts_with("22") ||
          std::string_view(sqlstate).starts_with("23")) {
        code = Errc::kInvalidArgument;
      }
    }
    return Error(code, scrub(what + ": " + message, secrets_));
  }

  Result<ResultHandle> check(ResultHandle res, const std::string& what) const {
    const ExecStatusType status = res ? PQresultStatus(res.get()) : PGRES_FATAL_ERROR;
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) return error(what, res.get());
    return res;
  }

  Result<ResultHandle> exec_text(std::string_view sql, const std::string& what) {
    std::string text(sql);
    return check(ResultHandle(PQexec(conn_.get(), text.c_str())), what);
  }

  Result<ResultHandle> run(Stmt stmt, std::span<const Param> params) {
    if (params.size() > 64) return Error(Errc::kInternal, "too many statement parameters");
    const int n = static_cast<int>(params.size());
    std::vector<Oid> types(params.size());
    std::vector<const char*> values(params.size());
    std::vector<int> lengths(params.size());
    std::vector<int> formats(params.size(), 1);
    std::vector<std::array<char, 8>> integers(params.size());
    for (std::size_t i = 0; i < params.size(); ++i) {
      if (const auto* v = std::get_if<std::int64_t>(&params[i])) {
        // int8 binary form: big-endian two's complement.
        auto u = static_cast<std::uint64_t>(*v);
        for (int b = 7; b >= 0; --b) {
          integers[i][static_cast<std::size_t>(b)] = static_cast<char>(u & 0xff);
          u >>= 8;
        }
        types[i] = kInt8Oid;
        values[i] = integers[i].data();
        lengths[i] = 8;
      } else {
        std::string_view text = std::get<std::string_view>(params[i]);
        if (text.size() > static_cast<std::size_t>(INT_MAX)) {
          return Error(Errc::kLimit, "a value of " + std::to_string(text.size()) +
                                         " bytes is too large for PostgreSQL");
        }
        types[i] = kTextOid;
        values[i] = text.data() != nullptr ? text.data() : "";
        lengths[i] = static_cast<int>(text.size());
      }
    }
    const auto index = static_cast<std::size_t>(stmt);
    const std::string name = statement_name(stmt);
    if (!prepared_[index]) {
      std::string sql(statement_sql(stmt, Dialect::kPostgres));
      CTRUST_TRY(
          check(ResultHandle(PQprepare(conn_.get(), name.c_str(), sql.c_str(), n, types.data())),
                "preparing a statement"));
      prepared_[index] = true;
    }
    return check(ResultHandle(PQexecPrepared(conn_.get(), name.c_str(), n, values.data(),
                                             lengths.data(), formats.data(), 0)),
                 "running a statement");
  }

  ConnHandle conn_;
  const std::vector<std::string>& secrets_;
  std::array<bool, kStmtCount> prepared_{};
};

class PgDatabase final : public Database {
 public:
  PgDatabase(std::string url, std::size_t pool_size)
      : url_(std::move(url)),
        redacted_(printable(redact_url(url_), 256)),
        secrets_(url_secrets(url_)),
        pool_size_(pool_size) {}

  std::string_view backend() const override { return "postgresql"; }
  Dialect dialect() const override { return Dialect::kPostgres; }

  // Opens the first connection, so that a bad URL or an unreachable server shows at once.
  Result<void> start() {
    CTRUST_ASSIGN_OR_RETURN(std::unique_ptr<PgConnection> conn, connect());
    std::lock_guard lock(mu_);
    idle_.push_back(std::move(conn));
    open_ = 1;
    return ok_result();
  }

  Result<void> with_connection(const std::function<Result<void>(Connection&)>& fn) override {
    CTRUST_ASSIGN_OR_RETURN(std::unique_ptr<PgConnection> conn, acquire());
    // Returned to the pool even if fn throws.
    class Return {
     public:
      Return(PgDatabase* db, std::unique_ptr<PgConnection>& conn) : db_(db), conn_(conn) {}
      Return(const Return&) = delete;
      Return& operator=(const Return&) = delete;
      ~Return() { db_->give_back(std::move(conn_)); }

     private:
      PgDatabase* db_;
      std::unique_ptr<PgConnection>& conn_;
    } back(this, conn);
    return fn(*conn);
  }

 private:
  Result<std::unique_ptr<PgConnection>> connect() {
    // Keywords are applied in order: the URL (expanded from dbname) overrides the defaults
    // before it, and cannot override the client encoding after it (the store checks UTF-8).
    const std::array<const char*, 5> keys = {"connect_timeout", "application_name", "dbname",
                                             "client_encoding", nullptr};
    const std::array<const char*, 5> values = {"10", "ctrust-verifier", url_.c_str(), "UTF8",
                                               nullptr};
    ConnHandle conn(PQconnectdbParams(keys.data(), values.data(), 1));
    if (!conn) return Error(Errc::kIo, "postgresql: out of memory connecting");
    if (PQstatus(conn.get()) != CONNECTION_OK) {
      return Error(Errc::kIo, scrub("postgresql: cannot connect to " + redacted_ + ": " +
                                        one_line(PQerrorMessage(conn.get())),
                                    secrets_));
    }
    PQsetNoticeProcessor(conn.get(), ignore_notice, nullptr);
    return std::make_unique<PgConnection>(std::move(conn), secrets_);
  }

  Result<std::unique_ptr<PgConnection>> acquire() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return !idle_.empty() || open_ < pool_size_; });
    if (!idle_.empty()) {
      std::unique_ptr<PgConnection> conn = std::move(idle_.back());
      idle_.pop_back();
      if (conn->reusable()) return conn;
      // Broken while idle: its slot is reused for a fresh connection below.
      lock.unlock();
      conn.reset();
    } else {
      ++open_;
      lock.unlock();
    }
    auto fresh = connect();
    if (!fresh.ok()) {
      lock.lock();
      --open_;
      cv_.notify_one();
    }
    return fresh;
  }

  void give_back(std::unique_ptr<PgConnection> conn) {
    bool keep = conn != nullptr && conn->reusable();
    if (!keep) conn.reset();  // closed outside the lock
    std::lock_guard lock(mu_);
    if (keep) {
      idle_.push_back(std::move(conn));
    } else {
      --open_;
    }
    cv_.notify_one();
  }

  const std::string url_;  // holds the password: never shown
  const std::string redacted_;
  const std::vector<std::string> secrets_;
  const std::size_t pool_size_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<PgConnection>> idle_;
  std::size_t open_ = 0;  // connections in idle_ or lent out
};

}  // namespace

Result<std::unique_ptr<Database>> open_postgres(const std::string& url, std::size_t pool_size) {
  if (PQisthreadsafe() == 0) {
    return Error(Errc::kUnsupported, "postgresql: this libpq is not thread-safe");
  }
  auto db = std::make_unique<PgDatabase>(url, pool_size);
  CTRUST_TRY(db->start());
  return std::unique_ptr<Database>(std::move(db));
}

}  // namespace ctrust::store::detail
