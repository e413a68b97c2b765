// The verifier's persistent state: agents, their containers, the verdict history, policies
// and the image/container-to-policy mappings (docs/ARCHITECTURE.md, "Scale").
//
// One interface, two backends: SQLite (a single file in WAL mode, the default) and PostgreSQL
// (so that several verifiers share one fleet and split the agents between them with leases).
// Both run the same statements and keep the same rules, so a caller cannot tell them apart
// except by backend(). JSON members are opaque to the store: written compactly, read back
// through the strict parser, and a stored value that does not parse is an Errc::kFormat
// error naming the row, so a damaged database cannot crash the verifier.
//
// Ownership: open_store() returns the only owner of the connections; destroying the Store
// closes them. Threading: every method may be called from any thread at once (SQLite: one
// mutex-guarded connection; PostgreSQL: a pool of up to StoreOptions::pool_size connections).
// Errors name the backend and the operation and never carry a password from the URL.
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.h"

namespace ctrust::store {

// The schema this build writes; a database with a higher version is refused.
inline constexpr int kSchemaVersion = 2;
// Nesting limit for the JSON members, on write and on read.
inline constexpr std::size_t kMaxJsonDepth = 64;
inline constexpr std::size_t kMaxAgentIdLen = 128;
// Container ids, owners, policy names, mapping keys.
inline constexpr std::size_t kMaxKeyLen = 1024;

struct AgentRow {
  std::string id;                                      // [A-Za-z0-9_.-]{1,128}
  std::string url;                                     // https://host:port of the agent
  nlohmann::json identity = nlohmann::json::object();  // EK/AK/TLS key facts from registration
  nlohmann::json state = nlohmann::json::object();     // replay state (offsets, PCRs), opaque
  std::string status;              // "registered", "trusted", "untrusted", "unreachable", ...
  std::int64_t registered_at = 0;  // seconds since the epoch
  std::int64_t updated_at = 0;
  std::int64_t next_due = 0;  // when the loop should attest it next (seconds)
  std::string owner;          // verifier instance holding the lease, empty if none
  std::int64_t lease_until = 0;
};

struct ContainerRow {
  std::string agent_id;  // empty in save_attestation: the agent being saved
  std::string container_id;
  nlohmann::json state = nlohmann::json::object();  // per-container replay state, opaque
  std::string verdict;  // "affirming", "warning", "contraindicated", "none"
  nlohmann::json reasons = nlohmann::json::array();
  std::int64_t updated_at = 0;
};

// One change of verdict (history).
struct VerdictEvent {
  std::int64_t id = 0;       // assigned by the store, increasing
  std::string agent_id;      // empty in save_attestation: the agent being saved
  std::string container_id;  // empty: the host itself
  std::int64_t time = 0;
  std::string verdict;
  nlohmann::json reasons = nlohmann::json::array();
  std::string ear;  // the signed EAR JWT
};

struct PolicyRow {
  std::string name;
  std::uint64_t serial = 0;  // at most INT64_MAX (both backends store signed 64 bits)
  std::string digest;
  std::string document;
  std::string signer;
  std::int64_t added_at = 0;
};

struct MappingRow {
  std::string kind;  // "image" or "container"
  std::string key;
  std::string policy;
};

class Store {
 public:
  virtual ~Store() = default;

  virtual std::string_view backend() const = 0;  // "sqlite" or "postgresql"
  virtual Result<int> schema_version() = 0;

  // Agents.
  virtual Result<void> put_agent(const AgentRow& row) = 0;  // insert or update every field
  virtual Result<std::optional<AgentRow>> get_agent(const std::string& id) = 0;
  virtual Result<std::vector<AgentRow>> list_agents() = 0;  // by id
  // Also deletes its containers and events; false if absent.
  virtual Result<bool> delete_agent(const std::string& id) = 0;

