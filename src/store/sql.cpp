// The SQL text of both backends: the migrations and every statement SqlStore runs.
//
// The statements are shared where the dialects agree (upserts with ON CONFLICT, RETURNING,
// $N parameters, which SQLite reads as named parameters and binds by name); only claim_due
// differs, because PostgreSQL needs FOR UPDATE SKIP LOCKED to let concurrent verifiers pass
// each other. PostgreSQL text columns that are keys or sort orders use the "C" collation, so
// that both backends order ids bytewise whatever the database's locale.
#include <array>

#include "store/sql.h"

namespace ctrust::store::detail {
namespace {

// Column lists in the order the decoders in sql_store.cpp read them.
#define CTRUST_AGENT_COLUMNS \
  "id, url, identity, state, status, registered_at, updated_at, next_due, owner, lease_until"
#define CTRUST_CONTAINER_COLUMNS "agent_id, container_id, state, verdict, reasons, updated_at"
#define CTRUST_EVENT_COLUMNS "id, agent_id, container_id, event_time, verdict, reasons, ear"
#define CTRUST_POLICY_COLUMNS "name, serial, digest, document, signer, added_at"

constexpr std::string_view kSqliteVersionTable =
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL) STRICT";
constexpr std::string_view kPostgresVersionTable =
    "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)";

// STRICT tables: SQLite refuses values of the wrong type instead of storing them.
constexpr std::array<std::string_view, 2> kSqliteMigrations = {
    R"sql(
CREATE TABLE agents (
  id TEXT NOT NULL PRIMARY KEY,
  url TEXT NOT NULL,
  identity TEXT NOT NULL,
  state TEXT NOT NULL,
  status TEXT NOT NULL,
  registered_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  next_due INTEGER NOT NULL,
  owner TEXT NOT NULL DEFAULT '',
  lease_until INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX agents_by_due ON agents (next_due);
CREATE TABLE containers (
  agent_id TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
  container_id TEXT NOT NULL,
  state TEXT NOT NULL,
  verdict TEXT NOT NULL,
  reasons TEXT NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (agent_id, container_id)
) STRICT;
CREATE TABLE events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  agent_id TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
  container_id TEXT NOT NULL,
  event_time INTEGER NOT NULL,
  verdict TEXT NOT NULL,
  reasons TEXT NOT NULL,
  ear TEXT NOT NULL
) STRICT;
CREATE INDEX events_by_agent ON events (agent_id, id);
CREATE INDEX events_by_container ON events (container_id, id);
CREATE TABLE policies (
  name TEXT NOT NULL,
  serial INTEGER NOT NULL,
  digest TEXT NOT NULL,
  document TEXT NOT NULL,
  signer TEXT NOT NULL,
  added_at INTEGER NOT NULL,
  PRIMARY KEY (name, serial)
) STRICT;
CREATE INDEX policies_by_digest ON policies (digest);
CREATE TABLE mappings (
  kind TEXT NOT NULL,
  map_key TEXT NOT NULL,
  policy TEXT NOT NULL,
  PRIMARY KEY (kind, map_key)
) STRICT;
CREATE INDEX mappings_by_policy ON mappings (policy);
)sql",
    // 2: the verifiers alive, so that each claims its fair share of the agents.
    R"sql(
CREATE TABLE verifiers (
  id TEXT NOT NULL PRIMARY KEY,
  seen_until INTEGER NOT NULL
) STRICT;
CREATE INDEX agents_by_owner ON agents (owner);
)sql",
};

