// SqlStore: the Store's logic, once for both backends, over detail::Database.
//
// Every value is checked before a connection is taken, so that what the store writes it can
// read back: ids and keys are bounded printable text, free text is UTF-8 without NUL bytes
// (PostgreSQL refuses anything else, and SQLite must behave the same), JSON members are
// nested no deeper than kMaxJsonDepth. Reading is as careful: a cell of the wrong type or
// JSON that does not parse is an Errc::kFormat error naming the row and the column.
#include <algorithm>
#include <array>
#include <limits>
#include <map>
#include <mutex>
#include <utility>

#include "store/sql.h"
#include "util/json.h"
#include "util/text.h"

namespace ctrust::store::detail {
namespace {

using nlohmann::json;

constexpr std::int64_t kInt64Max = std::numeric_limits<std::int64_t>::max();

Param to_param(std::int64_t v) { return v; }
Param to_param(std::string_view v) { return v; }

template <typename... A>
std::array<Param, sizeof...(A)> params(const A&... a) {
  return {to_param(a)...};
}

// A verifier whose heartbeat is older than this is removed from the table.
constexpr std::int64_t kForgetVerifiersAfter = 86400;

std::int64_t clamp_limit(std::size_t limit) {
  return limit > static_cast<std::size_t>(kInt64Max) ? kInt64Max : static_cast<std::int64_t>(limit);
}

std::string quote(std::string_view s) { return "\"" + printable(s, 128) + "\""; }

// ---- Checks on what is written ----

bool is_agent_id_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.' || c == '-';
}

Result<void> check_agent_id(std::string_view id) {
  if (id.empty() || id.size() > kMaxAgentIdLen ||
      !std::all_of(id.begin(), id.end(), is_agent_id_char)) {
    return Error(Errc::kInvalidArgument,
                 "agent id " + quote(id) + " is not 1 to 128 characters of [A-Za-z0-9_.-]");
  }
  return ok_result();
}

// Free text: anything PostgreSQL's text type takes.
Result<void> check_text(std::string_view what, std::string_view value) {
  if (value.find('\0') != std::string_view::npos || !is_valid_utf8(value)) {
    return Error(Errc::kInvalidArgument,
                 std::string(what) + " is not UTF-8 text without NUL bytes: " + quote(value));
  }
  return ok_result();
}

// Keys (container ids, owners, policy names, digests, mapping keys): non-empty, bounded,
// no control characters.
Result<void> check_key(std::string_view what, std::string_view value) {
  if (value.empty()) return Error(Errc::kInvalidArgument, std::string(what) + " is empty");
  if (value.size() > kMaxKeyLen) {
    return Error(Errc::kInvalidArgument,
                 std::string(what) + " is longer than " + std::to_string(kMaxKeyLen) + " bytes");
  }
  bool control = std::any_of(value.begin(), value.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
  });
  if (control || !is_valid_utf8(value)) {
    return Error(Errc::kInvalidArgument, std::string(what) + " " + quote(value) +
                                             " has control characters or is not UTF-8");
  }
  return ok_result();
}

// Depth of nested arrays and objects, counting stops past `limit`.
std::size_t json_depth(const json& v, std::size_t limit) {
  if (!v.is_structured()) return 0;
  if (limit == 0) return 1;
  std::size_t deepest = 0;
  for (const json& child : v) {
    deepest = std::max(deepest, json_depth(child, limit - 1));
    if (deepest >= limit) break;
  }
  return deepest + 1;
}

// The compact text of a JSON member, or why it cannot be stored.
Result<std::string> json_text(std::string_view what, const json& value) {
  if (value.is_discarded()) {
    return Error(Errc::kInvalidArgument, std::string(what) + " is a discarded JSON value");
  }
  if (json_depth(value, kMaxJsonDepth) > kMaxJsonDepth) {
    return Error(Errc::kInvalidArgument, std::string(what) + " nests deeper than " +
                                             std::to_string(kMaxJsonDepth) + " levels");
  }
  try {
    return value.dump();
  } catch (const json::exception& e) {
    // Strings that are not UTF-8 (nlohmann type_error 316).
    std::string reason = e.what();
    if (auto p = reason.find("] "); p != std::string::npos) reason = reason.substr(p + 2);
    return Error(Errc::kInvalidArgument, std::string(what) + " cannot be stored: " + reason);
  }
}

