// ctrustd's core, split along its sections (docs/DEVELOPING.md, "The agent's sources"):
//   agent.cpp           start-up and shutdown, and the helpers below
//   host.cpp            the host anchor: host TPM, host log, agent-start and gap records
//   policies.cpp        the policy store: trust anchors, loading, policy_load
//   containers.cpp      the container lifecycle: create, adopt, delete, teardown, the gate
//   marks.cpp           the fanotify marks on what a container can run from
//   observers.cpp       the event sources: the fanotify and BPF threads, the seam to the
//                       exec decision (ExecEnvironment), unmanaged containers
//   attestation.cpp     the attestation API (agent/api.h)
//   control_server.cpp  the control socket and its requests
// The exec decision itself is a component of its own (agent/exec_pipeline.h), and the
// containers' registry another (agent/registry.h).
//
// Internal to ctrustd (src/agent); not an interface of the library.
#pragma once

#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "agent/agent.h"
#include "agent/api.h"
#include "agent/container.h"
#include "agent/digest_cache.h"
#include "agent/exec_pipeline.h"
#include "agent/oci.h"
#include "agent/registry.h"
#include "events/fanotify.h"
#include "imalog/binary.h"
#include "tpm/swtpm.h"
#include "tpm/tpm.h"
#include "tpm/vtpm.h"
#ifdef CTRUST_WITH_BPF
#include "events/bpf_observer.h"
#endif

namespace ctrust::agent {

// Creates `path` (0700) if it is missing, and makes it 0700.
Result<void> make_dir(const std::string& path);
// Opens `rel` beneath `root_fd` as the container would resolve it (symlinks stay inside).
Result<UniqueFd> open_in_root(int root_fd, const std::string& rel);
// An ima-ng record named `name` with `digest` as its file digest, for PCR `pcr`.
Result<imalog::Entry> named_digest_entry(const std::string& name, const crypto::Digest& digest,
                                         unsigned pcr);
// An ima-buf record whose buffer is `doc` as compact JSON (the kernel's convention: the
// file digest is the buffer's digest).
Result<imalog::Entry> json_entry(const std::string& name, const nlohmann::json& doc, unsigned pcr);
inline policy::Mode stricter(policy::Mode a, policy::Mode b) { return a > b ? a : b; }
// A bundle's config.json, strictly parsed (untrusted: the container's author writes it).
Result<OciConfig> read_bundle_config(const std::string& bundle);
// The overlay upper directory of mount `mnt_id` as process `pid` sees its mounts, or "".
std::string overlay_upper(pid_t pid, std::uint64_t mnt_id);

class AgentImpl final : public Agent, private ProcEnvironment {
 public:
  explicit AgentImpl(AgentConfig config) : config_(std::move(config)) {}
  ~AgentImpl() override { shutdown(); }

  Result<void> init(const std::string& config_bytes);
  Result<void> serve() override;
  void stop() override;
  nlohmann::json handle(const nlohmann::json& request) override { return handle(request, false); }

 private:
  using json = nlohmann::json;

  // control_server.cpp. `defer_start`: a create leaves its start's TPM work and syncs to
  // settle_start(), which the caller runs once the answer is out.
  json handle(const json& request, bool defer_start);

  // host.cpp
  Result<void> open_host_tpm();
  Result<void> open_host_log();
  Result<void> host_record(const std::string& name, const json& doc);
  Result<void> record_agent_start(const std::string& config_bytes);
  void record_gap(const std::string& id, const std::string& path);

  // policies.cpp
  Result<void> load_policies();
  Result<std::shared_ptr<LoadedPolicy>> read_policy(const std::string& path);
  Result<json> policy_load(const json& request);

  // containers.cpp
  // Registers a container. `defer`: what its first instruction does not need (its log's
  // extends and sync, its host record) is left to settle_start(), which the caller must run
  // as soon as the container may go on (ContainerLog::defer); a quote or the end of the
  // container runs it too.
  Result<json> create(const json& request, bool defer = false);
  // The rest of a deferred start: the log's pending entries synced and extended, then the
  // host record of its creation. Idempotent; an error is logged and published too.
  Result<void> settle_start(Container& c);
  Result<json> remove(const std::string& id);
  // Closes the books of `c` (still registered): unmarked, ungated, a container-stopped host
  // record, the vTPM destroyed after the answer. create_mutex_ is held.
  Result<json> close_books(const std::shared_ptr<Container>& c);
  Result<json> remove_orphan(const std::string& id);
  Result<std::shared_ptr<Container>> adopt(const std::string& id, const std::string& dir);
  json container_json(const Container& c) const;
  // Puts the container under the exec gate (its cgroup v2); an error when it cannot be.
  Result<void> gate(Container& c);
  void ungate(Container& c);
  void schedule_teardown(const std::string& id);
  void wait_teardown(const std::string& id);
  void teardown_loop();
  // A container ends when its cgroup has no process left (cgroup.events), with or without a
  // poststop hook: then its books are closed by exits_loop(). `key` is the container's
  // number (for an orphan, a fresh one); an error when the cgroup is empty already.
  Result<void> watch_exit(std::uint64_t key, const std::string& id, const std::string& cgroup,
                          bool orphan);
  void unwatch_exit(std::uint64_t key);
  // Whether the watched container `key` still has a process (true when it is not watched).
  bool still_running(std::uint64_t key);
  void exits_loop();