constexpr std::array<std::string_view, 2> kPostgresMigrations = {
    R"sql(
CREATE TABLE agents (
  id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
  url TEXT NOT NULL,
  identity TEXT NOT NULL,
  state TEXT NOT NULL,
  status TEXT NOT NULL,
  registered_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  next_due BIGINT NOT NULL,
  owner TEXT COLLATE "C" NOT NULL DEFAULT '',
  lease_until BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX agents_by_due ON agents (next_due);
CREATE TABLE containers (
  agent_id TEXT COLLATE "C" NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
  container_id TEXT COLLATE "C" NOT NULL,
  state TEXT NOT NULL,
  verdict TEXT NOT NULL,
  reasons TEXT NOT NULL,
  updated_at BIGINT NOT NULL,
  PRIMARY KEY (agent_id, container_id)
);
CREATE TABLE events (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  agent_id TEXT COLLATE "C" NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
  container_id TEXT COLLATE "C" NOT NULL,
  event_time BIGINT NOT NULL,
  verdict TEXT NOT NULL,
  reasons TEXT NOT NULL,
  ear TEXT NOT NULL
);
CREATE INDEX events_by_agent ON events (agent_id, id);
CREATE INDEX events_by_container ON events (container_id, id);
CREATE TABLE policies (
  name TEXT COLLATE "C" NOT NULL,
  serial BIGINT NOT NULL,
  digest TEXT COLLATE "C" NOT NULL,
  document TEXT NOT NULL,
  signer TEXT NOT NULL,
  added_at BIGINT NOT NULL,
  PRIMARY KEY (name, serial)
);
CREATE INDEX policies_by_digest ON policies (digest);
CREATE TABLE mappings (
  kind TEXT COLLATE "C" NOT NULL,
  map_key TEXT COLLATE "C" NOT NULL,
  policy TEXT COLLATE "C" NOT NULL,
  PRIMARY KEY (kind, map_key)
);
CREATE INDEX mappings_by_policy ON mappings (policy);
)sql",
    // 2: the verifiers alive, so that each claims its fair share of the agents.
    R"sql(
CREATE TABLE verifiers (
  id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
  seen_until BIGINT NOT NULL
);
CREATE INDEX agents_by_owner ON agents (owner);
)sql",
};

// $1 owner, $2 now, $3 the new lease_until, $4 the limit. kClaimOwn renews the owner's
// due agents; kClaimFree takes due agents that are unowned or whose lease expired.
#define CTRUST_CLAIM_OWN "next_due <= $2 AND owner = $1"
#define CTRUST_CLAIM_FREE "next_due <= $2 AND owner <> $1 AND (owner = '' OR lease_until <= $2)"
#define CTRUST_SQLITE_CLAIM(WHERE)                                                                 \
  "UPDATE agents SET owner = $1, lease_until = $3 WHERE id IN (SELECT id FROM agents WHERE " WHERE \
  " ORDER BY next_due, id LIMIT $4) RETURNING " CTRUST_AGENT_COLUMNS

// SKIP LOCKED: rows another verifier is claiming right now are passed over instead of
// waited for; under READ COMMITTED the conditions are rechecked on the row's latest version,
// so a row claimed and committed meanwhile no longer qualifies.
#define CTRUST_POSTGRES_CLAIM(WHERE)                                                      \
  "WITH due AS (SELECT id FROM agents WHERE " WHERE                                       \
  " ORDER BY next_due, id LIMIT $4 FOR UPDATE SKIP LOCKED)"                               \
  " UPDATE agents AS a SET owner = $1, lease_until = $3 FROM due WHERE a.id = due.id"     \
  " RETURNING a.id, a.url, a.identity, a.state, a.status, a.registered_at, a.updated_at," \
  " a.next_due, a.owner, a.lease_until"

}  // namespace