// ---- Decoding what is read ----

// Reads a row's cells in column order; the first problem is kept for status().
class RowReader {
 public:
  explicit RowReader(const Row& row) : row_(row) {}

  std::string text(const char* column) {
    const Cell* cell = next(column);
    if (cell == nullptr) return {};
    if (const auto* s = std::get_if<std::string>(cell)) return *s;
    fail(column, "is not text");
    return {};
  }
  std::int64_t integer(const char* column) {
    const Cell* cell = next(column);
    if (cell == nullptr) return 0;
    if (const auto* i = std::get_if<std::int64_t>(cell)) return *i;
    fail(column, "is not an integer");
    return 0;
  }
  json json_value(const char* column) {
    std::string t = text(column);
    if (!problem_.empty()) return nullptr;
    auto parsed = parse_json_strict(t, kMaxJsonDepth);
    if (!parsed) {
      fail(column, "holds malformed JSON (" + parsed.error().message() + ")");
      return nullptr;
    }
    return std::move(parsed).value();
  }

  // `what` names the row, e.g. agent "a1".
  Result<void> status(const std::string& what) const {
    if (problem_.empty()) return ok_result();
    return Error(Errc::kFormat, what + ": " + problem_);
  }

 private:
  const Cell* next(const char* column) {
    if (!problem_.empty()) return nullptr;
    if (index_ >= row_.size()) {
      fail(column, "is missing");
      return nullptr;
    }
    return &row_[index_++];
  }
  void fail(const char* column, const std::string& why) {
    if (problem_.empty()) problem_ = std::string("column ") + column + " " + why;
  }

  const Row& row_;
  std::size_t index_ = 0;
  std::string problem_;
};

Result<AgentRow> decode_agent(const Row& row) {
  RowReader r(row);
  AgentRow a;
  a.id = r.text("id");
  a.url = r.text("url");
  a.identity = r.json_value("identity");
  a.state = r.json_value("state");
  a.status = r.text("status");
  a.registered_at = r.integer("registered_at");
  a.updated_at = r.integer("updated_at");
  a.next_due = r.integer("next_due");
  a.owner = r.text("owner");
  a.lease_until = r.integer("lease_until");
  CTRUST_TRY(r.status("agent " + quote(a.id)));
  return a;
}

Result<ContainerRow> decode_container(const Row& row) {
  RowReader r(row);
  ContainerRow c;
  c.agent_id = r.text("agent_id");
  c.container_id = r.text("container_id");
  c.state = r.json_value("state");
  c.verdict = r.text("verdict");
  c.reasons = r.json_value("reasons");
  c.updated_at = r.integer("updated_at");
  CTRUST_TRY(r.status("container " + quote(c.container_id) + " of agent " + quote(c.agent_id)));
  return c;
}

Result<VerdictEvent> decode_event(const Row& row) {
  RowReader r(row);
  VerdictEvent e;
  e.id = r.integer("id");
  e.agent_id = r.text("agent_id");
  e.container_id = r.text("container_id");
  e.time = r.integer("event_time");
  e.verdict = r.text("verdict");
  e.reasons = r.json_value("reasons");
  e.ear = r.text("ear");
  CTRUST_TRY(r.status("event " + std::to_string(e.id)));
  return e;
}

Result<PolicyRow> decode_policy(const Row& row) {
  RowReader r(row);
  PolicyRow p;
  p.name = r.text("name");
  std::int64_t serial = r.integer("serial");
  p.digest = r.text("digest");
  p.document = r.text("document");
  p.signer = r.text("signer");
  p.added_at = r.integer("added_at");
  std::string what = "policy " + quote(p.name);
  CTRUST_TRY(r.status(what));
  if (serial < 0) return Error(Errc::kFormat, what + ": negative serial");
  p.serial = static_cast<std::uint64_t>(serial);
  return p;
}