  // Leases, so that several verifiers split the agents. Returns up to `limit` agents whose
  // next_due <= now and that are unowned, owned by `owner`, or whose lease expired
  // (lease_until <= now), ordered by (next_due, id), and atomically sets owner = `owner` and
  // lease_until = now + lease_seconds on them: two verifiers never get the same agent while
  // a lease holds. Each call also says that `owner` is alive until now + lease_seconds (the
  // verifiers table; with `limit` 0 that is all it does). Agents nobody holds are taken only
  // up to `owner`'s fair share, ceil(agents / verifiers alive).
  virtual Result<std::vector<AgentRow>> claim_due(const std::string& owner, std::int64_t now,
                                                  std::int64_t lease_seconds,
                                                  std::size_t limit) = 0;
  // Hands agents to the verifier alive that holds the fewest, so that they share them
  // fairly: when `owner` holds two or more than it, about half the difference (at least what
  // `owner` holds above its share; never more than takes the receiver past its share). Only
  // agents not due are handed over (their attestation is saved, none is in flight), the
  // ones attested last first, with the lease the receiver would take itself. Also a
  // heartbeat, as claim_due. Returns how many it handed over.
  virtual Result<std::int64_t> shed(const std::string& owner, std::int64_t now,
                                    std::int64_t lease_seconds) = 0;
  // Drops all leases of `owner` and its heartbeat (a clean stop: its share goes at once).
  virtual Result<void> release(const std::string& owner) = 0;

  // One attestation's results, in one transaction: the agent's new state, status,
  // updated_at and next_due (its other fields are left alone); the containers given
  // (upserted); the containers named in `removed` (deleted); the events (appended, their
  // ids and empty agent_ids filled in). When `owner` is not empty the agent must still be
  // leased to it (an expired lease nobody else took over still counts), else nothing is
  // written and the error is kInvalidArgument "lease lost". An absent agent is kNotFound.
  virtual Result<void> save_attestation(const AgentRow& agent, const std::string& owner,
                                        const std::vector<ContainerRow>& containers,
                                        const std::vector<std::string>& removed,
                                        std::vector<VerdictEvent>& events) = 0;
  virtual Result<std::vector<ContainerRow>> list_containers(
      const std::string& agent_id) = 0;  // by container_id
  virtual Result<std::optional<ContainerRow>> get_container(const std::string& agent_id,
                                                            const std::string& container_id) = 0;

  // History, newest first: agent_id / container_id empty = any; at most `limit`; only ids
  // below `before_id` when before_id > 0 (to page back through older events).
  virtual Result<std::vector<VerdictEvent>> events(const std::string& agent_id,
                                                   const std::string& container_id,
                                                   std::size_t limit, std::int64_t before_id) = 0;

  // Policies: several serials per name are kept; get_policy returns the highest serial.
  // put_policy is kInvalidArgument if (name, serial) exists with another digest, and does
  // nothing if it exists with the same digest.
  virtual Result<void> put_policy(const PolicyRow& row) = 0;
  virtual Result<std::optional<PolicyRow>> get_policy(const std::string& name) = 0;
  // The highest serial with that digest.
  virtual Result<std::optional<PolicyRow>> get_policy_by_digest(const std::string& digest) = 0;
  virtual Result<std::vector<PolicyRow>> list_policies() = 0;  // latest serial of each, by name
  virtual Result<bool> delete_policy(const std::string& name) = 0;  // all serials and mappings

  // Mappings: (kind, key) is unique; put_mapping replaces. The policy need not exist yet.
  virtual Result<void> put_mapping(const MappingRow& row) = 0;
  virtual Result<bool> delete_mapping(const std::string& kind, const std::string& key) = 0;
  virtual Result<std::vector<MappingRow>> list_mappings() = 0;  // by (kind, key)
};

struct StoreOptions {
  std::size_t pool_size = 4;  // PostgreSQL connections, at least 1
};

// "sqlite:/path/to/file.db" (created 0600; WAL, a busy timeout, foreign keys on;
// "sqlite::memory:" for a private in-memory database), or a libpq URL "postgresql://..." /
// "postgres://...". Runs the schema migrations: numbered steps applied in order, one
// transaction each, recorded in a schema_version table; a database newer than this build is
// refused (Errc::kUnsupported). A postgresql URL in a build without CTRUST_WITH_POSTGRES is
// Errc::kUnsupported too.
Result<std::unique_ptr<Store>> open_store(const std::string& url, const StoreOptions& options = {});

// True if this build has the PostgreSQL backend.
bool have_postgres();

// `url` with any password (in the user info or a "password" query parameter) replaced by
// "***", safe to log.
std::string redact_url(std::string_view url);

}  // namespace ctrust::store