std::string_view statement_sql(Stmt stmt, Dialect dialect) {
  const bool pg = dialect == Dialect::kPostgres;
  switch (stmt) {
    case Stmt::kLockSchema:
      // BEGIN IMMEDIATE already holds SQLite's write lock.
      return pg ? "SELECT pg_advisory_xact_lock(7301985372)" : "SELECT 1";
    case Stmt::kGetVersion:
      return "SELECT version FROM schema_version";
    case Stmt::kInsertVersion:
      return "INSERT INTO schema_version (version) VALUES (0)";
    case Stmt::kSetVersion:
      return "UPDATE schema_version SET version = $1";
    case Stmt::kPutAgent:
      return "INSERT INTO agents (" CTRUST_AGENT_COLUMNS
             ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
             " ON CONFLICT (id) DO UPDATE SET url = excluded.url, identity = excluded.identity,"
             " state = excluded.state, status = excluded.status,"
             " registered_at = excluded.registered_at, updated_at = excluded.updated_at,"
             " next_due = excluded.next_due, owner = excluded.owner,"
             " lease_until = excluded.lease_until";
    case Stmt::kGetAgent:
      return "SELECT " CTRUST_AGENT_COLUMNS " FROM agents WHERE id = $1";
    case Stmt::kListAgents:
      return "SELECT " CTRUST_AGENT_COLUMNS " FROM agents ORDER BY id";
    case Stmt::kDeleteAgent:
      return "DELETE FROM agents WHERE id = $1";
    case Stmt::kAgentExists:
      return "SELECT 1 FROM agents WHERE id = $1";
    case Stmt::kClaimOwn:
      return pg ? CTRUST_POSTGRES_CLAIM(CTRUST_CLAIM_OWN) : CTRUST_SQLITE_CLAIM(CTRUST_CLAIM_OWN);
    case Stmt::kClaimFree:
      return pg ? CTRUST_POSTGRES_CLAIM(CTRUST_CLAIM_FREE) : CTRUST_SQLITE_CLAIM(CTRUST_CLAIM_FREE);
    case Stmt::kRelease:
      return "UPDATE agents SET owner = '', lease_until = 0 WHERE owner = $1";
    case Stmt::kHeartbeat:
      return "INSERT INTO verifiers (id, seen_until) VALUES ($1, $2)"
             " ON CONFLICT (id) DO UPDATE SET seen_until = excluded.seen_until";
    case Stmt::kForgetVerifier:
      return "DELETE FROM verifiers WHERE id = $1";
    case Stmt::kForgetStaleVerifiers:
      return "DELETE FROM verifiers WHERE seen_until < $1";
    // $1 owner, $2 now: the verifiers alive, the agents, the agents the owner holds, and the
    // verifier alive that holds the fewest (how many, and its id; the owner on a tie).
    case Stmt::kShare:
      return "SELECT (SELECT count(*) FROM verifiers WHERE seen_until > $2),"
             " (SELECT count(*) FROM agents),"
             " (SELECT count(*) FROM agents WHERE owner = $1),"
             " n, id FROM (SELECT v.id, (SELECT count(*) FROM agents a WHERE a.owner = v.id) AS n"
             " FROM verifiers v WHERE v.seen_until > $2) AS alive"
             " ORDER BY n, CASE WHEN id = $1 THEN 0 ELSE 1 END, id LIMIT 1";
    // $1 owner, $2 now, $3 how many, $4 to whom, $5 its lease_until: hands that many of the
    // owner's agents that are not due (not in flight: their attestation was saved) to
    // another verifier, the ones attested last first.
    case Stmt::kHandOver:
      return "UPDATE agents SET owner = $4, lease_until = $5 WHERE id IN (SELECT id FROM agents"
             " WHERE owner = $1 AND next_due > $2 ORDER BY next_due DESC, id DESC LIMIT $3)";
    case Stmt::kUpdateAgentResult:
      return "UPDATE agents SET state = $2, status = $3, updated_at = $4, next_due = $5"
             " WHERE id = $1 AND ($6 = '' OR owner = $6)";
    case Stmt::kPutContainer:
      return "INSERT INTO containers (" CTRUST_CONTAINER_COLUMNS
             ") VALUES ($1, $2, $3, $4, $5, $6)"
             " ON CONFLICT (agent_id, container_id) DO UPDATE SET state = excluded.state,"
             " verdict = excluded.verdict, reasons = excluded.reasons,"
             " updated_at = excluded.updated_at";
    case Stmt::kDeleteContainer:
      return "DELETE FROM containers WHERE agent_id = $1 AND container_id = $2";
    case Stmt::kListContainers:
      return "SELECT " CTRUST_CONTAINER_COLUMNS
             " FROM containers WHERE agent_id = $1 ORDER BY container_id";
    case Stmt::kGetContainer:
      return "SELECT " CTRUST_CONTAINER_COLUMNS
             " FROM containers WHERE agent_id = $1 AND container_id = $2";
    case Stmt::kInsertEvent:
      return "INSERT INTO events (agent_id, container_id, event_time, verdict, reasons, ear)"
             " VALUES ($1, $2, $3, $4, $5, $6) RETURNING id";
    // $1: only ids below it, $2: the limit.
    case Stmt::kEventsAny:
      return "SELECT " CTRUST_EVENT_COLUMNS " FROM events WHERE id < $1 ORDER BY id DESC LIMIT $2";
    case Stmt::kEventsAgent:
      return "SELECT " CTRUST_EVENT_COLUMNS
             " FROM events WHERE agent_id = $3 AND id < $1 ORDER BY id DESC LIMIT $2";
    case Stmt::kEventsContainer:
      return "SELECT " CTRUST_EVENT_COLUMNS
             " FROM events WHERE container_id = $3 AND id < $1 ORDER BY id DESC LIMIT $2";
    case Stmt::kEventsAgentContainer:
      return "SELECT " CTRUST_EVENT_COLUMNS
             " FROM events WHERE agent_id = $3 AND container_id = $4 AND id < $1"
             " ORDER BY id DESC LIMIT $2";
    case Stmt::kInsertPolicy:
      return "INSERT INTO policies (" CTRUST_POLICY_COLUMNS
             ") VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name, serial) DO NOTHING";
    case Stmt::kPolicyDigest:
      return "SELECT digest FROM policies WHERE name = $1 AND serial = $2";
    case Stmt::kGetPolicy:
      return "SELECT " CTRUST_POLICY_COLUMNS
             " FROM policies WHERE name = $1 ORDER BY serial DESC LIMIT 1";
    case Stmt::kGetPolicyByDigest:
      return "SELECT " CTRUST_POLICY_COLUMNS
             " FROM policies WHERE digest = $1 ORDER BY serial DESC, name LIMIT 1";
    case Stmt::kListPolicies:
      return "SELECT " CTRUST_POLICY_COLUMNS
             " FROM policies AS p WHERE p.serial ="
             " (SELECT MAX(q.serial) FROM policies AS q WHERE q.name = p.name) ORDER BY name";
    case Stmt::kDeletePolicy:
      return "DELETE FROM policies WHERE name = $1";
    case Stmt::kDeletePolicyMappings:
      return "DELETE FROM mappings WHERE policy = $1";
    case Stmt::kPutMapping:
      return "INSERT INTO mappings (kind, map_key, policy) VALUES ($1, $2, $3)"
             " ON CONFLICT (kind, map_key) DO UPDATE SET policy = excluded.policy";
    case Stmt::kDeleteMapping:
      return "DELETE FROM mappings WHERE kind = $1 AND map_key = $2";
    case Stmt::kListMappings:
      return "SELECT kind, map_key, policy FROM mappings ORDER BY kind, map_key";
    case Stmt::kCount:
      break;
  }
  return "";
}

std::string_view version_table_sql(Dialect dialect) {
  return dialect == Dialect::kPostgres ? kPostgresVersionTable : kSqliteVersionTable;
}

std::span<const std::string_view> migrations(Dialect dialect) {
  if (dialect == Dialect::kPostgres) return kPostgresMigrations;
  return kSqliteMigrations;
}

}  // namespace ctrust::store::detail