Result<MappingRow> decode_mapping(const Row& row) {
  RowReader r(row);
  MappingRow m;
  m.kind = r.text("kind");
  m.key = r.text("map_key");
  m.policy = r.text("policy");
  CTRUST_TRY(r.status("mapping " + quote(m.kind) + " " + quote(m.key)));
  return m;
}

template <typename T>
Result<std::vector<T>> decode_all(const std::vector<Row>& rows, Result<T> (*decode)(const Row&)) {
  std::vector<T> out;
  out.reserve(rows.size());
  for (const Row& row : rows) {
    CTRUST_ASSIGN_OR_RETURN(T value, decode(row));
    out.push_back(std::move(value));
  }
  return out;
}

template <typename T>
Result<std::optional<T>> decode_first(const std::vector<Row>& rows,
                                      Result<T> (*decode)(const Row&)) {
  if (rows.empty()) return std::optional<T>();
  CTRUST_ASSIGN_OR_RETURN(T value, decode(rows.front()));
  return std::optional<T>(std::move(value));
}

using ConnectionFn = std::function<Result<void>(Connection&)>;

class SqlStore final : public Store {
 public:
  explicit SqlStore(std::unique_ptr<Database> db) : db_(std::move(db)) {}

  std::string_view backend() const override { return db_->backend(); }

  Result<void> migrate() {
    return named("migrate", [&]() -> Result<void> {
      std::span<const std::string_view> steps = migrations(db_->dialect());
      const auto latest = static_cast<std::int64_t>(steps.size());
      if (latest != kSchemaVersion) {
        return Error(Errc::kInternal, "the migrations do not end at kSchemaVersion");
      }
      // One transaction per step, each re-reading the version under the lock, so that
      // verifiers starting together apply every step exactly once.
      for (bool done = false; !done;) {
        Result<void> step = transact([&](Connection& c) -> Result<void> {
          CTRUST_TRY(c.query(Stmt::kLockSchema, {}));
          CTRUST_TRY(c.run_script(version_table_sql(db_->dialect())));
          CTRUST_ASSIGN_OR_RETURN(std::vector<Row> rows, c.query(Stmt::kGetVersion, {}));
          std::int64_t version = 0;
          if (rows.empty()) {
            CTRUST_TRY(c.execute(Stmt::kInsertVersion, {}));
          } else {
            const auto* v = rows.size() == 1 && !rows[0].empty()
                                ? std::get_if<std::int64_t>(&rows[0][0])
                                : nullptr;
            if (v == nullptr || *v < 0) {
              return Error(Errc::kFormat, "the schema_version table is damaged");
            }
            version = *v;
          }
          if (version > latest) {
            return Error(Errc::kUnsupported,
                         "the database has schema version " + std::to_string(version) +
                             ", newer than this build understands (" + std::to_string(latest) +
                             "): upgrade ctrust-verifier or point it at another database");
          }
          if (version == latest) {
            done = true;
            return ok_result();
          }
          if (auto r = c.run_script(steps[static_cast<std::size_t>(version)]); !r.ok()) {
            return std::move(r).error().with_context("migration " + std::to_string(version + 1));
          }
          CTRUST_TRY(c.execute(Stmt::kSetVersion, params(version + 1)));
          return ok_result();
        });
        CTRUST_TRY(step);
      }
      return ok_result();
    });
  }

  Result<int> schema_version() override {
    return named("schema_version", [&]() -> Result<int> {
      CTRUST_ASSIGN_OR_RETURN(std::vector<Row> rows, query(Stmt::kGetVersion, {}));
      const auto* v =
          rows.size() == 1 && !rows[0].empty() ? std::get_if<std::int64_t>(&rows[0][0]) : nullptr;
      if (v == nullptr || *v < 0 || *v > std::numeric_limits<int>::max()) {
        return Error(Errc::kFormat, "the schema_version table is damaged");
      }
      return static_cast<int>(*v);
    });
  }

  // ---- Agents ----

