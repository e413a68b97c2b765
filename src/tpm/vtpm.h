// The vTPM manager: one swtpm per container, each with an EK certificate from a local vTPM
// CA and a persistent attestation key, and a warm pool so that a new container gets its
// vTPM without waiting for manufacture.
//
// On disk, under the root directory (mode 0700):
//   ca/                   the local vTPM CA (swtpm_localca state); the host vouches for
//                         ca/swtpm-localca-rootca-cert.pem and ca/issuercert.pem
//   tpms/<uuid>/          one vTPM (0700): swtpm state, tpm.sock(.ctrl), swtpm.pid,
//                         swtpm.log, vtpm.json (its names and status)
//   containers/<id>       symlink to ../tpms/<uuid>: the container's vTPM. Creating the
//                         link is the attach; a pool vTPM is one without a link.
//   archive/<id>-<time>/  state of destroyed vTPMs, when archiving is configured
//
// The swtpm processes are daemons: they outlive the manager, so a restarted agent adopts
// the running ones with their PCRs. suspend() saves a vTPM's PCRs (TPM2_Shutdown(STATE))
// and stops it; open() restarts suspended vTPMs from that state. A vTPM whose swtpm died
// without saving is reported as dead and is never replaced by a fresh TPM under the same
// container: its PCRs cannot be recovered, and a verifier must see that.
//
// Several managers may share a root (the agent and `ctrust vtpm`), but only the one that
// manages the pool (it holds ROOT/pool.lock) touches pool vTPMs, and a vTPM still being
// manufactured (its manufacture.lock is held) is never mistaken for a dead one.
//
// Thread safety: every public method may be called from any thread. Manufacture (about
// 0.7 s, mostly swtpm_setup) runs outside the lock; the pool refills on its own thread.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tpm/public.h"
#include "util/result.h"
#include "util/unique_handle.h"

namespace ctrust::tpm {

class Tpm;

struct VtpmConfig {
  std::string root = "/var/lib/ctrust/vtpm";
  std::size_t max = 256;      // vTPMs attached to containers at once
  std::size_t pool_size = 2;  // pre-started vTPMs kept ready (0: none)
  bool archive_on_destroy = false;
  bool resume_suspended = true;  // open() restarts suspended vTPMs (the agent does)
  // The pool belongs to one manager per root (the agent), which holds ROOT/pool.lock;
  // others (the CLI) neither adopt, hand out nor discard pool vTPMs, and manufacture.
  bool manage_pool = true;
  KeyAlg ak_alg = KeyAlg::kEccP256;
  std::string swtpm = "swtpm";
  std::string swtpm_setup = "swtpm_setup";
  std::string swtpm_localca = "/usr/bin/swtpm_localca";
};

enum class VtpmStatus : std::uint8_t {
  kRunning,    // swtpm answers
  kSuspended,  // state saved by suspend(); restarted by the next open()
  kDead,       // swtpm is gone and its PCRs with it
};
std::string_view vtpm_status_name(VtpmStatus status);

struct VtpmInfo {
  std::string container;  // empty for a pool vTPM
  std::string uuid;
  VtpmStatus status = VtpmStatus::kRunning;
  std::string detail;  // why it is dead, from swtpm's log when there is one
  pid_t pid = -1;
  std::string state_dir;
  std::string tcti;
  std::string ek_name;       // hex
  std::string ak_name;       // hex
  std::int64_t created = 0;  // seconds since the epoch
};

class VtpmManager {
 public:
  // Creates the root (0700) and the CA on first use, adopts running vTPMs, restarts
  // suspended ones, and starts the pool refill thread when pool_size > 0.
  static Result<std::unique_ptr<VtpmManager>> open(const VtpmConfig& config);
  ~VtpmManager();
  VtpmManager(const VtpmManager&) = delete;
  VtpmManager& operator=(const VtpmManager&) = delete;

  // Gives `container` a vTPM: from the pool when one is ready, else manufactured now.
  // Errors: invalid id, the container already has one (running or dead), the maximum.
  // `connection`, when given, receives the open connection the vTPM was made with (a pool
  // vTPM keeps it: opening one costs milliseconds on the start path), or null.
  Result<VtpmInfo> create(const std::string& container, std::unique_ptr<Tpm>* connection = nullptr);
  // Stops the container's vTPM and deletes (or archives) its state.
  Result<void> destroy(const std::string& container);
  // Saves the vTPM's PCRs and stops it (host shutdown); open() resumes it.
  Result<void> suspend(const std::string& container);
  // Restarts a suspended vTPM from its saved state (PCRs intact).
  Result<VtpmInfo> resume(const std::string& container);
  Result<VtpmInfo> get(const std::string& container);
  // Attached vTPMs (and, with `include_pool`, pool ones), with liveness checked now.
  std::vector<VtpmInfo> list(bool include_pool = false);

  // Manufactures pool vTPMs until pool_size are ready (blocking; the thread does this too).
  Result<void> fill_pool();
  std::size_t pool_ready();
  // Stops and deletes the pool's vTPMs (on agent shutdown, or to free resources).
  void drain_pool();

  // PEM files of the local vTPM CA (root, then the issuing CA) for the host to vouch for.
  std::vector<std::string> ca_certificates() const;
  const VtpmConfig& config() const { return config_; }

 private:
  explicit VtpmManager(VtpmConfig config);
  Result<void> init();
  // A new running vTPM, and its manufacture lock: whoever holds it keeps other managers
  // from taking the vTPM for a pool or dead one until it is linked or pooled.
  struct Manufactured {
    VtpmInfo info;
    UniqueFd lock;
    std::unique_ptr<Tpm> connection;  // the one it was made with, still open
  };
  // `background`: swtpm_setup at the lowest CPU priority (a pool refill nobody waits for).
  Result<Manufactured> manufacture(bool background);
  Result<VtpmInfo> load_info(const std::string& uuid);
  Result<void> resume(VtpmInfo& info);
  void refill_loop();
  // Manufactures one vTPM into the pool; `lock` (on mutex_) is released meanwhile.
  Result<void> add_to_pool(std::unique_lock<std::mutex>& lock);
  std::string tpm_dir(const std::string& uuid) const;
  std::string link_path(const std::string& container) const;
  void remove_vtpm_files(const std::string& uuid, const std::string& container);

  VtpmConfig config_;
  std::mutex mutex_;
  std::condition_variable refill_cv_;
  std::deque<VtpmInfo> pool_;
  std::map<std::string, std::unique_ptr<Tpm>> connections_;  // of pool vTPMs, by uuid
  std::size_t manufacturing_ = 0;
  std::size_t attached_ = 0;
  bool stopping_ = false;
  std::thread refill_thread_;
  UniqueFd pool_lock_;
};

// Container ids: 1-128 of [A-Za-z0-9_.-], not starting with '.'.
bool valid_container_id(const std::string& id);

}  // namespace ctrust::tpm