  // marks.cpp
  Result<void> mark_container(Container& c, const OciConfig& config, bool started);
  template <typename Add>
  Result<void> mark_submounts(Container& c, const std::string& destination, bool started,
                              int root_fd, Add& add);
  // Makes the container's marks findable by events; drops kernel caching on devices that
  // another container has marks on too.
  void register_marks(const std::shared_ptr<Container>& c);
  void unmark_container(Container& c);

  // observers.cpp
  void fanotify_loop();
  [[maybe_unused]] void bpf_loop();  // used only with CTRUST_WITH_BPF
  void queue_overflowed();
  json unmanaged();
  // ExecEnvironment: what the exec decision acts on.
  void publish(const json& event) override;
  Result<void> vouch(std::uint64_t number, dev_t dev, ino_t ino, const struct timespec& ctime,
                     bool pinned) override;
  Result<void> ignore_data_opens(int fd) override;

  // discovery.cpp: containers found without a hook (discovery.h)
  void held(const events::ObservedEvent& e);  // from the BPF thread: queued
  void discovery_loop();
  void discover(const events::ObservedEvent& e);

  // attestation.cpp (agent/api.h, docs/PROTOCOL.md)
  Result<void> start_attestation_api();
  Result<attest::Identity> identity(const std::optional<Bytes>& nonce);
  Result<attest::ActivateResponse> activate(const attest::ActivateRequest& request);
  Result<attest::Evidence> answer(const attest::Challenge& challenge);

  // control_server.cpp
  json ps();
  void serve_connection(UniqueFd fd);

  void shutdown();

  AgentConfig config_;
  std::atomic<bool> stopping_{false};
  UniqueFd wake_;  // eventfd: stop()

  tpm::Swtpm host_swtpm_;  // the embedded host TPM, when configured
  std::mutex host_mutex_;  // host TPM and host log
  std::unique_ptr<ContainerLog> host_log_;
  std::unique_ptr<tpm::Tpm> host_tpm_aggregate_;  // a second connection for PCR reads
  crypto::Digest boot_aggregate_;                 // of the host's PCRs 0-9, at the start
  // The attestation API's state: the host AK (persistent), the EK facts, the TLS key.
  std::optional<tpm::TpmKey> host_ak_;
  Bytes host_ek_public_;
  std::optional<Bytes> host_ek_certificate_;
  std::string tls_fingerprint_;
  std::string instance_;  // random per start: a verifier sees restarts
  std::int64_t started_ = 0;
  std::unique_ptr<net::HttpServer> api_;
  std::unique_ptr<tpm::VtpmManager> vtpms_;

  std::mutex policies_mutex_;
  std::map<std::string, std::shared_ptr<LoadedPolicy>> policies_;
  policy::TrustAnchors trust_;

  ContainerRegistry containers_;
  std::mutex create_mutex_;  // one create or delete at a time

  std::optional<events::FanotifyMonitor> monitor_;
  std::optional<DigestCache> cache_;
  std::unique_ptr<ExecPipeline> exec_;
  std::thread fanotify_thread_;
#ifdef CTRUST_WITH_BPF
  std::unique_ptr<events::BpfObserver> bpf_;
#endif
  std::thread bpf_thread_;
  // "bpf-lsm", "fanotify" (with the tracepoint gate) or "fanotify-only" (no BPF).
  std::string backend_ = "fanotify";
  ino_t host_mnt_ns_ = 0;
  ino_t host_pid_ns_ = 0;

  std::mutex held_mutex_;
  std::condition_variable held_cv_;
  std::deque<events::ObservedEvent> held_;  // execs discovery stopped, to be registered
  std::thread discovery_thread_;
  std::atomic<std::uint64_t> discovered_{0};         // containers registered by discovery
  std::atomic<std::uint64_t> discover_refused_{0};   // held processes killed unregistered
  std::atomic<std::uint64_t> discover_admitted_{0};  // ... let go unmeasured ("admit")

  std::mutex subscribers_mutex_;
  std::vector<UniqueFd> subscribers_;

  std::mutex teardown_mutex_;
  std::condition_variable teardown_cv_;
  std::deque<std::string> teardowns_;  // containers whose vTPM is to be destroyed
  std::set<std::string> tearing_down_;
  std::thread teardown_thread_;

  struct ExitWatch {
    UniqueFd events;  // the cgroup's cgroup.events
    std::string id;
    bool orphan = false;  // registered by an agent before a restart, not adopted
  };
  UniqueFd exits_epoll_;
  std::mutex exits_mutex_;
  std::map<std::uint64_t, ExitWatch> exit_watches_;
  std::thread exits_thread_;

  std::mutex connections_mutex_;
  std::condition_variable connections_cv_;
  int connections_ = 0;
};

}  // namespace ctrust::agent