  Result<void> put_agent(const AgentRow& row) override {
    return named("put_agent", [&]() -> Result<void> {
      CTRUST_TRY(check_agent_id(row.id));
      CTRUST_TRY(check_text("url", row.url));
      CTRUST_TRY(check_text("status", row.status));
      if (!row.owner.empty()) CTRUST_TRY(check_key("owner", row.owner));
      CTRUST_ASSIGN_OR_RETURN(std::string identity, json_text("identity", row.identity));
      CTRUST_ASSIGN_OR_RETURN(std::string state, json_text("state", row.state));
      return execute(Stmt::kPutAgent,
                     params(row.id, row.url, identity, state, row.status, row.registered_at,
                            row.updated_at, row.next_due, row.owner, row.lease_until));
    });
  }

  Result<std::optional<AgentRow>> get_agent(const std::string& id) override {
    return named("get_agent", [&]() -> Result<std::optional<AgentRow>> {
      CTRUST_ASSIGN_OR_RETURN(std::vector<Row> rows, query(Stmt::kGetAgent, params(id)));
      return decode_first(rows, decode_agent);
    });
  }

  Result<std::vector<AgentRow>> list_agents() override {
    return named("list_agents", [&]() -> Result<std::vector<AgentRow>> {
      CTRUST_ASSIGN_OR_RETURN(std::vector<Row> rows, query(Stmt::kListAgents, {}));
      return decode_all(rows, decode_agent);
    });
  }

  Result<bool> delete_agent(const std::string& id) override {
    // Containers and events go with it (ON DELETE CASCADE).
    return named("delete_agent", [&]() -> Result<bool> {
      CTRUST_ASSIGN_OR_RETURN(std::int64_t n, changes(Stmt::kDeleteAgent, params(id)));
      return n > 0;
    });
  }

  // ---- Leases ----

  Result<std::vector<AgentRow>> claim_due(const std::string& owner, std::int64_t now,
                                          std::int64_t lease_seconds, std::size_t limit) override {
    return named("claim_due", [&]() -> Result<std::vector<AgentRow>> {
      CTRUST_TRY(check_key("owner", owner));
      CTRUST_TRY(check_lease(now, lease_seconds));
      const std::int64_t until = now + lease_seconds;
      CTRUST_TRY(heartbeat(owner, now, until));
      if (limit == 0) return std::vector<AgentRow>();
      CTRUST_ASSIGN_OR_RETURN(Share share, fair_share(owner, now));
      const std::int64_t max = clamp_limit(limit);
      CTRUST_ASSIGN_OR_RETURN(std::vector<Row> rows,
                              query(Stmt::kClaimOwn, params(owner, now, until, max)));
      // Agents nobody holds: only up to the share.
      const std::int64_t room = std::min<std::int64_t>(max - static_cast<std::int64_t>(rows.size()),
                                                       share.share - share.held);
      if (room > 0) {
        CTRUST_ASSIGN_OR_RETURN(std::vector<Row> more,
                                query(Stmt::kClaimFree, params(owner, now, until, room)));
        rows.insert(rows.end(), std::make_move_iterator(more.begin()),
                    std::make_move_iterator(more.end()));
      }
      CTRUST_ASSIGN_OR_RETURN(std::vector<AgentRow> agents, decode_all(rows, decode_agent));
      // RETURNING gives no order.
      std::sort(agents.begin(), agents.end(), [](const AgentRow& a, const AgentRow& b) {
        return a.next_due != b.next_due ? a.next_due < b.next_due : a.id < b.id;
      });
      return agents;
    });
  }

  Result<std::int64_t> shed(const std::string& owner, std::int64_t now,
                            std::int64_t lease_seconds) override {
    return named("shed", [&]() -> Result<std::int64_t> {
      CTRUST_TRY(check_key("owner", owner));
      CTRUST_TRY(check_lease(now, lease_seconds));
      CTRUST_TRY(heartbeat(owner, now, now + lease_seconds));
      CTRUST_ASSIGN_OR_RETURN(Share share, fair_share(owner, now));
      if (share.fewest_id == owner || share.held - share.fewest < 2) return std::int64_t{0};
      // To the verifier that holds the fewest, as many as neither goes past the other (nor,
      // when this one is above its share, past the share): the next call sees the new counts.
      std::int64_t n = (share.held - share.fewest) / 2;
      if (share.held > share.share) n = std::max(n, share.held - share.share);
      n = std::min(n, share.share - share.fewest);
      if (n <= 0) return std::int64_t{0};
      // The receiver's lease is the one it would take itself; if it died meanwhile the
      // agents are free again when that runs out, as after any crash.
      return changes(Stmt::kHandOver,
                     params(owner, now, n, std::string_view(share.fewest_id), now + lease_seconds));
    });
  }

  Result<void> release(const std::string& owner) override {
    return named("release", [&]() -> Result<void> {
      CTRUST_TRY(check_key("owner", owner));
      CTRUST_TRY(execute(Stmt::kRelease, params(owner)));
      {
        std::lock_guard lock(beat_mutex_);
        beats_.erase(owner);
      }
      return execute(Stmt::kForgetVerifier, params(owner));
    });
  }

  // ---- Attestations ----

  Result<void> save_attestation(const AgentRow& agent, const std::string& owner,
                                const std::vector<ContainerRow>& containers,
                                const std::vector<std::string>& removed,
                                std::vector<VerdictEvent>& events) override {
    return named("save_attestation", [&]() -> Result<void> {
      CTRUST_TRY(check_agent_id(agent.id));
      if (!owner.empty()) CTRUST_TRY(check_key("owner", owner));
      CTRUST_TRY(check_text("status", agent.status));
      CTRUST_ASSIGN_OR_RETURN(std::string agent_state, json_text("agent state", agent.state));

      struct Encoded {
        std::string state;
        std::string reasons;
      };
      std::vector<Encoded> encoded;
      encoded.reserve(containers.size());
      for (const ContainerRow& c : containers) {
        if (!c.agent_id.empty() && c.agent_id != agent.id) {
          return Error(Errc::kInvalidArgument, "container " + quote(c.container_id) +
                                                   " belongs to agent " + quote(c.agent_id) +
                                                   ", not " + quote(agent.id));
        }
        CTRUST_TRY(check_key("container id", c.container_id));
        CTRUST_TRY(check_text("verdict", c.verdict));
        Encoded e;
        CTRUST_ASSIGN_OR_RETURN(e.state, json_text("container state", c.state));
        CTRUST_ASSIGN_OR_RETURN(e.reasons, json_text("container reasons", c.reasons));
        encoded.push_back(std::move(e));
      }
      for (const std::string& id : removed) CTRUST_TRY(check_key("removed container id", id));
      std::vector<std::string> event_reasons;
      event_reasons.reserve(events.size());
      for (const VerdictEvent& e : events) {
        if (!e.agent_id.empty() && e.agent_id != agent.id) {
          return Error(Errc::kInvalidArgument, "an event for agent " + quote(e.agent_id) +
                                                   " in the attestation of " + quote(agent.id));
        }
        if (!e.container_id.empty()) CTRUST_TRY(check_key("event container id", e.container_id));
        CTRUST_TRY(check_text("event verdict", e.verdict));
        CTRUST_TRY(check_text("event EAR", e.ear));
        CTRUST_ASSIGN_OR_RETURN(std::string reasons, json_text("event reasons", e.reasons));
        event_reasons.push_back(std::move(reasons));
      }

      std::vector<std::int64_t> ids;
      Result<void> saved = transact([&](Connection& c) -> Result<void> {
        ids.clear();
        // The agent first: its row lock orders concurrent saves of one agent.
        CTRUST_ASSIGN_OR_RETURN(
            std::int64_t n,
            c.execute(Stmt::kUpdateAgentResult, params(agent.id, agent_state, agent.status,
                                                       agent.updated_at, agent.next_due, owner)));
        if (n == 0) {
          CTRUST_ASSIGN_OR_RETURN(std::vector<Row> rows,
                                  c.query(Stmt::kAgentExists, params(agent.id)));
          if (rows.empty()) {
            return Error(Errc::kNotFound, "agent " + quote(agent.id) + " not found");
          }
          return Error(Errc::kInvalidArgument, "lease lost: agent " + quote(agent.id) +
                                                   " is no longer leased to " + quote(owner));
        }
        for (std::size_t i = 0; i < containers.size(); ++i) {
          const ContainerRow& row = containers[i];
          CTRUST_TRY(c.execute(Stmt::kPutContainer,
                               params(agent.id, row.container_id, encoded[i].state, row.verdict,
                                      encoded[i].reasons, row.updated_at)));
        }
        for (const std::string& id : removed) {
          CTRUST_TRY(c.execute(Stmt::kDeleteContainer, params(agent.id, id)));
        }
        for (std::size_t i = 0; i < events.size(); ++i) {
          const VerdictEvent& e = events[i];
          CTRUST_ASSIGN_OR_RETURN(
              std::vector<Row> rows,
              c.query(Stmt::kInsertEvent, params(agent.id, e.container_id, e.time, e.verdict,
                                                 event_reasons[i], e.ear)));
          const auto* id = rows.size() == 1 && !rows[0].empty()
                               ? std::get_if<std::int64_t>(&rows[0][0])
                               : nullptr;
          if (id == nullptr) return Error(Errc::kInternal, "no id for an inserted event");
          ids.push_back(*id);
        }
        return ok_result();
      });
      CTRUST_TRY(saved);
      // Only once committed.
      for (std::size_t i = 0; i < events.size(); ++i) {
        events[i].id = ids[i];
        if (events[i].agent_id.empty()) events[i].agent_id = agent.id;
      }
      return ok_result();
    });
  }

  Result<std::vector<ContainerRow>> list_containers(const std::string& agent_id) override {
    return named("list_containers", [&]() -> Result<std::vector<ContainerRow>> {
      CTRUST_ASSIGN_OR_RETURN(std::vector<Row> rows,
                              query(Stmt::kListContainers, params(agent_id)));
      return decode_all(rows, decode_container);
    });
  }

  Result<std::optional<ContainerRow>> get_container(const std::string& agent_id,
                                                    const std::string& container_id) override {
    return named("get_container", [&]() -> Result<std::optional<ContainerRow>> {
      CTRUST_ASSIGN_OR_RETURN(std::vector<Row> rows,
                              query(Stmt::kGetContainer, params(agent_id, container_id)));
      return decode_first(rows, decode_container);
    });
  }

  Result<std::vector<VerdictEvent>> events(const std::string& agent_id,
                                           const std::string& container_id, std::size_t limit,
                                           std::int64_t before_id) override {
    return named("events", [&]() -> Result<std::vector<VerdictEvent>> {
      if (limit == 0) return std::vector<VerdictEvent>();
      const std::int64_t before = before_id > 0 ? before_id : kInt64Max;
      const std::int64_t n = clamp_limit(limit);
      std::vector<Row> rows;
      if (agent_id.empty() && container_id.empty()) {
        CTRUST_ASSIGN_OR_RETURN(rows, query(Stmt::kEventsAny, params(before, n)));
      } else if (container_id.empty()) {
        CTRUST_ASSIGN_OR_RETURN(rows, query(Stmt::kEventsAgent, params(before, n, agent_id)));
      } else if (agent_id.empty()) {
        CTRUST_ASSIGN_OR_RETURN(rows,
                                query(Stmt::kEventsContainer, params(before, n, container_id)));
      } else {
        CTRUST_ASSIGN_OR_RETURN(
            rows, query(Stmt::kEventsAgentContainer, params(before, n, agent_id, container_id)));
      }
      return decode_all(rows, decode_event);
    });
  }

  // ---- Policies and mappings ----

  Result<void> put_policy(const PolicyRow& row) override {
    return named("put_policy", [&]() -> Result<void> {
      CTRUST_TRY(check_key("policy name", row.name));
      CTRUST_TRY(check_key("policy digest", row.digest));
      CTRUST_TRY(check_text("policy document", row.document));
      CTRUST_TRY(check_text("policy signer", row.signer));
      if (row.serial > static_cast<std::uint64_t>(kInt64Max)) {
        return Error(Errc::kInvalidArgument, "policy " + quote(row.name) + " serial " +
                                                 std::to_string(row.serial) +
                                                 " is above 2^63-1, which the store cannot keep");
      }
      const auto serial = static_cast<std::int64_t>(row.serial);
      return transact([&](Connection& c) -> Result<void> {
        CTRUST_ASSIGN_OR_RETURN(
            std::int64_t n,
            c.execute(Stmt::kInsertPolicy, params(row.name, serial, row.digest, row.document,
                                                  row.signer, row.added_at)));
        if (n > 0) return ok_result();
        CTRUST_ASSIGN_OR_RETURN(std::vector<Row> rows,
                                c.query(Stmt::kPolicyDigest, params(row.name, serial)));
        const auto* digest =
            !rows.empty() && !rows[0].empty() ? std::get_if<std::string>(&rows[0][0]) : nullptr;
        if (digest != nullptr && *digest == row.digest) return ok_result();  // already stored
        return Error(Errc::kInvalidArgument,
                     "policy " + quote(row.name) + " serial " + std::to_string(row.serial) +
                         " is already stored with digest " +
                         quote(digest != nullptr ? *digest : "?") + ", not " + quote(row.digest) +
                         ": a changed policy needs a new serial");
      });
    });
  }

  Result<std::optional<PolicyRow>> get_policy(const std::string& name) override {
    return named("get_policy", [&]() -> Result<std::optional<PolicyRow>> {
      CTRUST_ASSIGN_OR_RETURN(std::vector<Row> rows, query(Stmt::kGetPolicy, params(name)));
      return decode_first(rows, decode_policy);
    });
  }

  Result<std::optional<PolicyRow>> get_policy_by_digest(const std::string& digest) override {
    return named("get_policy_by_digest", [&]() -> Result<std::optional<PolicyRow>> {
      CTRUST_ASSIGN_OR_RETURN(std::vector<Row> rows,
                              query(Stmt::kGetPolicyByDigest, params(digest)));
      return decode_first(rows, decode_policy);
    });
  }

  Result<std::vector<PolicyRow>> list_policies() override {
    return named("list_policies", [&]() -> Result<std::vector<PolicyRow>> {
      CTRUST_ASSIGN_OR_RETURN(std::vector<Row> rows, query(Stmt::kListPolicies, {}));
      return decode_all(rows, decode_policy);
    });
  }

  Result<bool> delete_policy(const std::string& name) override {
    return named("delete_policy", [&]() -> Result<bool> {
      bool deleted = false;
      Result<void> done = transact([&](Connection& c) -> Result<void> {
        CTRUST_TRY(c.execute(Stmt::kDeletePolicyMappings, params(name)));
        CTRUST_ASSIGN_OR_RETURN(std::int64_t n, c.execute(Stmt::kDeletePolicy, params(name)));
        deleted = n > 0;
        return ok_result();
      });
      CTRUST_TRY(done);
      return deleted;
    });
  }

  Result<void> put_mapping(const MappingRow& row) override {
    return named("put_mapping", [&]() -> Result<void> {
      if (row.kind != "image" && row.kind != "container") {
        return Error(Errc::kInvalidArgument,
                     "mapping kind " + quote(row.kind) + R"( is not "image" or "container")");
      }
      CTRUST_TRY(check_key("mapping key", row.key));
      CTRUST_TRY(check_key("mapping policy", row.policy));
      return execute(Stmt::kPutMapping, params(row.kind, row.key, row.policy));
    });
  }

  Result<bool> delete_mapping(const std::string& kind, const std::string& key) override {
    return named("delete_mapping", [&]() -> Result<bool> {
      CTRUST_ASSIGN_OR_RETURN(std::int64_t n, changes(Stmt::kDeleteMapping, params(kind, key)));
      return n > 0;
    });
  }

  Result<std::vector<MappingRow>> list_mappings() override {
    return named("list_mappings", [&]() -> Result<std::vector<MappingRow>> {
      CTRUST_ASSIGN_OR_RETURN(std::vector<Row> rows, query(Stmt::kListMappings, {}));
      return decode_all(rows, decode_mapping);
    });
  }

 private:
  // Runs `fn` and puts "<backend>: <op>: " in front of its error.
  template <typename F>
  auto named(const char* op, F&& fn) -> decltype(fn()) {
    auto result = fn();
    if (!result.ok()) {
      return std::move(result).error().with_context(std::string(backend()) + ": " + op);
    }
    return result;
  }

  Result<std::vector<Row>> query(Stmt stmt, std::span<const Param> p) {
    std::vector<Row> rows;
    CTRUST_TRY(db_->with_connection([&](Connection& c) -> Result<void> {
      CTRUST_ASSIGN_OR_RETURN(rows, c.query(stmt, p));
      return ok_result();
    }));
    return rows;
  }

  struct Share {
    std::int64_t share = 0;   // ceil(agents / verifiers alive)
    std::int64_t held = 0;    // the agents the owner holds
    std::int64_t fewest = 0;  // the fewest agents a verifier alive holds
    std::string fewest_id;    // that verifier (the owner itself on a tie)
  };

  // The owner must have a heartbeat (it is alive, so the query has a row).
  Result<Share> fair_share(const std::string& owner, std::int64_t now) {
    CTRUST_ASSIGN_OR_RETURN(std::vector<Row> rows, query(Stmt::kShare, params(owner, now)));
    std::array<const std::int64_t*, 4> n{};
    const std::string* id = nullptr;
    if (rows.size() == 1 && rows[0].size() == n.size() + 1) {
      for (std::size_t i = 0; i < n.size(); ++i) n[i] = std::get_if<std::int64_t>(&rows[0][i]);
      id = std::get_if<std::string>(&rows[0][n.size()]);
    }
    if (id == nullptr ||
        std::any_of(n.begin(), n.end(), [](const std::int64_t* v) { return v == nullptr; })) {
      return Error(Errc::kFormat, "counting the verifiers and their agents gave no numbers");
    }
    const std::int64_t live = std::max<std::int64_t>(*n[0], 1);
    return Share{(*n[1] + live - 1) / live, *n[2], *n[3], *id};
  }

  static Result<void> check_lease(std::int64_t now, std::int64_t lease_seconds) {
    if (lease_seconds <= 0 || now > kInt64Max - lease_seconds) {
      return Error(Errc::kInvalidArgument, "lease of " + std::to_string(lease_seconds) +
                                               " seconds from " + std::to_string(now) +
                                               " is not positive or overflows");
    }
    return ok_result();
  }

  // Says that `owner` is alive until `until`, at most once a second per owner; verifiers
  // silent for a day are forgotten.
  Result<void> heartbeat(const std::string& owner, std::int64_t now, std::int64_t until) {
    {
      std::lock_guard lock(beat_mutex_);
      auto it = beats_.find(owner);
      if (it != beats_.end() && now - it->second < 1 && now >= it->second) return ok_result();
    }
    CTRUST_TRY(execute(Stmt::kHeartbeat, params(owner, until)));
    CTRUST_TRY(execute(Stmt::kForgetStaleVerifiers, params(now - kForgetVerifiersAfter)));
    std::lock_guard lock(beat_mutex_);
    if (beats_.size() > 1024) beats_.clear();  // owners are a few names; bounded anyway
    beats_[owner] = now;
    return ok_result();
  }

  Result<std::int64_t> changes(Stmt stmt, std::span<const Param> p) {
    std::int64_t n = 0;
    CTRUST_TRY(db_->with_connection([&](Connection& c) -> Result<void> {
      CTRUST_ASSIGN_OR_RETURN(n, c.execute(stmt, p));
      return ok_result();
    }));
    return n;
  }

  Result<void> execute(Stmt stmt, std::span<const Param> p) {
    CTRUST_TRY(changes(stmt, p));
    return ok_result();
  }

  // BEGIN, `fn`, COMMIT; ROLLBACK if anything failed (the first error is the one returned).
  Result<void> transact(const ConnectionFn& fn) {
    return db_->with_connection([&](Connection& c) -> Result<void> {
      CTRUST_TRY(c.begin());
      Result<void> r = fn(c);
      if (r.ok()) r = c.commit();
      if (!r.ok()) (void)c.rollback();
      return r;
    });
  }

  std::unique_ptr<Database> db_;
  std::mutex beat_mutex_;
  std::map<std::string, std::int64_t> beats_;  // owner -> the second of its last heartbeat
};

}  // namespace

Result<std::unique_ptr<Store>> make_sql_store(std::unique_ptr<Database> db) {
  auto store = std::make_unique<SqlStore>(std::move(db));
  CTRUST_TRY(store->migrate());
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace ctrust::store::detail
